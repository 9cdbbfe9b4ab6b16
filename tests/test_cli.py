"""The `rlhf-keras` command line, run as a real subprocess."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

from rlhf_keras import GAN
from rlhf_keras.cli import main as cli_main
from rlhf_keras.trajectory_oracle import STATE_KEY as TRAJECTORY_KEY


def run_cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    """The command as a user types it: a fresh process (used where the process matters)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        [sys.executable, "-m", "rlhf_keras.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=cwd,
    )


def cli(capsys: pytest.CaptureFixture, *args: str) -> subprocess.CompletedProcess:
    """The same `main` in this process (no TensorFlow start-up): exit code, stdout, stderr."""
    message = ""
    try:
        code = cli_main(list(args))
    except SystemExit as exit_:  # as Python exits: a message goes to stderr with status 1
        code = exit_.code
        if isinstance(code, str):
            code, message = 1, code + "\n"
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), code, captured.out, captured.err + message)


def test_train_writes_model_samples_and_logs(tmp_path):
    out = tmp_path / "run"
    result = run_cli(
        "train",
        "--data",
        "ring8",
        "--arch",
        "small",
        "--epochs",
        "1",
        "--batch-size",
        "256",
        "--latent-dim",
        "8",
        "--out",
        str(out),
        "--verbose",
        "0",
    )
    assert result.returncode == 0, result.stderr
    assert f"Model:        {out / 'model.keras'}" in result.stdout
    gan = keras.models.load_model(out / "model.keras")
    assert isinstance(gan, GAN) and gan.data_shape == (2,)
    assert np.isfinite(gan.generate(10, seed=0)).all()
    assert (out / "samples.png").stat().st_size > 5_000
    assert list((out / "logs" / "train").glob("events.out.tfevents.*"))


def test_train_on_points_without_known_modes_trains_and_says_what_it_cannot_measure(tmp_path,
                                                                                     capsys):
    path = tmp_path / "points.npz"
    np.savez(path, x=np.random.default_rng(0).normal(size=(500, 2)).astype(np.float32))
    out = tmp_path / "run"
    result = cli(capsys, "train", "--data", str(path), "--arch", "small", "--steps", "20",
                 "--batch-size", "128", "--latent-dim", "8", "--out", str(out), "--verbose", "0",
                 "--g-ema", "0.9")
    assert result.returncode == 0, result.stderr
    assert "Not measured: 2-D data" in result.stdout and "no known modes" in result.stdout
    gan = keras.models.load_model(out / "model.keras")
    assert gan.data_shape == (2,) and gan.ema_momentum == 0.9
    assert (out / "samples.png").is_file()


def test_train_refuses_bad_input_before_training(tmp_path, capsys):
    result = cli(capsys, "train", "--data", "no-such-data", "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "no-such-data" in result.stderr and "digits" in result.stderr
    assert not (tmp_path / "run").exists()
    result = cli(capsys, "train", "--epochs", "0", "--out", str(tmp_path / "run"))
    assert result.returncode != 0 and "--epochs must be > 0" in result.stderr
    result = cli(capsys, "train", "--g-ema", "1", "--out", str(tmp_path / "run"))
    assert result.returncode != 0
    assert "--g-ema: ema_momentum must be in [0, 1)" in result.stderr and "got 1.0" in result.stderr
    assert not (tmp_path / "run").exists()


def test_finetune_evaluate_sample_and_report(tmp_path, capsys):
    runs = tmp_path / "runs"
    result = run_cli(
        "finetune",
        "--data",
        "ring8",
        "--arch",
        "small",
        "--budget",
        "200",
        "--population",
        "2",
        "--segments",
        "2",
        "--batch-size",
        "512",
        "--latent-dim",
        "8",
        "--dir",
        str(runs),
        "--seed",
        "3",
        "--g-ema",
        "0",
        "--init-std",
        "0.1",
        "--schedule-step",
        "0.05",
        "--policy-lr",
        "0.2",
        "--no-elitist",
        "--baseline",
        "population",
        "--reward",
        "log_ratio",
        "--no-birth-at-defaults",
        "--d-lr-ratio",
    )
    assert result.returncode == 0, result.stderr
    assert "[1/4]" in result.stdout and "[4/4]" in result.stdout and "ETA" in result.stdout
    assert "200 training steps in all" in result.stdout
    best = runs / "rlhf" / "best_model.keras"
    assert f"Best model:   {best}" in result.stdout
    assert (runs / "rlhf" / "best_samples.png").stat().st_size > 5_000
    rows = json.loads((runs / "rlhf" / "results.json").read_text())
    assert [row["trial_id"] for row in rows] == ["0", "1", "2", "3"]
    assert not any("g_ema" in row["values"] for row in rows)  # --g-ema 0: no average
    # --d-lr-ratio: the discriminator's rate searched as a multiple of the generator's
    assert all("d_lr_ratio" in row["values"] and "d_lr" not in row["values"] for row in rows)
    assert keras.models.load_model(best).average_generator is None
    state = json.loads((runs / "rlhf" / "oracle.json").read_text())[TRAJECTORY_KEY]
    assert state["birth_policy"]["init_std"] == 0.1  # --init-std reached the birth policy
    assert state["policy"]["step"] == 0.05  # --schedule-step reached the schedule policy
    # --policy-lr reached both policies' REINFORCE step size
    assert state["learning_rate"] == state["birth_policy"]["learning_rate"] == 0.2
    # Not the defaults (elitist, running, a birth at the defaults): the flags reached the oracle.
    assert state["elitist"] is False and state["baseline"] == "population"
    assert state["birth_at_defaults"] is False and state["reward"] == "log_ratio"

    # The finetune above ran as a user runs it; the rest runs `main` in this process.
    result = cli(capsys, "evaluate", str(best), "--data", "ring8")
    assert result.returncode == 0, result.stderr
    printed = dict(
        line.split()
        for line in result.stdout.splitlines()
        if line[:1].isalpha() and len(line.split()) == 2
    )
    best_score = max(row["score"] for row in rows)
    assert float(printed["score"]) == pytest.approx(best_score, abs=1e-3)

    result = cli(capsys, "sample", str(best), "--n", "10", "--out", str(tmp_path / "s.npz"))
    assert result.returncode == 0, result.stderr
    samples = np.load(tmp_path / "s.npz")["x"]
    assert samples.shape == (10, 2) and np.isfinite(samples).all()

    result = cli(capsys, "report", str(runs))  # the --dir folder, holding one run
    assert result.returncode == 0, result.stderr
    report = runs / "rlhf" / "report.md"
    assert f"Report: {report}" in result.stdout
    text = report.read_text()
    pictures = re.findall(r"\]\(([^)]+\.png)\)", text)
    assert len(pictures) == 3
    for png in pictures:
        assert (report.parent / png).stat().st_size > 2_000
    assert "| 0 | COMPLETED |" in text and "| 1 | COMPLETED |" in text
    result = cli(capsys, "report", str(tmp_path / "nothing-here"))
    assert result.returncode != 0 and "nothing-here" in result.stderr


def test_evaluate_refuses_a_file_that_is_not_a_gan(tmp_path, capsys):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.save(tmp_path / "plain.keras")
    result = cli(capsys, "evaluate", str(tmp_path / "plain.keras"), "--data", "ring8")
    assert result.returncode == 2
    assert "not a GAN" in result.stderr and "exactly two models" in result.stderr
    result = cli(capsys, "sample", str(tmp_path / "missing.keras"), "--out", str(tmp_path / "x"))
    assert result.returncode == 2 and "is not a .keras model file" in result.stderr
