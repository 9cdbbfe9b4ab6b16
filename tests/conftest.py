"""Shared fixtures: the real MNIST test split beside the repository, quiet TensorFlow."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
MNIST_DIR = REPO.parent / "shared" / "data" / "mnist"


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The real MNIST test split (10,000 images) that CI keeps beside the repository."""
    if not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip(f"MNIST test split not found at {MNIST_DIR}")
    return MNIST_DIR


@pytest.fixture
def pause_hooks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pause points of `pause_hooks.py` in this process, removed after the test."""
    import pause_hooks as hooks

    hooks.install(monkeypatch.setattr)
