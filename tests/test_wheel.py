"""The wheel is what users install: build it, check what is in it, and use it outside the repo.

Everything the library reads at run time (the FID feature network, the embedded MNIST) must be
package data found through `importlib.resources`; an editable install hides a file that is left
out of the wheel, so these tests build a real wheel and import it from a folder of its own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# What the library loads at run time, as paths inside the wheel.
PACKAGE_DATA = (
    "rlhf_keras/assets/mnist_features.keras",
    "rlhf_keras/datasets/mnist/t10k-images-idx3-ubyte.gz",
    "rlhf_keras/datasets/mnist/t10k-labels-idx1-ubyte.gz",
    "rlhf_keras/datasets/mnist/NOTICE.md",
)
# The build needs these beside the package (README.md is the long description).
BUILD_FILES = ("pyproject.toml", "setup.cfg", "README.md", "rlhf.py")


def _run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(args, capture_output=True, text=True, timeout=300, **kwargs)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from a clean copy of the working tree (no stale build/ or egg-info)."""
    source = tmp_path_factory.mktemp("source")
    for name in BUILD_FILES:
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "rlhf_keras", source / "rlhf_keras",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
          "--no-index", "-q", "-w", str(out), str(source)])
    wheels = list(out.glob("rlhf_keras-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_wheel_holds_every_module_and_the_runtime_files(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {p.relative_to(REPO).as_posix() for p in (REPO / "rlhf_keras").rglob("*.py")
               if "__pycache__" not in p.parts}
    assert "rlhf_keras/gan.py" in modules and "rlhf_keras/datasets/__init__.py" in modules
    missing = sorted((modules | {"rlhf.py", *PACKAGE_DATA}) - names)
    assert not missing, f"left out of the wheel: {missing}"
    with zipfile.ZipFile(wheel) as archive:
        for name in PACKAGE_DATA:
            # Byte-identical to the repository's copies, not truncated or re-encoded.
            assert archive.read(name) == (REPO / name).read_bytes(), name
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        assert "rlhf-keras = rlhf_keras.cli:main" in archive.read(entry_points).decode()


def test_installed_wheel_computes_fid_outside_the_repository(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    _run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
          "--target", str(target), str(wheel)])
    script = (
        "import math, sys\n"
        "import rlhf_keras\n"
        "from rlhf_keras import data, feature_net, metrics\n"
        "target = sys.argv[1]\n"
        "# The wheel's copy, not the repository's editable install.\n"
        "assert rlhf_keras.__file__.startswith(target), rlhf_keras.__file__\n"
        "assert str(feature_net.shipped_model()).startswith(target)\n"
        "x, _, info = data.load_arrays('mnist')\n"
        "value = metrics.fid(x[:300], x[300:600], n=300)\n"
        "noise = metrics.fid(x[:300] * 0 + 1, x[300:600], n=300)\n"
        "assert math.isfinite(value) and value < noise, (value, noise)\n"
        "print('fid', info.name, info.size, value)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(target), RLHF_KERAS_OFFLINE="1",
               TF_CPP_MIN_LOG_LEVEL="2")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    result = _run([sys.executable, "-c", script, str(target)], cwd=outside, env=env)
    line = result.stdout.strip().splitlines()[-1]
    name, size, value = line.split()[1:]
    assert name == "mnist" and int(size) >= 10_000 and float(value) >= 0.0, line
