"""The search space of a GAN and the `HyperModel` that builds and trains one trial's GAN."""

from __future__ import annotations

import math
from typing import Any

import keras
import keras_tuner

from rlhf_keras import data as data_module
from rlhf_keras import metrics
from rlhf_keras.architectures import scale_widths
from rlhf_keras.compat import model_optimizers
from rlhf_keras.gan import GAN, LOSSES, is_ema_momentum

SUPPORTED_HYPERPARAMETERS = {
    "g_lr": "generator Adam learning rate",
    "d_lr": "discriminator Adam learning rate",
    "d_lr_ratio": "discriminator Adam learning rate as a multiple of g_lr (instead of d_lr)",
    "g_width": "generator hidden-width multiplier",
    "d_width": "discriminator hidden-width multiplier",
    "beta_1": "Adam beta_1 of both optimizers",
    "g_ema": "momentum of the moving average of the generator's weights that samples (0: none)",
    "loss": f"adversarial loss, one of {', '.join(LOSSES)}",
    "batch_size": "batch size",
    "d_steps": "discriminator updates per batch",
}
# A segment shorter than this trains without XLA: on a 2-core CPU XLA's compile (2-6 s, paid by
# every segment's `fit`) costs more than its faster steps save over fewer than ~30-180 steps,
# depending on the widths (benchmarks/RESULTS.md, "XLA for the article's MLP").
XLA_MIN_SEGMENT_STEPS = 100


def default_search_space(g_ema: float | None = 0.999,
                         d_lr_ratio: bool = False) -> keras_tuner.HyperParameters:
    """Learning rates (log scale around the articles' 2e-4), width multipliers and Adam beta_1,
    with the generator's weights averaged.

    beta_1 is searched among the values GANs train with: 0.5 (the articles', after DCGAN, which
    found Adam's usual 0.9 made training oscillate) and 0.0 (SAGAN, BigGAN). 0.9 collapsed the
    articles' MLP on MNIST at every point measured (`benchmarks/RESULTS.md`). Widths scale the
    given architecture by 0.5 to 2.

    Args:
        g_ema: Momentum of the moving average of the generator's weights that every trial
            samples from (`GAN(ema_momentum=...)`, fixed in the space), as ProGAN, StyleGAN
            and BigGAN sample; None for a space without it (trials sample from the weights).
            0.999 did better than no average on MNIST (`benchmarks/RESULTS.md`).
        d_lr_ratio: Search the discriminator's rate as a multiple of g_lr (log scale
            0.05..20, prior 1: the articles' equal rates) instead of `d_lr` itself, so that a
            schedule can hold the ratio while g_lr moves.
    """
    hp = keras_tuner.HyperParameters()
    hp.Float("g_lr", 1e-5, 1e-2, sampling="log", default=2e-4)
    if d_lr_ratio:
        hp.Float("d_lr_ratio", 0.05, 20.0, sampling="log", default=1.0)
    else:
        hp.Float("d_lr", 1e-5, 1e-2, sampling="log", default=2e-4)
    hp.Choice("g_width", [0.5, 1.0, 2.0], default=1.0)
    hp.Choice("d_width", [0.5, 1.0, 2.0], default=1.0)
    hp.Choice("beta_1", [0.0, 0.5], default=0.5)
    if g_ema is not None:
        hp.Fixed("g_ema", g_ema)
    check_search_space(hp)
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
    if "d_lr" in names and "d_lr_ratio" in names:
        raise ValueError("The search space holds both d_lr and d_lr_ratio; keep one: d_lr "
                         "searches the discriminator's rate itself, d_lr_ratio as a multiple "
                         "of g_lr.")
    if "g_ema" in names:
        bad = [v for v in _values(hp, "g_ema") if not is_ema_momentum(v)]
        if bad:
            raise ValueError(
                f"g_ema value(s) {bad} in the search space are not in [0, 1); use 0 for no "
                "weight average and e.g. 0.999 for one."
            )
    if "loss" in names:
        bad = [v for v in _values(hp, "loss") if v not in LOSSES]
        if bad:
            raise ValueError(f"Unknown loss value(s) {bad} in the search space; use {LOSSES}.")


def _values(hp: keras_tuner.HyperParameters, name: str) -> list[Any]:
    """The values a hyperparameter can take: a Choice's list, a Fixed's one value, or a
    numeric range's ends."""
    entry = next(entry for entry in hp.space if entry.name == name)
    if hasattr(entry, "values"):
        return list(entry.values)
    if hasattr(entry, "min_value"):
        return [entry.min_value, entry.max_value]
    return [entry.value]


