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
import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras
import keras_tuner
import numpy as np

from rlhf_keras import board, metrics
from rlhf_keras import data as data_module
from rlhf_keras.architectures import scale_widths
from rlhf_keras.gan import GAN, LOSSES
from rlhf_keras.oracle import ReinforceOracle

# Hyperparameters a trial knows how to apply; anything else in a search space is an error.
SUPPORTED_HYPERPARAMETERS = {
    "g_lr": "generator Adam learning rate",
    "d_lr": "discriminator Adam learning rate",
    "g_width": "generator hidden-width multiplier",
    "d_width": "discriminator hidden-width multiplier",
    "beta_1": "Adam beta_1 of both optimizers",
    "loss": f"adversarial loss, one of {', '.join(LOSSES)}",
    "batch_size": "batch size",
    "d_steps": "discriminator updates per batch",
}
RESULTS_FILE = "results.json"
BEST_MODEL_FILE = "best_model.keras"
SEARCH_FILE = "search.json"
BEST_INFO_FILE = "best_model.json"  # which trial best_model.keras comes from, and its score
ORACLE_FILE = "oracle.json"  # keras-tuner's name for the oracle state

# Test hook (see `_test_pause`): RLHF_KERAS_TEST_PAUSE=<stage>[@<trial_id>] makes the search
# write the file named by RLHF_KERAS_TEST_MARKER and sleep at that stage, so a test can kill
# or interrupt the process at a known moment. Stages: "trial" (after the first training
# batch), "scoring" (trained, before the score is computed), "trial_end" (the oracle has
# recorded the trial, results.json not yet). Does nothing when unset, or once the marker exists.
PAUSE_ENV = "RLHF_KERAS_TEST_PAUSE"
MARKER_ENV = "RLHF_KERAS_TEST_MARKER"
PAUSE_STAGES = ("trial", "scoring", "trial_end")


def _test_pause(stage: str, trial_id: str | None) -> None:
    wanted = os.environ.get(PAUSE_ENV, "")
    marker = os.environ.get(MARKER_ENV)
    if not wanted or not marker:
        return
    name, _, only_trial = wanted.partition("@")
    if name != stage or (only_trial and only_trial != str(trial_id)) or os.path.exists(marker):
        return
    Path(marker).write_text(f"{stage} {trial_id}")
    time.sleep(600)  # the test kills or interrupts the process long before this ends


def default_search_space() -> keras_tuner.HyperParameters:
    """Learning rates (log scale around the articles' 2e-4), width multipliers and Adam beta_1."""
    hp = keras_tuner.HyperParameters()
    hp.Float("g_lr", 1e-5, 1e-2, sampling="log", default=2e-4)
    hp.Float("d_lr", 1e-5, 1e-2, sampling="log", default=2e-4)
    hp.Choice("g_width", [0.25, 0.5, 1.0, 2.0], default=1.0)
    hp.Choice("d_width", [0.25, 0.5, 1.0, 2.0], default=1.0)
    hp.Choice("beta_1", [0.0, 0.5, 0.9], default=0.5)
    return hp


def check_search_space(hp: keras_tuner.HyperParameters) -> None:
    """Raises ValueError if the space is empty or names a hyperparameter trials can't apply."""
    if not isinstance(hp, keras_tuner.HyperParameters):
        raise TypeError(
            f"search_space must be a keras_tuner.HyperParameters, got {type(hp).__name__}. "
            "Start from rlhf_keras.default_search_space() and add to it."
        )
    names = [entry.name for entry in hp.space]
    if not names:
        raise ValueError(
            "The search space is empty. Define at least one of "
            f"{', '.join(SUPPORTED_HYPERPARAMETERS)} (see rlhf_keras.default_search_space())."
        )
    unknown = [name for name in names if name not in SUPPORTED_HYPERPARAMETERS]
    if unknown:
        supported = "; ".join(f"{k} ({v})" for k, v in SUPPORTED_HYPERPARAMETERS.items())
        raise ValueError(
            f"Unsupported hyperparameter(s) {', '.join(map(repr, unknown))} in the search space. "
            f"Supported: {supported}."
        )
    if "loss" in names:
        bad = [v for v in hp._hps["loss"][0].values if v not in LOSSES]  # noqa: SLF001
        if bad:
            raise ValueError(f"Unknown loss value(s) {bad} in the search space; use {LOSSES}.")


