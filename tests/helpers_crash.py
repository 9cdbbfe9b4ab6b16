"""Shared helpers for the crash, interrupt and bad-input tests: real subprocesses, run checks.

`finetune_cmd` builds a tiny `rlhf-keras finetune` on ring8 (small MLPs, one epoch of large
batches: a few seconds a trial). `CLI` runs it with the pause points of `pause_hooks.py`:
RLHF_KERAS_TEST_PAUSE=<stage>[@<id>] with RLHF_KERAS_TEST_MARKER=<file> makes a run write the
marker and sleep at that stage, so a test can kill or interrupt it at a known moment.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, str(REPO / "tests" / "run_cli.py")]  # rlhf-keras + pause points


def finetune_args(run_dir: Path, trials: int, seed: int = 0) -> list[str]:
    """The `finetune` arguments (after the program name) of a tiny ring8 search."""
    return ["finetune", "--data", "ring8", "--arch", "small", "--strategy", "oneshot",
            "--trials", str(trials),
            "--epochs-per-trial", "1", "--batch-size", "1024", "--latent-dim", "8",
            "--dir", str(run_dir), "--seed", str(seed)]


def env(**extra: str) -> dict[str, str]:
    """The test environment: quiet TensorFlow, CPU only, no distributed or pause settings."""
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("KERASTUNER_", "RLHF_KERAS_TEST_"))}
    base.update(TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="", PYTHONPATH=str(REPO),
                **extra)
    return base


def start(args: list[str], **extra_env: str) -> subprocess.Popen:
    """Starts `rlhf-keras ARGS` with its output (stdout and stderr) in a pipe."""
    return subprocess.Popen(CLI + args, env=env(**extra_env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def paused(stage: str, marker: Path) -> dict[str, str]:
    """Environment that pauses a run at `stage` ("trial", "scoring", "trial_end[@id]")."""
    return {"RLHF_KERAS_TEST_PAUSE": stage, "RLHF_KERAS_TEST_MARKER": str(marker)}


def wait_for(predicate, timeout: float, what: str, procs: tuple = (),
             all_exited_fails: bool = True) -> None:
    """Polls `predicate` until true; fails with `what` if it times out, a process in `procs`
    fails, or (with `all_exited_fails`) they have all exited without it becoming true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        failed = [p for p in procs if p.poll() not in (None, 0)]
        gone = all_exited_fails and procs and all(p.poll() is not None for p in procs)
        if failed or gone:
            proc = (failed or list(procs))[0]
            out, err = proc.communicate()
            pytest.fail(f"{what}: a process exited with {proc.returncode}:\n"
                        f"{out[-2000:]}\n{err[-3000:]}")
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def stop_all(procs: list[subprocess.Popen]) -> None:
    """Kills whichever of `procs` still run (by their own handles) and reaps them."""
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        try:
            proc.communicate(timeout=30)
        except (subprocess.TimeoutExpired, ValueError):
            pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under `folder`: relative path -> (size, mtime in ns)."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def check_finished_run(project: Path, max_trials: int) -> dict[str, Any]:
    """Asserts a finished run is whole: each trial completed once, state and best model valid.

    Returns:
        The parsed oracle state (for further checks).
    """
    from rlhf_keras.gan import GAN, load_gan

    oracle = json.loads((project / "oracle.json").read_text())  # loads: not truncated
    ids = sorted(oracle["end_order"], key=int)
    assert ids == [str(i) for i in range(max_trials)], oracle["end_order"]
    # run_times counts the times a trial was ended: 1 each means none ran twice to the end.
    assert oracle["run_times"] == {i: 1 for i in ids}
    assert oracle["ongoing_trials"] == {} and oracle["retry_queue"] == []
    statuses = {p.parent.name: json.loads(p.read_text())["status"]
                for p in project.glob("trial_*/trial.json")}
    assert statuses == {f"trial_{i}": "COMPLETED" for i in ids}
    rows = json.loads((project / "results.json").read_text())
    assert [row["trial_id"] for row in rows] == ids
    assert all(row["status"] == "COMPLETED" for row in rows)
    # The policy learned from every trial exactly once.
    assert sorted(oracle["reinforce"]["rewards"], key=int) == ids
    assert oracle["reinforce"]["pending"] == {}
    best = load_gan(project / "best_model.keras")
    assert isinstance(best, GAN) and best.data_shape == (2,)
    info = json.loads((project / "best_model.json").read_text())
    assert info["score"] == pytest.approx(max(row["score"] for row in rows), rel=1e-6)
    assert not list(project.glob(".*.tmp*")), "a temporary file was left behind"
    return oracle
