"""The `rlhf-keras` command line, run as a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys

import keras
import numpy as np

from rlhf_keras import GAN


def run_cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        [sys.executable, "-m", "rlhf_keras.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=cwd,
    )


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


def test_train_refuses_bad_input_before_training(tmp_path):
    result = run_cli("train", "--data", "no-such-data", "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "no-such-data" in result.stderr and "digits" in result.stderr
    assert not (tmp_path / "run").exists()
    result = run_cli("train", "--epochs", "0", "--out", str(tmp_path / "run"))
    assert result.returncode != 0 and "--epochs must be > 0" in result.stderr