class GANHyperModel(keras_tuner.HyperModel):
    """Builds and trains one trial's GAN from a base generator/discriminator pair.

    Args:
        generator: The base generator (`keras.Sequential`), built.
        discriminator: The base discriminator (`keras.Sequential`), built.
        latent_dim: Latent size of the GAN.
        pretrained: Whether the base pair carries trained weights: trials at width 1 then
            start from them instead of from a fresh initialisation.
        data: The data source (name, path, ...) trials train on.
        batch_size: Batch size when the space has no `batch_size`.
        epochs: Training epochs per trial.
        seed: Base seed; trial `i` initialises and draws noise with `seed + i`.
        d_steps: Discriminator steps when the space has no `d_steps`.
        loss: Adversarial loss when the space has no `loss`.
    """

    def __init__(
        self,
        generator: keras.Sequential,
        discriminator: keras.Sequential,
        latent_dim: int,
        pretrained: bool,
        data: Any,
        batch_size: int,
        epochs: int,
        seed: int,
        d_steps: int = 1,
        loss: str = "non_saturating",
    ) -> None:
        super().__init__(name="gan")
        self.generator = generator
        self.discriminator = discriminator
        self.latent_dim = latent_dim
        self.pretrained = pretrained
        self.data = data
        self.batch_size = batch_size
        self.epochs = epochs
        self.seed = seed
        self.d_steps = d_steps
        self.loss = loss
        self.trial_seed = seed  # set by GANTuner before each trial is built
        self.trial_id: str | None = None  # likewise

    def build(self, hp: keras_tuner.HyperParameters) -> GAN:
        def value(name: str, default: Any) -> Any:
            return hp.values.get(name, default)

        g_width, d_width = float(value("g_width", 1.0)), float(value("d_width", 1.0))
        # Seeded here, after keras-tuner's clear_session() has reset Keras's global seed.
        seed = self.trial_seed
        keras.utils.set_random_seed(seed)
        generator = scale_widths(self.generator, g_width, keep_weights=self.pretrained)
        discriminator = scale_widths(self.discriminator, d_width, keep_weights=self.pretrained)
        gan = GAN(
            generator,
            discriminator,
            latent_dim=self.latent_dim,
            d_steps=int(value("d_steps", self.d_steps)),
            seed=seed,
        )
        beta_1 = float(value("beta_1", 0.5))
        gan.compile(
            g_optimizer=keras.optimizers.Adam(float(value("g_lr", 2e-4)), beta_1=beta_1),
            d_optimizer=keras.optimizers.Adam(float(value("d_lr", 2e-4)), beta_1=beta_1),
            loss=str(value("loss", self.loss)),
        )
        return gan

    def fit(
        self, hp: keras_tuner.HyperParameters, model: GAN, *args: Any, **kwargs: Any
    ) -> dict[str, float]:
        """Trains `model` and scores it; a diverged run stops at once and scores NaN."""
        batch_size = int(hp.values.get("batch_size", self.batch_size))
        dataset, _ = data_module.load(
            self.data, batch_size=batch_size, seed=model.seed, shape=model.data_shape
        )
        callbacks = [keras.callbacks.TerminateOnNaN(), *kwargs.pop("callbacks", [])]
        if os.environ.get(PAUSE_ENV):
            callbacks.append(_PauseCallback(self.trial_id))
        kwargs.setdefault("epochs", self.epochs)
        kwargs.setdefault("shuffle", False)  # the dataset is already shuffled, with a seed
        history = model.fit(dataset, *args, callbacks=callbacks, **kwargs).history
        last = {name: float(values[-1]) for name, values in history.items() if values}
        result = {name: last[name] for name in ("d_loss", "g_loss", "r_g", "r_d") if name in last}
        result["epochs_trained"] = float(len(history.get("loss", [])))
        if not all(math.isfinite(v) for v in last.values()):
            # keras-tuner marks a NaN objective as failed; the oracle gives it the penalty.
            return {**result, "fid": math.nan, "score": math.nan, "diverged": 1.0}
        _test_pause("scoring", self.trial_id)
        quality = metrics.quality(model, self.data, seed=0)
        return {**result, **{k: float(v) for k, v in quality.items()}, "diverged": 0.0}


