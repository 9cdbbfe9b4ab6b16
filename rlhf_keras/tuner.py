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
import hashlib
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras
import keras_tuner
import numpy as np

from rlhf_keras import board
from rlhf_keras.compat import make_saves_atomic, released_gradient_functions, serve_oracle
from rlhf_keras.gan import GAN
from rlhf_keras.hypermodel import _test_pause
from rlhf_keras.run_dir import (
    BEST_INFO_FILE,
    BEST_MODEL_FILE,
    RESULTS_FILE,
    atomic_save,
    atomic_write_json,
    locked,
    read_rows,
)


class GANTuner(keras_tuner.Tuner):
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
        with released_gradient_functions():
            return self._train_and_keep_best(trial, *args, **kwargs)

    def _train_and_keep_best(
        self, trial: keras_tuner.engine.trial.Trial, *args: Any, **kwargs: Any
    ) -> dict[str, float]:
        hp = trial.hyperparameters
        self.hypermodel.trial_seed = self.hypermodel.seed + _trial_index(trial.trial_id)
        self.hypermodel.trial_id = trial.trial_id
        gan = self._try_build(hp)
        if "tuner/epochs" in hp.values:
            # Multi-fidelity (ReinforceOracle(rungs=...)): train from tuner/initial_epoch to
            # tuner/epochs, continuing the parent trial's weights when there is one.
            kwargs["epochs"] = int(hp.values["tuner/epochs"])
            kwargs["initial_epoch"] = int(hp.values["tuner/initial_epoch"])
            parent = hp.values.get("tuner/trial_id")
            if parent is not None:
                gan.load_weights(self._get_checkpoint_fname(parent))
        log_dir = Path(self.project_dir) / "logs" / f"trial_{trial.trial_id}"
        callbacks = [
            *kwargs.pop("callbacks", []),
            keras.callbacks.TensorBoard(str(log_dir)),
            board.SampleGridCallback(str(log_dir)),
        ]
        kwargs["verbose"] = 1 if self.verbose >= 2 else 0
        result = self.hypermodel.fit(hp, gan, *args, callbacks=callbacks, **kwargs)
        self.save_model(trial.trial_id, gan)
        if self._is_new_best(trial.trial_id, result):
            project = Path(self.project_dir)
            atomic_save(gan, project / BEST_MODEL_FILE)
            score = _native(result.get(self.oracle.objective.name))
            atomic_write_json(project / BEST_INFO_FILE, {"trial_id": trial.trial_id,
                                                         "score": score})
        return result

    def _is_new_best(self, trial_id: str, result: dict[str, float]) -> bool:
        objective = self.oracle.objective
        score = result.get(objective.name, math.nan)
        if not math.isfinite(score):
            return False
        # get_best_trials works on the oracle and, over gRPC, on a distributed worker alike.
        for other in self.oracle.get_best_trials(1):
            if other.trial_id == trial_id or other.score is None:
                continue
            if other.status != "COMPLETED" or not math.isfinite(other.score):
                continue
            if objective.better_than(other.score, score) or other.score == score:
                return False
        return True

    def save_model(self, trial_id: str, model: GAN, step: int = 0) -> None:
        model.save_weights(self._get_checkpoint_fname(trial_id))

    def on_trial_begin(self, trial: keras_tuner.engine.trial.Trial) -> None:
        super().on_trial_begin(trial)
        self._trial_start[trial.trial_id] = time.perf_counter()

    def on_trial_end(self, trial: keras_tuner.engine.trial.Trial) -> None:
        seconds = time.perf_counter() - self._trial_start.pop(trial.trial_id, time.perf_counter())
        with self.shielded():
            super().on_trial_end(trial)  # the oracle scores the trial and updates the policy
            _test_pause("trial_end", trial.trial_id)
            rows = self._record(trial.trial_id, seconds)
        history = getattr(self.oracle, "policy_history", [])
        row = next(r for r in rows if r["trial_id"] == trial.trial_id)
        board.log_trial_end(self._logs_dir, row, history[-1] if history else None)
        if self.verbose:
            self._print_progress(rows, trial.trial_id)

    def _record(self, trial_id: str, seconds: float | None) -> list[dict[str, Any]]:
        path = Path(self.project_dir) / RESULTS_FILE
        trial = self.oracle.get_trial(trial_id)
        reward = getattr(self.oracle, "rewards", {}).get(trial_id, {})
        row = {
            "trial_id": trial_id,
            "status": str(trial.status),
            "values": {
                k: _native(v)
                for k, v in trial.hyperparameters.values.items()
                if not k.startswith("tuner/")  # multi-fidelity bookkeeping, not a choice
            },
            "score": _native(trial.score),
            "reward": _native(reward.get("reward")),
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
        self._rows_at_start = len(read_rows(Path(self.project_dir) / RESULTS_FILE))
        # get_space() also works on a worker, whose oracle is a client of the chief's.
        board.log_search_config(self._logs_dir, self.oracle.get_space(), self.oracle.objective.name)

    @property
    def _logs_dir(self) -> Path:
        return Path(self.project_dir) / "logs"

    def _recover_rows(self) -> None:
        """Adds the rows of trials the oracle ended but a killed process never recorded."""
        recorded = {row["trial_id"] for row in read_rows(Path(self.project_dir) / RESULTS_FILE)}
        for trial_id in self.oracle.end_order:
            if trial_id not in recorded:
                self._record(trial_id, None)  # its duration was lost with the process


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


