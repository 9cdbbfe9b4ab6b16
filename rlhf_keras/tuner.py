"""`RLHF`: reinforcement-learning hyperparameter fine-tuning of a GAN, on keras-tuner.

The first article's loop, made concrete:

    gan = tf.keras.Sequential([generator, discriminator])
    rlhf = RLHF()
    best = rlhf.finetune(gan)

Each trial rebuilds the generator and the discriminator with the widths the policy chose
(`scale_widths`), compiles them with its learning rates, trains for `epochs_per_trial` epochs and
is scored with `metrics.quality` (FID for images, mode metrics for 2-D data). The policy
(`ReinforceOracle`) learns from those scores with REINFORCE, maximising E_{tau~p_theta}[R(tau)].
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras
import keras_tuner
import numpy as np

from rlhf_keras import board
from rlhf_keras.compat import (
    TensorBoard,
    load_weights_keeping_learning_rates,
    make_saves_atomic,
    released_gradient_functions,
    serve_oracle,
)
from rlhf_keras.run_dir import (
    BEST_INFO_FILE,
    BEST_MODEL_FILE,
    RESULTS_FILE,
    atomic_save,
    atomic_write_json,
    locked,
    read_rows,
)


class ContinuingTuner(keras_tuner.Tuner):
    """A keras-tuner Tuner that continues a parent trial's model, for any Keras model.

    As keras-tuner's Hyperband tuner does: a trial whose values hold `tuner/trial_id` starts
    from that trial's checkpoint (weights *and* optimizer state), and trains from epoch
    `tuner/initial_epoch` to `tuner/epochs`. Unlike a plain reload, the trial's own learning
    rates are put back after the checkpoint is loaded (Keras restores the parent's with the
    optimizer state), so a schedule that changes a learning rate mid-training takes effect.
    This is how `TrajectoryOracle` (and `ReinforceOracle(rungs=...)`) drive training.
    """

    def search(self, *fit_args: Any, **fit_kwargs: Any) -> None:
        """As keras-tuner's, with the objects alive at the start left out of garbage collection.

        keras-tuner collects garbage before building every trial (`gc.collect()`, twice with
        `clear_session`), which scans every object TensorFlow and Keras have loaded: ~1 s a
        trial here, for garbage made by trials only. `gc.freeze()` moves what exists now out of
        the collector's sight for the search (`gc.unfreeze()` after), so each collection scans
        what the trials made.
        """
        with _older_objects_frozen():
            super().search(*fit_args, **fit_kwargs)

    def run_trial(self, trial: keras_tuner.engine.trial.Trial, *args: Any, **kwargs: Any) -> Any:
        hp = trial.hyperparameters
        if "tuner/epochs" in hp.values:
            kwargs["epochs"] = int(hp.values["tuner/epochs"])
            kwargs["initial_epoch"] = int(hp.values["tuner/initial_epoch"])
        with released_gradient_functions():
            return super().run_trial(trial, *args, **kwargs)

    def _build_hypermodel(self, hp: keras_tuner.HyperParameters) -> keras.Model:
        model = super()._build_hypermodel(hp)
        parent = hp.values.get("tuner/trial_id")
        if parent is not None:
            load_weights_keeping_learning_rates(model, self._get_checkpoint_fname(parent))
        return model


class GANTuner(ContinuingTuner):
    """A keras-tuner Tuner for `GANHyperModel`: trains, scores and records each trial.

    Besides keras-tuner's own files it keeps, in the project directory, `results.json` (a row
    per trial) and `best_model.keras` (the best GAN so far, with `best_model.json` naming its
    trial). Every state file it writes, keras-tuner's `oracle.json`, `trial.json` and
    `<tuner_id>.json` included, is replaced atomically (temporary file, then rename), so a
    process killed at any moment leaves either the old or the new version, never half a file.

    A Ctrl-C (SIGINT) while the tuner records a finished trial is held back until the record
    is complete (see `RLHF.finetune`).
    """

    def __init__(self, oracle: keras_tuner.Oracle, *args: Any, verbose: int = 1,
                 **kwargs: Any) -> None:
        make_saves_atomic(oracle)
        super().__init__(oracle, *args, **kwargs)
        self.verbose = verbose
        self._search_start = time.perf_counter()
        self._trial_start: dict[str, float] = {}
        self._critical = 0  # > 0 while a finished trial is being recorded
        self._policy_logged = 0  # policy snapshots already written to TensorBoard
        self._rewards_logged: set[str] = set()  # trials whose reward is in TensorBoard
        self._interrupt_pending = False

    # ------------------------------------------------------------------ interrupts

    @contextlib.contextmanager
    def shielded(self) -> Iterator[None]:
        """Defers a Ctrl-C (when `RLHF` installed its handler) until the block completes."""
        self._critical += 1
        try:
            yield
        finally:
            self._critical -= 1
        if self._critical == 0 and self._interrupt_pending:
            self._interrupt_pending = False
            raise KeyboardInterrupt

    def handle_sigint(self, signum: int, frame: Any) -> None:
        """SIGINT handler: interrupt now, or right after the record being written."""
        if self._critical:
            self._interrupt_pending = True
            return
        raise KeyboardInterrupt

    # ------------------------------------------------------------------ search

    def search(self, *fit_args: Any, **fit_kwargs: Any) -> None:
        """As keras-tuner's, but a distributed chief serves with `serve_oracle`."""
        from keras_tuner.src.distribute import utils as dist_utils

        if dist_utils.is_chief_oracle():
            if "verbose" in fit_kwargs:
                self.oracle.verbose = fit_kwargs["verbose"]
            self.save()
            serve_oracle(self.oracle)
            self._recover_rows()  # a worker may have died between ending a trial and its row
            return
        super().search(*fit_args, **fit_kwargs)

    def save(self) -> None:
        if not self._is_worker():
            self.oracle.save()
        atomic_write_json(Path(self._get_tuner_fname()), self.get_state())

    def run_trial(self, trial: keras_tuner.engine.trial.Trial, *args: Any, **kwargs: Any) -> Any:
        """keras-tuner's `run_trial` (callbacks, TensorBoard + HParams, checkpoint), plus the
        GAN's sample grids, then `best_model.keras` when the trial is the best so far."""
        self.hypermodel.trial_seed = self.hypermodel.seed + _trial_index(trial.trial_id)
        self.hypermodel.trial_id = trial.trial_id
        log_dir = Path(self.project_dir) / "logs"
        tensorboard = TensorBoard(str(log_dir))  # one TensorBoard run per trial
        kwargs["callbacks"] = [*kwargs.pop("callbacks", []), tensorboard,
                               board.SampleGridCallback(tensorboard=tensorboard)]
        kwargs["verbose"] = 1 if self.verbose >= 2 else 0
        results = super().run_trial(trial, *args, **kwargs)
        result = results[-1] if isinstance(results, list) else results
        gan = self.hypermodel.last_model
        if gan is not None:
            self._save_if_best(trial.trial_id, result, gan)
        self.hypermodel.last_model = None
        return results

    def _save_if_best(self, trial_id: str, result: dict[str, float], gan: keras.Model) -> None:
        """Writes best_model.keras/.json if this trial beats the one they hold.

        Decided under a file lock against best_model.json itself, not against the oracle: the
        oracle learns of a trial only after `run_trial` returns, so two distributed workers
        ending at once would both see themselves as best, and the later write would win.
        """
        objective = self.oracle.objective
        score = _native(result.get(objective.name, math.nan))
        if score is None:  # NaN or inf: a diverged trial is never the best
            return
        project = Path(self.project_dir)
        info_path = project / BEST_INFO_FILE
        with locked(info_path):
            if info_path.is_file():
                current = json.loads(info_path.read_text())  # checked at the search's start
                held = current.get("score")
                if current.get("trial_id") != trial_id and held is not None and (
                        held == score or objective.better_than(held, score)):
                    return
            atomic_save(gan, project / BEST_MODEL_FILE)
            atomic_write_json(info_path, {"trial_id": trial_id, "score": score})

    def on_trial_begin(self, trial: keras_tuner.engine.trial.Trial) -> None:
        super().on_trial_begin(trial)
        self._trial_start[trial.trial_id] = time.perf_counter()

    def on_trial_end(self, trial: keras_tuner.engine.trial.Trial) -> None:
        seconds = time.perf_counter() - self._trial_start.pop(trial.trial_id, time.perf_counter())
        with self.shielded():
            super().on_trial_end(trial)  # the oracle scores the trial and updates the policy
            rows = self._record(trial.trial_id, seconds)
        self._log_trial(rows, trial)
        if self.verbose:
            self._print_progress(rows, trial.trial_id)

    def _record(self, trial_id: str, seconds: float | None) -> list[dict[str, Any]]:
        path = Path(self.project_dir) / RESULTS_FILE
        trial = self.oracle.get_trial(trial_id)
        hp = trial.hyperparameters.values
        row = {
            "trial_id": trial_id,
            "status": str(trial.status),
            "member": hp.get("tuner/member"),
            "segment": hp.get("tuner/round") if "tuner/member" in hp else None,
            "parent": hp.get("tuner/trial_id"),
            "values": {
                k: _native(v)
                for k, v in trial.hyperparameters.values.items()
                if not k.startswith("tuner/")  # multi-fidelity bookkeeping, not a choice
            },
            "score": _native(trial.score),
            "reward": _native(trial_reward(self.oracle, trial_id)),
            "seconds": None if seconds is None else round(seconds, 2),
            "metrics": {
                name: _native(trial.metrics.get_last_value(name))
                for name in trial.metrics.metrics
            },
        }
        # Distributed workers share the file: read-modify-write under a lock.
        with locked(path):
            rows = [r for r in read_rows(path) if r["trial_id"] != trial_id]
            rows.append(row)
            for other in rows:  # a generation's rewards are known once all of it has ended
                if other["reward"] is None:
                    other["reward"] = _native(trial_reward(self.oracle, other["trial_id"]))
            rows.sort(key=lambda r: _trial_index(r["trial_id"]))
            atomic_write_json(path, rows)
        return rows

    def _print_progress(self, rows: list[dict[str, Any]], trial_id: str) -> None:
        row = next(r for r in rows if r["trial_id"] == trial_id)
        done = len(rows)
        total = self.oracle.max_trials
        elapsed = time.perf_counter() - self._search_start
        finished_here = max(1, done - getattr(self, "_rows_at_start", 0))
        eta = elapsed / finished_here * max(0, total - done)
        values = ", ".join(f"{k}={_fmt(v)}" for k, v in row["values"].items())
        name = self.oracle.objective.name
        best = self.oracle.get_best_trials(1)
        best_score = _fmt(best[0].score) if best and best[0].score is not None else "-"
        score = _fmt(row["score"]) if row["score"] is not None else "failed"
        print(
            f"[{done}/{total}] {values} | {name}={score} | best={best_score} | "
            f"{_clock(elapsed)} elapsed, ETA {_clock(eta)}",
            flush=True,
        )

    def on_search_begin(self) -> None:
        super().on_search_begin()
        self._search_start = time.perf_counter()
        if not self._is_worker():
            self._recover_rows()
        rows = read_rows(Path(self.project_dir) / RESULTS_FILE)
        self._rows_at_start = len(rows)
        self._rewards_logged = {r["trial_id"] for r in rows if r.get("reward") is not None}

    def _log_trial(self, rows: list[dict[str, Any]], trial: keras_tuner.engine.trial.Trial) -> None:
        """The trial's measure (fid or modes) into keras-tuner's TensorBoard run for it (beside
        its HParams session and curves); each segment's reward once its generation has been
        learned from; the policy after an update into `logs/policy`."""
        row = next(r for r in rows if r["trial_id"] == trial.trial_id)
        step = int(trial.hyperparameters.values.get("tuner/round", 0))
        # `score` is not written: it is -fid (images) or modes + high_quality/100 (2-D).
        board.log_scalars(self._trial_run(trial.trial_id),
                          {k: row["metrics"].get(k) for k in ("fid", "modes")}, step)
        for other in rows:
            # A birth's reward is its score: only what a continuing segment added is new.
            if other["reward"] is None or other["parent"] is None:
                continue
            if other["trial_id"] in self._rewards_logged:
                continue
            board.log_scalars(self._trial_run(other["trial_id"]), {"reward": other["reward"]},
                              int(other["segment"] or 0))
            self._rewards_logged.add(other["trial_id"])
        oracle = self.oracle
        history = getattr(oracle, "history", None) or getattr(oracle, "policy_history", None)
        for snapshot in (history or [])[self._policy_logged:]:
            board.log_policy(self._logs_dir / board.POLICY_SUBDIR, snapshot.get("policy", {}),
                             int(snapshot.get("generation", snapshot.get("update", 0))))
        self._policy_logged = len(history or [])

    def _trial_run(self, trial_id: str) -> Path:
        return Path(self._get_tensorboard_dir(self._logs_dir, trial_id, 0))

    @property
    def _logs_dir(self) -> Path:
        return Path(self.project_dir) / "logs"

    def _recover_rows(self) -> None:
        """Adds the rows of trials the oracle ended but a killed process never recorded."""
        recorded = {row["trial_id"] for row in read_rows(Path(self.project_dir) / RESULTS_FILE)}
        for trial_id in self.oracle.end_order:
            if trial_id not in recorded:
                self._record(trial_id, None)  # its duration was lost with the process


@contextlib.contextmanager
def _older_objects_frozen() -> Iterator[None]:
    """`gc.freeze()` for the block, unless someone froze objects already (then left as is)."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _trial_index(trial_id: str) -> int:
    if str(trial_id).isdigit():
        return int(trial_id)
    return int(hashlib.sha256(str(trial_id).encode()).hexdigest()[:6], 16)


def _native(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"




def trial_reward(oracle: keras_tuner.Oracle, trial_id: str) -> float | None:
    """The reward the oracle's policy learned from for a trial (None until it has)."""
    decisions = getattr(oracle, "decisions", None)  # TrajectoryOracle
    if decisions is not None:
        return decisions.get(trial_id, {}).get("reward")
    return getattr(oracle, "rewards", {}).get(trial_id, {}).get("reward")  # ReinforceOracle
