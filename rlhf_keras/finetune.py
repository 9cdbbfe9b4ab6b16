"""`RLHF`: reinforcement-learning hyperparameter fine-tuning of a GAN, on keras-tuner."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import keras
import keras_tuner

from rlhf_keras import data as data_module
from rlhf_keras.gan import GAN
from rlhf_keras.hypermodel import GANHyperModel, check_search_space, default_search_space
from rlhf_keras.oracle import ReinforceOracle
from rlhf_keras.run_dir import (
    BEST_MODEL_FILE,
    RESULTS_FILE,
    check_project_name,
    prepare_run_directory,
    read_rows,
    run_lock,
)
from rlhf_keras.trajectory_oracle import STATE_KEY as TRAJECTORY_KEY
from rlhf_keras.trajectory_oracle import (
    TrajectoryOracle,
    check_birth_only,
    check_birth_population,
    check_final_population,
    generation_sizes,
)
from rlhf_keras.tuner import GANTuner

STRATEGIES = ("trajectory", "oneshot")
DEFAULT_BUDGET_STEPS = 20_000
BUDGET_ENV = "RLHF_KERAS_BUDGET_STEPS"
BIRTH_ONLY = ("g_width", "d_width")  # they change the networks' shapes: fixed at birth


# The trajectory search's oracle defaults: a way back to the best segment, a REINFORCE
# baseline from earlier generations (session 23), a first birth at the space's defaults
# (session 24) and rewards whose losses are capped at the parent's score (session 33);
# measured on MNIST, ring8 and grid25 in benchmarks/RESULTS.md.
TRAJECTORY_DEFAULTS: dict[str, Any] = {"elitist": True, "baseline": "running",
                                       "birth_at_defaults": True, "reward": "capped"}


def default_final_population(population_size: int) -> int:
    """Members kept by default once half of the budget is spent: half of a population of 4 or
    more (the best lineages then train longer), all of a smaller one. Measured in
    `benchmarks/RESULTS.md` (session 23).

    >>> default_final_population(4), default_final_population(3)
    (2, 3)
    """
    return population_size // 2 if population_size >= 4 else population_size


def default_birth_population(population_size: int, segments: int) -> int:
    """Members born by default: three times the population, screened after one segment, where
    the budget leaves a later segment for them (at most `population_size * (segments - 1)`).
    Twice the population was the default from session 19; three times did better on both
    MNIST tasks and grid25 and worse on ring8 (`benchmarks/RESULTS.md`, sessions 37-38).

    >>> default_birth_population(4, 8), default_birth_population(3, 3)
    (12, 6)
    """
    return min(3 * population_size, max(population_size * (segments - 1), population_size))


class RLHF:
    """Reinforcement-learning hyperparameter fine-tuning for GANs.

    By default (`strategy="trajectory"`) a population of GANs trains side by side for
    `budget_steps` training steps in all, cut into segments; before each segment a REINFORCE
    policy (`TrajectoryOracle`) chooses how each member goes on (learning rates, Adam beta_1),
    members that fall behind take over better ones, and the best segment of any trajectory is
    the search's result. `strategy="oneshot"` (`ReinforceOracle`) instead picks one set of
    hyperparameters per trial. Runs are keras-tuner projects: results live in
    `directory/project_name`, and calling `finetune` again with the same directory resumes.

    Args:
        search_space: A `keras_tuner.HyperParameters`; default `default_search_space()`.
            Supported names: g_lr, d_lr, g_width, d_width, beta_1, loss, batch_size, d_steps.
        budget_steps: Training steps of the whole search (all members and segments); default
            20,000 for the trajectory search.
        strategy: `"trajectory"` or `"oneshot"`.
        population_size: Members trained side by side (trajectory).
        segments: Segments per member at full population (trajectory); the budget is split
            into `population_size * segments` segments.
        final_population: Members kept once half of the budget is spent (trajectory): the
            best ones go on for the rest of the budget, so each trains longer. None:
            `default_final_population`, half of a population of 4 or more;
            `population_size`: no cut.
        birth_population: Members born (trajectory); after their first segment the best
            `population_size` go on, inside the same budget. None: `default_birth_population`,
            three times `population_size` where the budget leaves room; `population_size`: no
            screening.
        evaluations_per_segment: Points of each segment at which its GAN is scored
            (trajectory); the segment ends at the best of them, weights and optimizer state,
            and is scored there (`BestPointOfSegment`). 1: scored at its end only. More
            evaluations cost evaluation time, not training steps.
        max_trials: Number of GANs to train (oneshot).
        epochs_per_trial: Training epochs of each trial (oneshot without a budget).
        batch_size: Batch size (unless the space tunes `batch_size`).
        data: Default data source for `finetune` (see `rlhf_keras.data.load`); None: MNIST
            (TFDS if prepared locally, else the embedded copy of its test split).
        objective: `"auto"` (`fid`, min, for images; `score`, max, for 2-D data), or a
            keras-tuner objective over the trial metrics (`fid`, `score`, `r_g`, `r_d`, ...).
        directory: Where runs are kept.
        project_name: The run's folder inside `directory`; default `"rlhf"`.
        overwrite: Start afresh, deleting an earlier run in the same folder.
        seed: Seed of the policy and of every trial's initialisation and noise.
        verbose: 0 silent, 1 a line per trial, 2 also Keras progress bars.
        **oracle_kwargs: Passed to the oracle, `TrajectoryOracle` or `ReinforceOracle`
            (learning_rate, entropy_coef, ...). The trajectory search's own defaults,
            `TRAJECTORY_DEFAULTS`, are `elitist=True, baseline="running",
            birth_at_defaults=True, reward="capped"`; pass `elitist=False`,
            `baseline="population"`, `birth_at_defaults=False` or `reward="difference"` for
            the oracle's plain behaviour. `birth_only`
            defaults to `BIRTH_ONLY` (the widths, which change the networks' shapes).
    """

    def __init__(
        self,
        search_space: keras_tuner.HyperParameters | None = None,
        budget_steps: int | None = None,
        strategy: str = "trajectory",
        population_size: int = 4,
        segments: int = 8,
        final_population: int | None = None,
        birth_population: int | None = None,
        evaluations_per_segment: int = 1,
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
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}: "
                             "'trajectory' steers each run as it trains (the default), "
                             "'oneshot' picks one set of hyperparameters per trial.")
        if budget_steps is None and strategy == "trajectory":
            budget_steps = default_budget_steps()
        for name, value in (("max_trials", max_trials), ("epochs_per_trial", epochs_per_trial),
                            ("batch_size", batch_size), ("population_size", population_size),
                            ("segments", segments),
                            ("evaluations_per_segment", evaluations_per_segment),
                            ("budget_steps", 1 if budget_steps is None else budget_steps)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        check_final_population(final_population, population_size)
        check_birth_population(birth_population, population_size, segments)
        if strategy == "trajectory":
            if birth_population is None:
                birth_population = default_birth_population(population_size, segments)
            if final_population is None:
                final_population = default_final_population(population_size)
            oracle_kwargs = {**TRAJECTORY_DEFAULTS, **oracle_kwargs}
            if "birth_only" in oracle_kwargs:
                check_birth_only(oracle_kwargs["birth_only"], self.search_space)
            check_balance_space(oracle_kwargs.get("balance"), self.search_space)
        units = population_size * segments if strategy == "trajectory" else max_trials
        if budget_steps is not None and budget_steps < units:
            raise ValueError(
                f"budget_steps={budget_steps} is smaller than the {units} "
                f"{'segments' if strategy == 'trajectory' else 'trials'} it must be split into; "
                "raise budget_steps or lower population_size/segments (max_trials)."
            )
        steps_per_trial = None if budget_steps is None else budget_steps // units
        if evaluations_per_segment > 1 and (strategy != "trajectory"
                                            or evaluations_per_segment > steps_per_trial):
            raise ValueError(
                f"evaluations_per_segment={evaluations_per_segment} needs "
                + ("strategy='trajectory'" if strategy != "trajectory" else
                   f"segments of at least as many steps; they have {steps_per_trial}")
                + ": lower evaluations_per_segment, or raise budget_steps.")
        self.strategy = strategy
        self.evaluations_per_segment = evaluations_per_segment
        self.budget_steps = budget_steps
        self.population_size = population_size
        self.segments = segments
        self.final_population = final_population
        self.birth_population = birth_population
        self.max_trials = population_size * segments if strategy == "trajectory" else max_trials
        # Steps of one trial (a segment, or a whole one-shot trial) under a step budget.
        self.steps_per_trial = steps_per_trial
        self.epochs_per_trial = epochs_per_trial
        self.batch_size = batch_size
        self.data = data
        self.objective = objective
        self.directory = Path(directory)
        self.project_name = check_project_name("rlhf" if project_name is None else project_name)
        self.overwrite = overwrite
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise ValueError(f"seed must be an int >= 0 or None, got {seed!r}.")
        self.seed = 0 if seed is None else int(seed)
        self.verbose = verbose
        rungs = oracle_kwargs.get("rungs")
        if rungs is not None and strategy != "oneshot":
            raise ValueError("rungs= applies to strategy='oneshot' only.")
        if rungs is not None and (not rungs or int(list(rungs)[-1]) != epochs_per_trial):
            raise ValueError(
                f"rungs={rungs!r} must end at epochs_per_trial={epochs_per_trial}: the last rung "
                f"is a full trial, e.g. rungs=(1, {epochs_per_trial})."
            )
        self.oracle_kwargs = oracle_kwargs
        # Printed after a Ctrl-C; the CLI sets its own command line here.
        self.resume_command: str | None = None
        self.tuner: GANTuner | None = None
        self.oracle: keras_tuner.Oracle | None = None
        self.best_gan: GAN | None = None

    @property
    def total_steps(self) -> int | None:
        """Training steps of the whole search (all members and segments), when budgeted."""
        return None if self.steps_per_trial is None else self.steps_per_trial * self.max_trials

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
        if self.evaluations_per_segment > 1 and objective.name not in ("fid", "score"):
            raise ValueError(
                f"evaluations_per_segment={self.evaluations_per_segment} compares points of a "
                f"segment by the objective, which must be 'fid' or 'score' (what "
                f"metrics.quality measures), not {objective.name!r}: use objective='auto', or "
                "evaluations_per_segment=1.")
        batch_sizes = [self.batch_size]
        for hp in self.search_space.space:
            if hp.name == "batch_size":
                batch_sizes += list(getattr(hp, "values", None) or [hp.max_value])
        data_module.check_searchable(info, batch_sizes)
        # The oracle validates its own arguments: built before anything is written.
        oracle = self._make_oracle(objective)
        # One process per run folder; taken before anything in it is deleted or written.
        with run_lock(self.project_dir):
            self._prepare_directory(info, objective, _architecture(base))
            hypermodel = GANHyperModel(
                base.generator,
                base.discriminator,
                latent_dim=base.latent_dim,
                pretrained=pretrained,
                data=source,
                batch_size=self.batch_size,
                epochs=1 if self.steps_per_trial else self.epochs_per_trial,
                seed=self.seed,
                d_steps=base.d_steps,
                loss=base.loss_name,
                steps_per_segment=self.steps_per_trial,
                evaluations_per_segment=self.evaluations_per_segment,
                objective=objective,
            )
            self.tuner = GANTuner(
                oracle=oracle,
                hypermodel=hypermodel,
                directory=str(self.directory),
                project_name=self.project_name,
                overwrite=False,
                verbose=self.verbose,
            )
            self.oracle = self.tuner.oracle
            if self.verbose:
                print(f"RLHF: {self._plan_text()} on {info.name} ({info.size} examples), objective "
                      f"{objective.name} ({objective.direction}); run directory "
                      f"{self.project_dir}", flush=True)
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

    def _make_oracle(self, objective: keras_tuner.Objective) -> keras_tuner.Oracle:
        if self.strategy == "trajectory":
            return TrajectoryOracle(
                objective=objective,
                population_size=self.population_size,
                segments=self.segments,
                final_population=self.final_population,
                birth_population=self.birth_population,
                hyperparameters=self.search_space,
                seed=self.seed,
                **{"birth_only": BIRTH_ONLY, **self.oracle_kwargs},
            )
        return ReinforceOracle(
            objective=objective,
            max_trials=self.max_trials,
            hyperparameters=self.search_space,
            seed=self.seed,
            **self.oracle_kwargs,
        )

    def _plan_text(self) -> str:
        if self.strategy == "trajectory":
            sizes = generation_sizes(self.population_size, self.segments, self.final_population,
                                     self.birth_population)
            phases = ", then ".join(
                f"{size} member{'s' * (size > 1)} x {sizes.count(size)} "
                f"segment{'s' * (sizes.count(size) > 1)}"
                for size in sorted(set(sizes), reverse=True))
            return (f"{phases}, of {self.steps_per_trial} steps "
                    f"({self.total_steps} training steps)")
        if self.steps_per_trial:
            return f"{self.max_trials} trials of {self.steps_per_trial} steps"
        return f"{self.max_trials} trials of {self.epochs_per_trial} epochs"

    def _report_interrupt(self) -> None:
        done = len(read_rows(self.project_dir / RESULTS_FILE))
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

    def _prepare_directory(self, info: data_module.DataInfo, objective: Any,
                           architecture: list[str]) -> None:
        """Refuses a folder it can't use, before anything in it is written or deleted."""
        fingerprint = {
            "data": info.name,
            "data_shape": list(info.shape),
            "objective": objective.name,
            "search_space": sorted(entry.name for entry in self.search_space.space),
            "epochs_per_trial": self.epochs_per_trial,
            "strategy": self.strategy,
            "budget_steps": self.budget_steps,
            "population_size": self.population_size if self.strategy == "trajectory" else None,
            "segments": self.segments if self.strategy == "trajectory" else None,
            "architecture": architecture,
        }
        # Recorded only when the population is cut or its births screened: runs without either
        # keep their fingerprint.
        if self.strategy == "trajectory":
            for name in ("final_population", "birth_population"):
                if getattr(self, name) != self.population_size:
                    fingerprint[name] = getattr(self, name)
        if self.evaluations_per_segment > 1:  # likewise: runs without it keep their mark
            fingerprint["evaluations_per_segment"] = self.evaluations_per_segment
        if self.oracle_kwargs.get("rungs") is not None:
            fingerprint["rungs"] = [int(r) for r in self.oracle_kwargs["rungs"]]
        state_key = TRAJECTORY_KEY if self.strategy == "trajectory" else "reinforce"
        prepare_run_directory(self.project_dir, fingerprint, self.overwrite, state_key)

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
        """The best trial's hyperparameters (keras-tuner's `tuner/` bookkeeping left out).

        For the trajectory search: the values of the best segment; `best_schedule` gives the
        whole path that led to it."""
        tuner = self._require_tuner()
        if not tuner._is_worker():
            hp = tuner.get_best_hyperparameters(1)[0]
            hp.values = {k: v for k, v in hp.values.items() if not k.startswith("tuner/")}
            return hp
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
    def best_schedule(self) -> list[dict[str, Any]]:
        """The trajectory search's best lineage: a row per segment, birth to best, with the
        hyperparameters it trained with (one row for the one-shot search)."""
        tuner = self._require_tuner()
        best = tuner.oracle.get_best_trials(1)
        if not best:
            return []
        if isinstance(self.oracle, TrajectoryOracle):
            return self.oracle.schedule_of(best[0].trial_id)
        values = {k: v for k, v in best[0].hyperparameters.values.items()
                  if not k.startswith("tuner/")}
        return [{"trial_id": best[0].trial_id, **values}]

    @property
    def results(self) -> list[dict[str, Any]]:
        """A row per trial: trial_id, status, values, score, reward, seconds, metrics."""
        return read_rows(self.project_dir / RESULTS_FILE)

    def results_summary(self, num_trials: int = 10) -> None:
        """Prints keras-tuner's summary of the best trials."""
        self._require_tuner().results_summary(num_trials)

    def _require_tuner(self) -> GANTuner:
        if self.tuner is None:
            raise RuntimeError("Call finetune(gan) first.")
        return self.tuner


def check_balance_space(balance: float | None,
                        search_space: keras_tuner.HyperParameters) -> None:
    """Raises ValueError if `balance` is on in a space that searches `d_lr_ratio`.

    `balance` lets a learning rate's head see its value against the other moving values (g_lr
    against d_lr). With `d_lr_ratio` the other moving value is a multiple, not a rate, so the
    comparison means nothing; the ratio already holds the two rates' balance.
    """
    if balance is not None and any(hp.name == "d_lr_ratio" for hp in search_space.space):
        raise ValueError("balance compares g_lr with d_lr, and this search space searches "
                         "d_lr_ratio (d_lr as a multiple of g_lr) instead: the ratio already "
                         "sets their balance. Drop balance, or search d_lr "
                         "(default_search_space(d_lr_ratio=False)).")


def _has_weights_to_keep(gan: Any) -> bool:
    """A trained GAN, or a built Sequential pair (its weights may be trained: keep them)."""
    if isinstance(gan, GAN):
        return gan.g_optimizer is not None and int(gan.g_optimizer.iterations) > 0
    parts = getattr(gan, "layers", [])
    return bool(parts) and all(getattr(p, "built", False) for p in parts)


def default_budget_steps() -> int:
    """The trajectory search's default budget: DEFAULT_BUDGET_STEPS, or the environment's
    RLHF_KERAS_BUDGET_STEPS (for quick smoke runs of code that calls `RLHF()` as written)."""
    value = os.environ.get(BUDGET_ENV, "").strip()
    if not value:
        return DEFAULT_BUDGET_STEPS
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{BUDGET_ENV} must be a positive integer (training steps), got "
                         f"{value!r}.")
    return int(value)


def _architecture(gan: GAN) -> list[str]:
    """The base generator and discriminator as layer names with units/filters: a run holds
    one architecture, so a rerun with another is refused rather than mixed in."""
    out = []
    for part in (gan.generator, gan.discriminator):
        for layer in getattr(part, "layers", []):
            size = getattr(layer, "units", None) or getattr(layer, "filters", None)
            out.append(type(layer).__name__ + (f"({size})" if size else ""))
        out.append("|")
    return out[:-1]
