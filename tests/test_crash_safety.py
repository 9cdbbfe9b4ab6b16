"""Nothing lost: SIGKILL at three moments, Ctrl-C, divergence and a dead distributed worker.

Every run here is real: `rlhf-keras finetune` subprocesses on ring8 (a few seconds a trial),
killed with real signals at moments made observable by the library's test hook
(RLHF_KERAS_TEST_PAUSE / RLHF_KERAS_TEST_MARKER, see tests/pause_hooks.py).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import threading
import time

import helpers_crash as hc
import keras_tuner
import numpy as np
import pytest

from rlhf_keras import GAN, RLHF, architectures
from rlhf_keras.cli import main as cli_main


def _oracle(project) -> dict:
    return json.loads((project / "oracle.json").read_text())


def _row_ids(project) -> list[str]:
    path = project / "results.json"
    return [row["trial_id"] for row in json.loads(path.read_text())] if path.exists() else []


def _kill_at(args, stage: str, marker, what: str) -> None:
    proc = hc.start(args, **hc.paused(stage, marker))
    try:
        hc.wait_for(marker.exists, 240, what, (proc,))
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        hc.stop_all([proc])
    assert proc.returncode == -signal.SIGKILL


def test_sigkill_at_three_moments_then_ctrl_c_then_resume(tmp_path):
    """One run killed during a trial, during scoring, right after a trial ends, then Ctrl-C."""
    max_trials = 4
    run_dir = tmp_path / "runs"
    project = run_dir / "rlhf"
    args = hc.finetune_args(run_dir, max_trials)

    # 1) SIGKILL during trial 1's training: trial 0 is saved, trial 1 is still running.
    _kill_at(args, "trial@1", tmp_path / "m1", "trial 1 to start training")
    state = _oracle(project)
    assert state["end_order"] == ["0"] and state["ongoing_trials"] == {"tuner0": "1"}
    assert _row_ids(project) == ["0"]

    # 2) SIGKILL while trial 2 is being scored: trial 1 was re-run and finished once.
    _kill_at(args, "scoring@2", tmp_path / "m2", "trial 2 to be scored")
    state = _oracle(project)
    assert state["end_order"] == ["0", "1"] and state["ongoing_trials"] == {"tuner0": "2"}
    assert state["run_times"] == {"0": 1, "1": 1}
    assert _row_ids(project) == ["0", "1"]

    # 3) SIGKILL right after the oracle ended trial 2, before its results row was written.
    _kill_at(args, "trial_end@2", tmp_path / "m3", "trial 2 to end")
    state = _oracle(project)
    assert state["end_order"] == ["0", "1", "2"] and state["ongoing_trials"] == {}
    assert _row_ids(project) == ["0", "1"]  # the row is missing: the next run recovers it

    # 4) Ctrl-C during trial 3: exit code 130 and the command that resumes.
    marker = tmp_path / "m4"
    proc = hc.start(args, **hc.paused("trial@3", marker))
    try:
        hc.wait_for(marker.exists, 240, "trial 3 to start training", (proc,))
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        hc.stop_all([proc])
    assert proc.returncode == 130, err[-3000:]
    assert f"Interrupted. 3 of {max_trials} trials are saved in {project}" in err
    assert "[3/4]" not in out  # trial 2 is recovered into the table, not run again
    resume = next(line for line in err.splitlines() if line.startswith("To resume: "))
    command = shlex.split(resume.removeprefix("To resume: "))
    assert command == ["rlhf-keras", *args]
    assert _row_ids(project) == ["0", "1", "2"]

    # 5) The printed command finishes the search; nothing ran twice, nothing is lost.
    done = subprocess.run(hc.CLI + command[1:], env=hc.env(), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "[4/4]" in done.stdout and f"Best model:   {project / 'best_model.keras'}" in done.stdout
    hc.check_finished_run(project, max_trials)
    rows = json.loads((project / "results.json").read_text())
    assert rows[2]["seconds"] is None  # recovered row: its duration died with the process
    assert all(row["seconds"] > 0 for row in rows if row["trial_id"] != "2")


# ------------------------------------------------------------------------------ in process


def _small_space() -> keras_tuner.HyperParameters:
    hp = keras_tuner.HyperParameters()
    hp.Float("g_lr", 1e-4, 3e-3, sampling="log", default=1e-3)
    hp.Choice("d_width", [0.5, 1.0])
    return hp


def _ring_gan() -> GAN:
    return GAN(*architectures.small_mlp(data_shape=(2,), latent_dim=8), seed=0)


def _interrupt_when(marker, timeout: float = 120) -> threading.Thread:
    """Sends this process a SIGINT once `marker` exists (never if it doesn't appear)."""

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if marker.exists():
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_ctrl_c_in_the_python_api_saves_and_resumes(tmp_path, monkeypatch, capsys, pause_hooks):
    marker = tmp_path / "marker"
    monkeypatch.setenv("RLHF_KERAS_TEST_PAUSE", "trial@1")
    monkeypatch.setenv("RLHF_KERAS_TEST_MARKER", str(marker))
    handler_before = signal.getsignal(signal.SIGINT)

    def rlhf() -> RLHF:
        return RLHF(search_space=_small_space(), strategy="oneshot",
                    max_trials=2, epochs_per_trial=1,
                    batch_size=1024, data="ring8", directory=tmp_path, seed=0, verbose=0)

    watcher = _interrupt_when(marker)
    with pytest.raises(KeyboardInterrupt):
        rlhf().finetune(_ring_gan())
    watcher.join(5)
    assert signal.getsignal(signal.SIGINT) is handler_before  # our handler is gone again
    err = capsys.readouterr().err
    assert f"Interrupted. 1 of 2 trials are saved in {tmp_path / 'rlhf'}" in err
    assert f"directory={str(tmp_path)!r}, project_name='rlhf' and overwrite=False" in err
    assert _row_ids(tmp_path / "rlhf") == ["0"]

    monkeypatch.delenv("RLHF_KERAS_TEST_PAUSE")
    resumed = rlhf()
    best = resumed.finetune(_ring_gan())
    assert isinstance(best, GAN)
    hc.check_finished_run(tmp_path / "rlhf", 2)


def test_ctrl_c_in_the_cli_gives_130_and_a_resume_command_without_overwrite(
    tmp_path, monkeypatch, capsys, pause_hooks
):
    marker = tmp_path / "marker"
    monkeypatch.setenv("RLHF_KERAS_TEST_PAUSE", "trial@0")
    monkeypatch.setenv("RLHF_KERAS_TEST_MARKER", str(marker))
    args = hc.finetune_args(tmp_path / "runs", 2) + ["--overwrite", "--verbose", "0"]
    watcher = _interrupt_when(marker)
    assert cli_main(args) == 130
    watcher.join(5)
    err = capsys.readouterr().err
    resume = next(line for line in err.splitlines() if line.startswith("To resume: "))
    # --overwrite would delete what was saved: the resume command drops it.
    assert shlex.split(resume.removeprefix("To resume: ")) == ["rlhf-keras", *args[:-3],
                                                               "--verbose", "0"]
    assert "rlhf-keras: interrupted" in err
    assert (tmp_path / "runs" / "rlhf" / "oracle.json").exists()


def test_a_diverging_trial_stops_after_one_epoch_is_penalised_and_the_search_goes_on(tmp_path):
    hp = keras_tuner.HyperParameters()
    hp.Choice("g_lr", [1e-3, 1e10])  # 1e10 sends the generator's weights to inf at once
    rlhf = RLHF(search_space=hp, strategy="oneshot",
                max_trials=3, epochs_per_trial=2, batch_size=1024,
                data="ring8", directory=tmp_path, seed=0, verbose=0)
    best = rlhf.finetune(_ring_gan())
    rows = rlhf.results
    assert len(rows) == 3
    diverged = [r for r in rows if r["values"]["g_lr"] == 1e10]
    fine = [r for r in rows if r["values"]["g_lr"] == 1e-3]
    assert diverged and fine, "the seed must draw both learning rates"
    for row in diverged:
        assert row["status"] == "FAILED" and row["score"] is None
        assert row["metrics"]["epochs_trained"] == 1  # TerminateOnNaN stopped it at once
        assert row["metrics"]["diverged"] == 1
    for row in fine:
        assert row["status"] == "COMPLETED" and row["metrics"]["epochs_trained"] == 2
    rewards = rlhf.oracle.rewards
    worst_fine = min(rewards[r["trial_id"]]["reward"] for r in fine)
    for row in diverged:
        assert rewards[row["trial_id"]]["penalised"]
        assert np.isfinite(rewards[row["trial_id"]]["reward"])
        assert rewards[row["trial_id"]]["reward"] < worst_fine
    assert rlhf.oracle.updates == 3  # the policy learned from every trial
    assert np.isfinite(best.generate(5, seed=0)).all()


# ------------------------------------------------------------------------------ distributed


def _listening_addresses(port: int) -> set[str]:
    """Local addresses of the sockets listening on `port`, from /proc/net/tcp and tcp6."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as handle:
            for line in handle.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                address, hex_port = local.split(":")
                if state != "0A" or int(hex_port, 16) != port:  # 0A: LISTEN
                    continue
                if len(address) == 8 or address.startswith("0000000000000000FFFF0000"):
                    # IPv4 (or IPv4-mapped IPv6): the last 4 bytes, little-endian
                    found.add(".".join(str(b) for b in bytes.fromhex(address[-8:])[::-1]))
                else:
                    found.add("any IPv6" if set(address) == {"0"} else address)
    return found


def test_a_killed_distributed_worker_is_restarted_and_its_trial_rerun(tmp_path):
    max_trials = 4
    run_dir = tmp_path / "dist"
    project = run_dir / "rlhf"
    args = hc.finetune_args(run_dir, max_trials) + ["--verbose", "0"]
    port = str(hc.free_port())

    def dist(tuner_id: str, **extra: str) -> dict[str, str]:
        return {"KERASTUNER_TUNER_ID": tuner_id, "KERASTUNER_ORACLE_IP": "127.0.0.1",
                "KERASTUNER_ORACLE_PORT": port, **extra}

    marker = tmp_path / "worker_paused"
    procs: list[subprocess.Popen] = []
    try:
        chief = hc.start(args, **dist("chief"))
        worker1 = hc.start(args, **dist("tuner1", **hc.paused("trial", marker)))
        procs += [chief, worker1]
        # tuner1 holds a trial before tuner0 starts: had tuner0 finished every trial first,
        # keras-tuner's chief would have exited without ever hearing of tuner1.
        hc.wait_for(marker.exists, 240, "worker tuner1 to start a trial", (chief, worker1))
        worker0 = hc.start(args, **dist("tuner0"))
        procs.append(worker0)
        lost = marker.read_text().split()[1]
        # The oracle service listens on the address given (127.0.0.1), not on every interface.
        assert _listening_addresses(int(port)) == {"127.0.0.1"}
        worker1.send_signal(signal.SIGKILL)
        worker1.wait(30)
        # The chief keeps the dead worker's trial; a worker with the same id gets it back.
        restarted = hc.start(args, **dist("tuner1"))
        procs.append(restarted)
        hc.wait_for(lambda: chief.poll() is not None, 300, "the chief to finish",
                    (worker0, restarted), all_exited_fails=False)
        for proc in (chief, worker0, restarted):
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err[-3000:]
    finally:
        hc.stop_all(procs)
    assert worker1.returncode == -signal.SIGKILL
    oracle = hc.check_finished_run(project, max_trials)
    assert lost in oracle["end_order"]
    assert "Best model:" in out


def test_trajectory_search_killed_mid_segment_resumes_to_its_budget(tmp_path):
    """SIGKILL while member 0 trains its second segment; the rerun completes the budget with
    every segment run to the end once, the births' rewards and the policy's first update as
    they were, and the interrupted segment rerun with the values it was given."""
    run_dir = tmp_path / "runs"
    project = run_dir / "rlhf"
    args = ["finetune", "--data", "ring8", "--arch", "small", "--budget", "400",
            "--population", "2", "--segments", "2", "--batch-size", "1024",
            "--latent-dim", "8", "--dir", str(run_dir), "--seed", "0", "--plateau-decay", "0.5"]
    _kill_at(args, "trial@2", tmp_path / "m1", "segment 1 of member 0 to start training")
    before = _oracle(project)
    assert before["end_order"] == ["0", "1"] and before["ongoing_trials"] == {"tuner0": "2"}
    saved = before["trajectory"]
    assert saved["learned"] == [0] and saved["decisions"]["2"]["parent"] is not None

    done = subprocess.run(hc.CLI + args, env=hc.env(), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    after = _oracle(project)
    assert sorted(after["end_order"]) == ["0", "1", "2", "3"]
    assert after["run_times"] == {str(i): 1 for i in range(4)}
    ours = after["trajectory"]
    assert ours["learned"] == [0, 1]
    assert ours["plateau_decay"] == saved["plateau_decay"] == 0.5  # the flag, kept on resume
    for trial_id in ("0", "1"):  # learned before the kill, untouched by the rerun
        assert ours["decisions"][trial_id] == saved["decisions"][trial_id]
    assert ours["decisions"]["2"]["values"] == saved["decisions"]["2"]["values"]
    assert ours["birth_policy"] == saved["birth_policy"]  # births are learned only once
    rows = json.loads((project / "results.json").read_text())
    assert [r["trial_id"] for r in rows] == ["0", "1", "2", "3"]
    assert sum(100 for r in rows if r["status"] == "COMPLETED") == 400  # the whole budget
    assert all(r["values"]["g_ema"] == 0.999 for r in rows)  # the default space averages