class BestPointOfSegment(keras.callbacks.Callback):
    """Scores a GAN at `evaluations` evenly spaced points of a one-epoch segment and ends the
    segment at the best of them.

    A GAN trained at high learning rates oscillates: two segments from the same parent at the
    same rates ended at FID 26.8 and 110 (`benchmarks/RESULTS.md`, session 32), so where a
    segment happens to stop decides much of its score. Like `EarlyStopping(
    restore_best_weights=True)` within one epoch: at the epoch's end the model's weights and
    both optimizers' state are put back as they were at the best evaluation, before
    keras-tuner's checkpoint (`SaveBestEpoch`) saves them, so the trial's score is that point's
    and the next segment continues from it. Put it before keras-tuner's callbacks. A diverged
    segment (non-finite losses) is left as it ended, to be scored as diverged.

    Args:
        data: What `metrics.quality` scores against.
        steps: The segment's steps (its one epoch's batches).
        evaluations: Points scored, the segment's end among them; 1 scores the end only.
        objective: The search's objective; its name must be a key of `metrics.quality`.
    """

    def __init__(self, data: Any, steps: int, evaluations: int,
                 objective: keras_tuner.Objective) -> None:
        super().__init__()
        self.data = data
        self.objective = objective
        self.steps = steps
        # Batches after which a point is scored; the last, the segment's end, in on_epoch_end.
        self.points = {round(steps * i / evaluations) for i in range(1, evaluations)}
        self.quality: dict[str, float] | None = None  # the best point's, once the epoch ends
        self.best_batch: int | None = None
        self.scores: list[tuple[int, float]] = []  # (batches trained, objective) per point
        self._snapshot: list[Any] | None = None

    def _variables(self) -> list[Any]:
        optimizers = model_optimizers(self.model).values()
        return list(self.model.weights) + [v for opt in optimizers for v in opt.variables]

    def _score(self, batches: int) -> None:
        result = {k: float(v) for k, v in metrics.quality(self.model, self.data, seed=0).items()}
        value = result[self.objective.name]
        self.scores.append((batches, value))
        best = math.nan if self.quality is None else self.quality[self.objective.name]
        if not math.isfinite(best) or (math.isfinite(value)
                                       and self.objective.better_than(value, best)):
            self.quality, self.best_batch = result, batches
            if batches != self.steps:  # the end needs no copy: training stops there
                self._snapshot = [keras.ops.convert_to_numpy(v) for v in self._variables()]

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if batch + 1 in self.points:
            self._score(batch + 1)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if not all(math.isfinite(float(v)) for v in (logs or {}).values()):
            self.quality = None  # diverged: scored as such by the HyperModel
            return
        self._score(self.steps)
        if self.best_batch != self.steps:  # an earlier point was better: go back to it
            for variable, value in zip(self._variables(), self._snapshot, strict=True):
                variable.assign(value)
        self._snapshot = None


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
        steps_per_segment: Training steps of each trajectory segment (a trial that continues
            its parent); None: trials train for `epochs`. Segments shorter than
            `XLA_MIN_SEGMENT_STEPS` train without XLA, whose compile would cost more than it
            saves.
        evaluations_per_segment: Points of each segment scored; the segment ends at the best
            one (`BestPointOfSegment`). 1: scored at its end only.
        objective: The search's objective, which compares those points (needed when
            `evaluations_per_segment` > 1).
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
        steps_per_segment: int | None = None,
        evaluations_per_segment: int = 1,
        objective: keras_tuner.Objective | None = None,
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
        self.steps_per_segment = steps_per_segment
        self.evaluations_per_segment = evaluations_per_segment
        self.objective = objective
        self.last_model: GAN | None = None  # the GAN `fit` trained last, for the tuner
        self.last_best_point: BestPointOfSegment | None = None  # its points, when scored
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
            # With g_ema in the space every segment keeps an average (momentum 0: the weights
            # themselves), so a segment can switch it on or off and still load its parent.
            ema_momentum=float(hp.values["g_ema"]) if "g_ema" in hp.values else None,
        )
        beta_1 = float(value("beta_1", 0.5))
        g_lr = float(value("g_lr", 2e-4))
        # d_lr_ratio holds the two rates' ratio as one value a schedule can keep while g_lr moves.
        d_lr = (g_lr * float(hp.values["d_lr_ratio"]) if "d_lr_ratio" in hp.values
                else float(value("d_lr", 2e-4)))
        steps = self._segment_steps(hp)
        gan.compile(
            g_optimizer=keras.optimizers.Adam(g_lr, beta_1=beta_1),
            d_optimizer=keras.optimizers.Adam(d_lr, beta_1=beta_1),
            loss=str(value("loss", self.loss)),
            jit_compile=False if steps and steps < XLA_MIN_SEGMENT_STEPS else "auto",
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
        callbacks = [keras.callbacks.TerminateOnNaN()]
        kwargs.setdefault("epochs", self.epochs)
        kwargs.setdefault("shuffle", False)  # the dataset is already shuffled, with a seed
        steps = self._segment_steps(hp)
        best_point = None
        if steps:  # a trajectory segment: one "epoch" of exactly `steps` batches
            dataset = dataset.repeat()
            kwargs["steps_per_epoch"] = steps
            if self.evaluations_per_segment > 1:
                best_point = BestPointOfSegment(self.data, steps, self.evaluations_per_segment,
                                                self.objective)
                callbacks.append(best_point)
        callbacks += kwargs.pop("callbacks", [])  # keras-tuner's checkpoint sees the best point
        self.last_model = model
        self.last_best_point = best_point
        history = model.fit(dataset, *args, callbacks=callbacks, **kwargs).history
        last = {name: float(values[-1]) for name, values in history.items() if values}
        result = {name: last[name] for name in ("d_loss", "g_loss", "r_g", "r_d", "d_real",
                                                "d_fake") if name in last}
        result["epochs_trained"] = float(len(history.get("loss", [])))
        if not all(math.isfinite(v) for v in last.values()):
            # keras-tuner marks a NaN objective as failed; the oracle gives it the penalty.
            return {**result, "fid": math.nan, "score": math.nan, "diverged": 1.0}
        quality = best_point.quality if best_point and best_point.quality else (
            metrics.quality(model, self.data, seed=0))
        return {**result, **{k: float(v) for k, v in quality.items()}, "diverged": 0.0}

    def _segment_steps(self, hp: keras_tuner.HyperParameters) -> int | None:
        """The steps one `fit` trains: `steps_per_segment` for a trajectory segment (a trial
        with `tuner/epochs`), else None (the trial trains for its epochs)."""
        return self.steps_per_segment if (self.steps_per_segment
                                          and "tuner/epochs" in hp.values) else None
