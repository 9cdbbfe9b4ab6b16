"""The quickstart notebook runs end to end, and is committed without outputs."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"


def test_notebook_is_committed_valid_and_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert len(code) >= 6
    for cell in code:
        assert cell.outputs == [], "clear the outputs before committing (Kernel > Restart & Clear)"
        assert cell.execution_count is None
    assert nb.metadata.kernelspec.name == "python3"
    source = "\n".join(cell.source for cell in code)
    assert "from rlhf import RLHF" in source and "rlhf.finetune(gan)" in source


def test_notebook_runs_end_to_end_in_a_fresh_folder(tmp_path):
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError with the failing cell's traceback

    run = tmp_path / "rlhf_runs" / "quickstart"  # the run landed in the notebook's folder
    rows = json.loads((run / "results.json").read_text())
    assert [row["status"] for row in rows] == ["COMPLETED"] * 4  # 2 members x 2 segments
    assert (run / "best_model.keras").is_file()
    assert (run / "report.md").is_file() and (run / "report_lineage.png").is_file()

    outputs = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    pictures = [out for out in outputs if "image/png" in out.get("data", {})]
    assert len(pictures) == 2  # the sample grid and the lineage
    text = "".join(out.get("text", "") for out in outputs)
    assert "best:" in text and "[TensorShape([64, 784]), TensorShape([64, 784])]" in text