class _PauseCallback(keras.callbacks.Callback):
    """The "trial" stage of the test hook: pauses after the first training batch."""

    def __init__(self, trial_id: str | None) -> None:
        super().__init__()
        self.trial_id = trial_id

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if batch == 0:
            _test_pause("trial", self.trial_id)


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
        _make_saves_atomic(oracle)
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
        _atomic_write_json(Path(self._get_tuner_fname()), self.get_state())

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
            _atomic_save(gan, project / BEST_MODEL_FILE)
            score = _native(result.get(self.oracle.objective.name))
            _atomic_write_json(project / BEST_INFO_FILE, {"trial_id": trial.trial_id,
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
        with _locked(path):
            rows = [r for r in _read_rows(path) if r["trial_id"] != trial_id]
            rows.append(row)
            rows.sort(key=lambda r: _trial_index(r["trial_id"]))
            _atomic_write_json(path, rows)
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
        self._rows_at_start = len(_read_rows(Path(self.project_dir) / RESULTS_FILE))
        # get_space() also works on a worker, whose oracle is a client of the chief's.
        board.log_search_config(self._logs_dir, self.oracle.get_space(), self.oracle.objective.name)

    @property
    def _logs_dir(self) -> Path:
        return Path(self.project_dir) / "logs"

    def _recover_rows(self) -> None:
        """Adds the rows of trials the oracle ended but a killed process never recorded."""
        recorded = {row["trial_id"] for row in _read_rows(Path(self.project_dir) / RESULTS_FILE)}
        for trial_id in self.oracle.end_order:
            if trial_id not in recorded:
                self._record(trial_id, None)  # its duration was lost with the process


@contextlib.contextmanager
def released_gradient_functions() -> Iterator[None]:
    """Forgets the gradient functions registered while the block ran, once it is over.

    Each trace of a Keras train step goes through `tf.custom_gradient`, which in graph mode
    registers its gradient function under a fresh name ("CustomGradient-<n>") in TensorFlow's
    process-wide gradient registry and never removes it. That function's closure holds the
    traced train-step graph, so without this every finished trial would keep its graph alive
    for the life of the process (a few MiB a trial: the memory growth of long searches).
    Safe once the block's models are done training: a registered gradient is only looked up
    while a gradient is being traced. Does nothing if TensorFlow's internals differ.
    """
    try:
        from tensorflow.python.framework import ops as tf_ops

        registry = tf_ops._gradient_registry._registry  # private; there is no public way
        before = set(registry)
    except (ImportError, AttributeError, TypeError):
        registry, before = None, set()
    try:
        yield
    finally:
        if isinstance(registry, dict):
            for name in set(registry) - before:
                if name.startswith("CustomGradient-"):
                    registry.pop(name, None)


def serve_oracle(oracle: keras_tuner.Oracle, poll_s: float = 0.5) -> None:
    """Serves `oracle` to distributed workers until every trial is done (the chief's job).

    keras-tuner's gRPC service, listening on exactly KERASTUNER_ORACLE_IP:PORT, with no
    authentication or encryption: keep it on a private network. Unlike keras-tuner's own
    loop, it fails at once if the address can't be bound, and while it waits for the last
    trials it says which workers hold them: a worker that died keeps its trial until a worker
    with the same KERASTUNER_TUNER_ID is started again, which re-runs it.

    Args:
        oracle: The chief's oracle.
        poll_s: Seconds between checks for the end of the search.

    Raises:
        RuntimeError: If the address can't be bound.
    """
    from concurrent import futures

    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_chief

    address = f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}"
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    servicer = oracle_chief.OracleServicer(oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError:
        bound = 0
    if not bound:
        raise RuntimeError(
            f"The chief cannot listen on {address} (KERASTUNER_ORACLE_IP:"
            "KERASTUNER_ORACLE_PORT): the port is in use or the address is not one of this "
            "machine's. Pick a free port and an address of this machine."
        )
    server.start()
    last_note = time.monotonic()
    try:
        while True:
            time.sleep(poll_s)
            if not servicer.stop_triggered:
                continue
            if oracle_chief.exit_chief(oracle):
                break
            if time.monotonic() - last_note > 60:
                last_note = time.monotonic()
                held = ", ".join(f"{tuner} (trial {trial.trial_id})"
                                 for tuner, trial in dict(oracle.ongoing_trials).items())
                print(f"Waiting for the last trials: {held or 'workers to sign off'}. If a "
                      "worker died, start it again with the same KERASTUNER_TUNER_ID: it "
                      "re-runs its trial.", flush=True)
    finally:
        server.stop(grace=1)


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


def _read_rows(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{path} is not valid JSON ({err}). It holds the results table of this search; "
            "restore it or move it away, then run again."
        ) from err


def _atomic_write_json(path: Path, payload: Any) -> None:
    # A per-process temporary name: distributed workers may write the same file at once.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_text(json.dumps(payload, indent=1))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _atomic_save(gan: GAN, path: Path) -> None:
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.keras")
    try:
        gan.save(tmp)
        os.replace(tmp, path)  # a reader never sees a half-written best model
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock beside `path` (POSIX; elsewhere, no lock)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(path.with_name("." + path.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _make_saves_atomic(oracle: keras_tuner.Oracle) -> None:
    """Makes `oracle` write oracle.json and each trial.json atomically.

    keras-tuner writes them in place (`utils.save_json`), so a process killed mid-write leaves
    a truncated file that the next run cannot reload. An oracle class that overrides `save` or
    `_save_trial` itself is left alone, and so are non-local directories (gs://...).
    """
    cls = type(oracle)
    if getattr(oracle, "_atomic_saves", False):
        return

    def save() -> None:
        fname = oracle._get_oracle_fname()
        if "://" in fname:
            cls.save(oracle)
            return
        _atomic_write_json(Path(fname), oracle.get_state())

    def save_trial(trial: keras_tuner.engine.trial.Trial) -> None:
        directory = oracle._get_trial_dir(trial.trial_id)
        if "://" in directory:
            cls._save_trial(oracle, trial)
            return
        _atomic_write_json(Path(directory) / "trial.json", trial.get_state())

    if cls.save is keras_tuner.Oracle.save:
        oracle.save = save
    if cls._save_trial is keras_tuner.Oracle._save_trial:
        oracle._save_trial = save_trial
    oracle._atomic_saves = True


def check_state_files(project_dir: Path) -> None:
    """Raises ValueError naming the first state file of a run that is not valid JSON.

    Checked before a run resumes, so a corrupt file stops it before anything is written or
    deleted.

    Args:
        project_dir: The run folder (`directory/project_name`).
    """
    candidates = [project_dir / name for name in (ORACLE_FILE, RESULTS_FILE, SEARCH_FILE)]
    candidates += sorted(project_dir.glob("tuner*.json")) + sorted(project_dir.glob("chief*.json"))
    candidates += sorted(project_dir.glob("trial_*/trial.json"))
    for path in candidates:
        if not path.is_file():
            continue
        try:
            json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(
                f"{path} is corrupt ({err}), so the run in {project_dir} cannot resume. "
                "Nothing was changed. Restore the file from a backup, or move the run folder "
                "away (or pass overwrite=True / --overwrite, which deletes it) to start afresh."
            ) from err


class RLHF:
    """Reinforcement-learning hyperparameter fine-tuning for GANs.

    A REINFORCE policy (`ReinforceOracle`) proposes each trial's generator and discriminator
    learning rates, width multipliers and Adam beta_1; the trial's GAN is trained and scored
    (FID for images, lower is better; mode metrics for 2-D data), and the score is the
    policy's reward. Runs are keras-tuner projects: results live in
    `directory/project_name`, and calling `finetune` again with the same directory resumes.

    With the defaults, `RLHF().finetune(gan)` on the first article's MLP and the embedded
    digits runs 8 trials of 10 epochs (280 steps each): about 2 minutes on a 2-core CPU.

    Args:
        search_space: A `keras_tuner.HyperParameters`; default `default_search_space()`.
            Supported names: g_lr, d_lr, g_width, d_width, beta_1, loss, batch_size, d_steps.
        max_trials: Number of GANs to train.
        epochs_per_trial: Training epochs of each trial.
        batch_size: Batch size (unless the space tunes `batch_size`).
        data: Default data source for `finetune` (see `rlhf_keras.data.load`); None: MNIST
            from TFDS if available, else the embedded digits.
        objective: `"auto"` (`fid`, min, for images; `score`, max, for 2-D data), or a
            keras-tuner objective over the trial metrics (`fid`, `score`, `r_g`, `r_d`, ...).
        directory: Where runs are kept.
        project_name: The run's folder inside `directory`; default `"rlhf"`.
        overwrite: Start afresh, deleting an earlier run in the same folder.
        seed: Seed of the policy and of every trial's initialisation and noise.
        verbose: 0 silent, 1 a line per trial, 2 also Keras progress bars.
        **oracle_kwargs: Passed to `ReinforceOracle` (learning_rate, entropy_coef, ...).
    """

    def __init__(
        self,
        search_space: keras_tuner.HyperParameters | None = None,
        max_trials: int = 8,
        epochs_per_trial: int = 10,
        batch_size: int = 64,
        data: Any = None,
        objective: Any = "auto",
        directory: str | os.PathLike = "rlhf_runs",
        project_name: str | None = None,
        overwrite: bool = False,
        seed: int | None = None,
        verbose: int = 1,
        **oracle_kwargs: Any,
    ) -> None:
        self.search_space = default_search_space() if search_space is None else search_space
        check_search_space(self.search_space)
        for name, value in (("max_trials", max_trials), ("epochs_per_trial", epochs_per_trial),
                            ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        self.max_trials = max_trials
        self.epochs_per_trial = epochs_per_trial
        self.batch_size = batch_size
        self.data = data
        self.objective = objective
        self.directory = Path(directory)
        self.project_name = project_name or "rlhf"
        self.overwrite = overwrite
        self.seed = 0 if seed is None else int(seed)
        self.verbose = verbose
        rungs = oracle_kwargs.get("rungs")
        if rungs is not None and (not rungs or int(list(rungs)[-1]) != epochs_per_trial):
            raise ValueError(
                f"rungs={rungs!r} must end at epochs_per_trial={epochs_per_trial}: the last rung "
                f"is a full trial, e.g. rungs=(1, {epochs_per_trial})."
            )
        self.oracle_kwargs = oracle_kwargs
        # Printed after a Ctrl-C; the CLI sets its own command line here.
        self.resume_command: str | None = None
        self.tuner: GANTuner | None = None
        self.oracle: ReinforceOracle | None = None
        self.best_gan: GAN | None = None

    @property
    def project_dir(self) -> Path:
        return self.directory / self.project_name

    def finetune(self, gan: Any, data: Any = None, **fit_kwargs: Any) -> GAN:
        """Searches the hyperparameters of `gan` and returns the best GAN, trained.

        Args:
            gan: A `GAN`, or the first article's `keras.Sequential([generator,
                discriminator])`, built or not. If it carries weights to fine-tune (a GAN that
                has been trained, or built Sequentials), trials at width 1 start from them;
                other widths, and unbuilt or untrained models, start from a fresh
                initialisation seeded per trial.
            data: Data source; defaults to the `data` given to the constructor.
            **fit_kwargs: Passed to each trial's `GAN.fit` (e.g. `callbacks`).

        Returns:
            The best trial's `GAN`, trained; also saved as `best_model.keras` in the run.

        Raises:
            TypeError, ValueError: If `gan`, the data or the run directory is unusable (see
                README, "When things go wrong"); raised before any training, with the run
                directory left as it was.
            KeyboardInterrupt: On Ctrl-C, once the finished trials are saved; the message
                printed says how to resume (the interrupted trial runs again).
        """
        pretrained = _has_weights_to_keep(gan)
        base = GAN.from_sequential(gan) if not isinstance(gan, GAN) else gan
        source = self.data if data is None else data
        # Load once now: a bad source or a shape the generator can't produce fails here.
        _, info = data_module.load(source, batch_size=self.batch_size, seed=self.seed,
                                   shape=base.data_shape)
        if source is None:
            source = info.name
        objective = self._objective(info)
        self._prepare_directory(info, objective)
        hypermodel = GANHyperModel(
            base.generator,
            base.discriminator,
            latent_dim=base.latent_dim,
            pretrained=pretrained,
            data=source,
            batch_size=self.batch_size,
            epochs=self.epochs_per_trial,
            seed=self.seed,
            d_steps=base.d_steps,
            loss=base.loss_name,
        )
        self.oracle = ReinforceOracle(
            objective=objective,
            max_trials=self.max_trials,
            hyperparameters=self.search_space,
            seed=self.seed,
            **self.oracle_kwargs,
        )
        self.tuner = GANTuner(
            oracle=self.oracle,
            hypermodel=hypermodel,
            directory=str(self.directory),
            project_name=self.project_name,
            overwrite=False,
            verbose=self.verbose,
        )
        self.oracle = self.tuner.oracle
        if self.verbose:
            print(f"RLHF: {self.max_trials} trials of {self.epochs_per_trial} epochs on "
                  f"{info.name} ({info.size} examples), objective {objective.name} "
                  f"({objective.direction}); run directory {self.project_dir}", flush=True)
        # Ctrl-C stops training at once, but never halfway through recording a trial.
        in_main_thread = threading.current_thread() is threading.main_thread()
        previous = None
        if in_main_thread:
            previous = signal.signal(signal.SIGINT, self.tuner.handle_sigint)
        try:
            self.tuner.search(verbose=0, **fit_kwargs)
        except KeyboardInterrupt:
            self._report_interrupt()
            raise
        finally:
            if in_main_thread:
                signal.signal(signal.SIGINT, previous or signal.default_int_handler)
        return self._load_best()

    def _report_interrupt(self) -> None:
        done = len(_read_rows(self.project_dir / RESULTS_FILE))
        resume = self.resume_command or (
            f"run the same code again with directory={str(self.directory)!r}, project_name="
            f"{self.project_name!r} and overwrite=False: RLHF(...).finetune(gan) resumes"
        )
        print(
            f"\nInterrupted. {done} of {self.max_trials} trials are saved in "
            f"{self.project_dir}; the trial that was running will run again.\n"
            f"To resume: {resume}",
            file=sys.stderr,
            flush=True,
        )

    def _objective(self, info: data_module.DataInfo) -> keras_tuner.Objective:
        if self.objective == "auto":
            if info.kind == "points":
                return keras_tuner.Objective("score", "max")
            return keras_tuner.Objective("fid", "min")
        if isinstance(self.objective, str):
            direction = "min" if self.objective in ("fid", "d_loss", "g_loss") else "max"
            return keras_tuner.Objective(self.objective, direction)
        return self.objective

    def _prepare_directory(self, info: data_module.DataInfo, objective: Any) -> None:
        """Refuses a folder it can't use, before anything in it is written or deleted."""
        fingerprint = {
            "data": info.name,
            "data_shape": list(info.shape),
            "objective": objective.name,
            "search_space": sorted(entry.name for entry in self.search_space.space),
            "epochs_per_trial": self.epochs_per_trial,
        }
        if self.oracle_kwargs.get("rungs") is not None:
            fingerprint["rungs"] = [int(r) for r in self.oracle_kwargs["rungs"]]
        path = self.project_dir / SEARCH_FILE
        self._check_writable()
        if self.overwrite and self.project_dir.exists():
            import shutil

            shutil.rmtree(self.project_dir)
        if path.exists():
            try:
                previous = json.loads(path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise ValueError(f"{path} is corrupt ({err}); move it away or pass "
                                 "overwrite=True to start afresh.") from err
            if previous != fingerprint:
                changed = [k for k in fingerprint if previous.get(k) != fingerprint[k]]
                raise ValueError(
                    f"{self.project_dir} holds a different search (differs in: "
                    f"{', '.join(changed)}). Use another project_name or directory, or pass "
                    "overwrite=True to replace it (CLI: --project, --dir, --overwrite)."
                )
        elif self._holds_other_project():
            raise ValueError(
                f"{self.project_dir} holds a keras-tuner project that this search did not "
                f"create (it has {ORACLE_FILE} or trial folders but no {SEARCH_FILE}). Use "
                "another project_name or directory, or pass overwrite=True to replace it (CLI: "
                "--project, --dir, --overwrite)."
            )
        check_state_files(self.project_dir)
        self._check_oracle_state()
        if not path.exists():
            self.project_dir.mkdir(parents=True, exist_ok=True)
            _atomic_write_json(path, fingerprint)

    def _check_writable(self) -> None:
        """Fails early on a folder that can't be created or written (even as root)."""
        probe_dir = self.project_dir
        while not probe_dir.exists() and probe_dir != probe_dir.parent:
            probe_dir = probe_dir.parent
        try:
            if not probe_dir.is_dir():
                raise NotADirectoryError(f"{probe_dir} is a file, not a folder")
            probe = probe_dir / f".rlhf_write_test.{os.getpid()}"
            probe.write_text("")
            probe.unlink()
        except OSError as err:
            raise ValueError(
                f"Cannot write the run directory {self.project_dir}: {err}. Pass directory= "
                "(CLI: --dir) a folder you can write to."
            ) from err

    def _holds_other_project(self) -> bool:
        if not self.project_dir.is_dir():
            return False
        if (self.project_dir / ORACLE_FILE).exists():
            return True
        return any(self.project_dir.glob("trial_*/trial.json"))

    def _check_oracle_state(self) -> None:
        path = self.project_dir / ORACLE_FILE
        if not path.is_file():
            return
        state = json.loads(path.read_text())  # valid: check_state_files ran first
        if not isinstance(state, dict) or "reinforce" not in state:
            raise ValueError(
                f"{path} was not written by the REINFORCE oracle of this project, so the run "
                f"in {self.project_dir} cannot resume. Use another project_name or directory, "
                "or pass overwrite=True to replace it (CLI: --project, --dir, --overwrite)."
            )

    def _load_best(self) -> GAN:
        best_path = self.project_dir / BEST_MODEL_FILE
        if not best_path.exists():
            raise RuntimeError(
                f"No trial finished with a finite {self.tuner.oracle.objective.name}; every "
                f"trial failed or diverged. See {self.project_dir / RESULTS_FILE}."
            )
        self.best_gan = keras.models.load_model(best_path)
        return self.best_gan

    # ------------------------------------------------------------------ results

    @property
    def best_model_path(self) -> Path:
        return self.project_dir / BEST_MODEL_FILE

    @property
    def best_hyperparameters(self) -> keras_tuner.HyperParameters:
        tuner = self._require_tuner()
        if not tuner._is_worker():
            return tuner.get_best_hyperparameters(1)[0]
        # A distributed worker: the chief may be gone once the search is over; use the table.
        objective = tuner.oracle.objective
        rows = [r for r in self.results if r["status"] == "COMPLETED" and r["score"] is not None]
        if not rows:
            raise RuntimeError(f"No trial completed; see {self.project_dir / RESULTS_FILE}.")
        pick = max if objective.direction == "max" else min
        hp = self.search_space.copy()
        hp.values = dict(pick(rows, key=lambda r: r["score"])["values"])
        return hp

    @property
    def results(self) -> list[dict[str, Any]]:
        """A row per trial: trial_id, status, values, score, reward, seconds, metrics."""
        return _read_rows(self.project_dir / RESULTS_FILE)

    def results_summary(self, num_trials: int = 10) -> None:
        """Prints keras-tuner's summary of the best trials."""
        self._require_tuner().results_summary(num_trials)

    def _require_tuner(self) -> GANTuner:
        if self.tuner is None:
            raise RuntimeError("Call finetune(gan) first.")
        return self.tuner


def _has_weights_to_keep(gan: Any) -> bool:
    """A trained GAN, or a built Sequential pair (its weights may be trained: keep them)."""
    if isinstance(gan, GAN):
        return gan.g_optimizer is not None and int(gan.g_optimizer.iterations) > 0
    parts = getattr(gan, "layers", [])
    return bool(parts) and all(getattr(p, "built", False) for p in parts)
