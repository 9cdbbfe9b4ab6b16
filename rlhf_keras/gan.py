"""The GAN: a generator and a discriminator trained against each other inside `fit`.

The model room of the project. `GAN` wraps any pair of Keras models (the articles use two
`Sequential` MLPs) and trains them with a custom `train_step`: a discriminator update, then a
generator update, on every batch.

Besides the losses, every step reports the second article's reward terms:

    R_G = E_z[D(G(z))]
    R_D = E_x[log D(x)] + E_z[log(1 - D(G(z)))]

The data may differ from the generator's output in shape but not in size (MNIST images
`(28, 28, 1)` for a generator ending in `Dense(784)`): real batches are reshaped to the
generator's output inside the training step, and `generate` returns samples in the data's shape.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import keras
import numpy as np
from keras import ops

MAX_LATENT_DIM = 65_536  # beyond this a generator's first layer alone outgrows memory
LOSSES = ("non_saturating", "minimax", "hinge", "reward")
DEFAULT_LATENT_DIM = 100  # the second article's `input_size`
# XLA is worth its compile (seconds per fit) on a CPU from about this many weights in G and D.
XLA_MIN_WEIGHTS = 1_000_000
_EPSILON = 1e-7


def _is_sigmoid(activation: Any) -> bool:
    if activation is keras.activations.sigmoid:
        return True
    return getattr(activation, "__name__", "") == "sigmoid"


def _ends_in_sigmoid(model: keras.Model) -> bool:
    """Whether the last layer squashes to a probability (the articles' discriminator does)."""
    layers = getattr(model, "layers", [])
    if not layers:
        return False
    return _is_sigmoid(getattr(layers[-1], "activation", None))


def _shape_str(shape: Any) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def is_ema_momentum(value: Any) -> bool:
    """Whether `value` is a weight-average momentum: a number in [0, 1) (0: the weights)."""
    return (not isinstance(value, bool) and isinstance(value, numbers.Real)
            and 0.0 <= value < 1.0)


def check_ema_momentum(ema_momentum: Any) -> None:
    """Raises ValueError unless `ema_momentum` is None (no weight average) or in [0, 1)."""
    if ema_momentum is not None and not is_ema_momentum(ema_momentum):
        raise ValueError(f"ema_momentum must be in [0, 1) (e.g. 0.999), or None for no weight "
                         f"average; got {ema_momentum!r}.")


@keras.saving.register_keras_serializable(package="rlhf_keras")
class GAN(keras.Model):
    """A generator and a discriminator trained adversarially with `fit`.

    `fit` logs `d_loss`, `g_loss`, their sum `loss`, `d_real` = E[D(x)], `d_fake` = E[D(G(z))],
    and the reward terms `r_g` = E[D(G(z))] and `r_d` = E[log D(x)] + E[log(1 - D(G(z)))].

    Args:
        generator: A Keras model mapping latent vectors `(batch, latent_dim)` to samples.
            It may be unbuilt (a `Sequential` without an `Input`), as in the articles.
        discriminator: A Keras model mapping samples to one unit: a probability (ending in
            a sigmoid, as in the articles) or a logit. Either way the losses are computed
            from logits, so they stay finite when the discriminator saturates.
        latent_dim: Size of the latent vector. Defaults to the generator's input size when it
            is built, else 100.
        d_steps: Discriminator updates per batch (each with fresh latent vectors).
        discriminator_output: `"auto"` (a sigmoid last layer means probabilities, anything
            else logits), `"probability"` or `"logit"`.
        seed: Seed of the latent noise drawn during training.
        sample_shape: Per-sample shape of the data, when it differs from the generator's
            output but holds as many values (e.g. `(28, 28, 1)` for a `Dense(784)` generator);
            `generate` returns samples in this shape. None: the generator's output shape, until
            `fit` sees data of another shape and adopts it.
        ema_momentum: When set, the GAN also keeps `average_generator`, an exponential moving
            average of the generator's weights updated after every generator step with this
            momentum (0.999 averages over ~1,000 steps; 0 copies the weights), and `generate`
            samples from it. The momentum starts with a warm-up, min(momentum,
            (1 + t) / (ema_warmup + t)) at generator step t, so until t = (ema_warmup - 1) /
            (1 - momentum) (9,000 steps at 0.999 and the default warm-up) the average's mean
            age is t / ema_warmup steps, whatever the momentum.
            Averaging smooths out the oscillation of adversarial training (Yazici et al. 2019;
            ProGAN, StyleGAN and BigGAN sample from such an average). The discriminator
            always trains against the generator itself. None: no average.
        ema_warmup: The warm-up's constant c >= 2 in (1 + t) / (c + t):
            tf.train.ExponentialMovingAverage's 10 by default; during the warm-up the average
            weighs step s in proportion to s^(c - 2), so 2 weighs every step so far alike
            (the initial weights twice) and a larger c keeps the average closer to the
            latest weights.

    Attributes:
        data_shape: The generator's per-sample output shape, what the discriminator takes.
        sample_shape: The data's per-sample shape, what `generate` returns.

    Raises:
        ValueError: If the pair cannot work together; the message names both shapes.
    """

    def __init__(
        self,
        generator: keras.Model,
        discriminator: keras.Model,
        latent_dim: int | None = None,
        d_steps: int = 1,
        discriminator_output: str = "auto",
        seed: int | None = None,
        sample_shape: tuple[int, ...] | None = None,
        ema_momentum: float | None = None,
        ema_warmup: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_ema_momentum(ema_momentum)
        if isinstance(ema_warmup, bool) or not isinstance(ema_warmup, (int, float)) or not (
                ema_warmup >= 2.0):
            raise ValueError(f"ema_warmup must be a number >= 2 (2: every step so far weighs "
                             f"the same; 10: tf.train.ExponentialMovingAverage's), got "
                             f"{ema_warmup!r}.")
        for role, model in (("generator", generator), ("discriminator", discriminator)):
            if not isinstance(model, keras.Model):
                raise TypeError(
                    f"The {role} must be a keras.Model (e.g. a keras.Sequential of Dense layers), "
                    f"got {type(model).__name__}."
                )
        if int(d_steps) < 1:
            raise ValueError(f"d_steps must be >= 1, got {d_steps}.")
        if latent_dim is not None and (
            isinstance(latent_dim, bool) or not isinstance(latent_dim, (int, np.integer))
            or not 1 <= latent_dim <= MAX_LATENT_DIM
        ):
            raise ValueError(
                f"latent_dim must be an integer from 1 to {MAX_LATENT_DIM:,}, got {latent_dim!r}: "
                "GANs use tens to hundreds (the articles use 100); a huge one would allocate "
                "latent_dim x width weights in the generator's first layer."
            )
        if discriminator_output not in ("auto", "probability", "logit"):
            raise ValueError(
                "discriminator_output must be 'auto', 'probability' or 'logit', "
                f"got {discriminator_output!r}."
            )
        self.generator = generator
        self.discriminator = discriminator
        self.latent_dim = int(latent_dim or _built_input_size(generator) or DEFAULT_LATENT_DIM)
        self.d_steps = int(d_steps)
        self.discriminator_output = discriminator_output
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.data_shape = self._check_pair()
        self.sample_shape = self.data_shape
        if sample_shape is not None:
            self.sample_shape = self._check_sample_shape(tuple(sample_shape), "sample_shape")
        self.discriminator_returns_probability = discriminator_output == "probability" or (
            discriminator_output == "auto" and _ends_in_sigmoid(discriminator)
        )
        self.loss_name = "non_saturating"
        self.g_optimizer: keras.optimizers.Optimizer | None = None
        self.d_optimizer: keras.optimizers.Optimizer | None = None
        # `loss` = d_loss + g_loss, so callbacks that watch "loss" (TerminateOnNaN) work as usual.
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")
        self.d_real_tracker = keras.metrics.Mean(name="d_real")
        self.d_fake_tracker = keras.metrics.Mean(name="d_fake")
        self.r_g_tracker = keras.metrics.Mean(name="r_g")
        self.r_d_tracker = keras.metrics.Mean(name="r_d")
        self.ema_momentum = None if ema_momentum is None else float(ema_momentum)
        self.ema_warmup = float(ema_warmup)
        self.average_generator: keras.Model | None = None
        if self.ema_momentum is not None:
            self.average_generator = keras.models.clone_model(generator)
            if not self.average_generator.built:
                self.average_generator.build((None, self.latent_dim))
            self.average_generator.set_weights(generator.get_weights())
        self.built = True  # both halves are built by _check_pair

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_sequential(cls, model: keras.Model, **kwargs: Any) -> GAN:
        """Builds a GAN from the first article's `keras.Sequential([generator, discriminator])`.

        Args:
            model: A `Sequential` holding exactly two models, the generator then the
                discriminator, built or not.
            **kwargs: Passed to `GAN(...)` (`latent_dim`, `d_steps`, `seed`, ...).

        Returns:
            A `GAN` sharing the two models (and their weights) with `model`.
        """
        if isinstance(model, GAN):
            return model
        if not isinstance(model, keras.Model):
            raise TypeError(
                "Expected keras.Sequential([generator, discriminator]) or a rlhf_keras.GAN, "
                f"got {type(model).__name__}."
            )
        parts = list(getattr(model, "layers", []))
        if len(parts) != 2 or not all(isinstance(p, keras.Model) for p in parts):
            kinds = ", ".join(type(p).__name__ for p in parts) or "nothing"
            raise ValueError(
                "A GAN Sequential must hold exactly two models, "
                f"keras.Sequential([generator, discriminator]); this one holds [{kinds}]. "
                "Build the generator and the discriminator as separate keras.Sequential models "
                "and put just those two in the outer Sequential."
            )
        return cls(parts[0], parts[1], **kwargs)

    def _check_pair(self) -> tuple[int, ...]:
        """Builds both models and checks that G's output feeds D and D outputs one unit."""
        latent_shape = (None, self.latent_dim)
        g_out = _output_shape(
            self.generator,
            latent_shape,
            f"The generator cannot take latent vectors of shape {_shape_str(latent_shape)}: "
            "{err}. Pass latent_dim= matching the generator's input.",
        )
        d_in = _built_input_shape(self.discriminator)
        if d_in is not None and tuple(d_in[1:]) != tuple(g_out[1:]):
            raise ValueError(
                f"Generator output shape {_shape_str(g_out)} does not match discriminator input "
                f"shape {_shape_str(d_in)}. Make the generator's last layer produce what the "
                "discriminator expects (e.g. add a Reshape or Flatten layer)."
            )
        d_out = _output_shape(
            self.discriminator,
            g_out,
            f"Generator output shape {_shape_str(g_out)} does not fit the discriminator: "
            "{err}. Make the generator's last layer produce what the discriminator expects.",
        )
        if tuple(d_out[1:]) != (1,):
            raise ValueError(
                f"The discriminator must output one unit per sample, shape (None, 1); it outputs "
                f"{_shape_str(d_out)} for generator output shape {_shape_str(g_out)}. "
                "End it with Dense(1) (logit) or Dense(1, activation='sigmoid')."
            )
        return tuple(int(d) for d in g_out[1:])

    def _check_sample_shape(self, shape: tuple, what: str) -> tuple[int, ...]:
        """The data's per-sample shape if it holds as many values as a generated sample."""
        if any(d is None for d in shape):
            return self.data_shape  # unknown sizes (e.g. a ragged generator): trust the data
        shape = tuple(int(d) for d in shape)
        size, g_size = math.prod(shape), math.prod(self.data_shape)
        if size != g_size:
            raise ValueError(
                f"{what} has samples of shape {shape} ({size} values) but the generator makes "
                f"samples of shape {self.data_shape} ({g_size} values). Make the generator's "
                f"last layer produce {size} values (e.g. Dense({size}) then Reshape({shape})), "
                f"or use data with {g_size} values per sample (e.g. "
                f"rlhf_keras.data.load(source, shape={self.data_shape}))."
            )
        return shape

    def call(self, z: Any, training: bool = False) -> Any:
        """D(G(z)): the probability (or logit) the discriminator gives generated samples."""
        return self.discriminator(self.generator(z, training=training), training=training)

    # ------------------------------------------------------------------ compile

    def compile(
        self,
        g_optimizer: keras.optimizers.Optimizer | str | None = None,
        d_optimizer: keras.optimizers.Optimizer | str | None = None,
        loss: str = "non_saturating",
        **kwargs: Any,
    ) -> None:
        """Configures the two optimizers and the adversarial loss.

        Args:
            g_optimizer: Generator optimizer; defaults to Adam(2e-4, beta_1=0.5).
            d_optimizer: Discriminator optimizer; defaults to Adam(2e-4, beta_1=0.5).
            loss: `"non_saturating"` (BCE with real labels for G, the articles' loss),
                `"minimax"` (G minimises E[log(1 - D(G(z)))]), `"hinge"`, or `"reward"`
                (G maximises R_G = E[D(G(z))] directly).
            **kwargs: Passed to `keras.Model.compile` (`jit_compile`, `steps_per_execution`,
                `run_eagerly`). `jit_compile="auto"` (the default) also turns XLA on without an
                accelerator when G and D hold `XLA_MIN_WEIGHTS` weights or more.
        """
        if loss not in LOSSES:
            raise ValueError(f"Unknown loss {loss!r}; choose one of {', '.join(LOSSES)}.")
        for name in ("optimizer", "loss", "metrics"):
            if kwargs.pop(name, None) is not None:
                raise ValueError(
                    f"GAN.compile takes g_optimizer/d_optimizer and loss= one of {LOSSES}; "
                    f"'{name}=' is not used."
                )
        if kwargs.get("jit_compile", "auto") == "auto" and not kwargs.get("run_eagerly"):
            # Keras's "auto" turns XLA off on a machine without an accelerator. On a 2-core CPU
            # XLA gave the article's MLP (1.1-8.5M weights) 1.5-2.7x the steps/s; the 2-D MLPs
            # (34k-134k) gain less than the ~2.4 s each fit spends compiling, and the DCGAN
            # (387k) ran slower (benchmarks/xla_speed.py): on for a train step heavy enough.
            weights = self.generator.count_params() + self.discriminator.count_params()
            kwargs["jit_compile"] = True if weights >= XLA_MIN_WEIGHTS else "auto"
        # optimizer=None keeps Keras from creating a default optimizer that nothing uses.
        super().compile(optimizer=None, **kwargs)
        self.g_optimizer = _optimizer(g_optimizer)
        self.d_optimizer = _optimizer(d_optimizer)
        self.loss_name = loss
        self.g_optimizer.build(self.generator.trainable_variables)
        self.d_optimizer.build(self.discriminator.trainable_variables)

    def get_compile_config(self) -> dict[str, Any] | None:
        if self.g_optimizer is None:
            return None
        return {
            "g_optimizer": keras.optimizers.serialize(self.g_optimizer),
            "d_optimizer": keras.optimizers.serialize(self.d_optimizer),
            "loss": self.loss_name,
        }

    def compile_from_config(self, config: dict[str, Any]) -> None:
        self.compile(
            g_optimizer=keras.optimizers.deserialize(config["g_optimizer"]),
            d_optimizer=keras.optimizers.deserialize(config["d_optimizer"]),
            loss=config.get("loss", "non_saturating"),
        )

    # ------------------------------------------------------------------ training

    def fit(self, x: Any = None, *args: Any, **kwargs: Any) -> Any:
        """`keras.Model.fit`, after checking the data's shape against the generator's output.

        Data whose samples hold as many values as a generated sample (`(28, 28, 1)` for a
        `Dense(784)` generator) train as they are: each real batch is reshaped to the
        generator's output, and `sample_shape` becomes the data's shape, so `generate` returns
        samples shaped like the data.

        An optimizer compiled with `use_ema=True` (e.g.
        `g_optimizer=keras.optimizers.Adam(2e-4, use_ema=True, ema_momentum=0.999)`) keeps an
        exponential moving average of its network's weights; as `keras.Model.fit` does for its
        one optimizer, the weights are replaced by their averages when `fit` returns.

        Raises:
            ValueError: Before any training, if the data's samples hold a different number of
                values than the generator's; the message names both shapes and the fix.
        """
        shape = _sample_shape_of(x)
        validation = kwargs.get("validation_data")
        if isinstance(validation, (tuple, list)) and validation:
            validation = validation[0]
        if validation is not None:
            self._check_sample_shape(_sample_shape_of(validation) or self.data_shape,
                                     "validation_data")
        if shape is not None:
            self.sample_shape = self._check_sample_shape(shape, "The training data")
        history = super().fit(x, *args, **kwargs)
        for optimizer, network in ((self.g_optimizer, self.generator),
                                   (self.d_optimizer, self.discriminator)):
            # A no-op without use_ema; keras.Model.fit only finalizes `self.optimizer`.
            optimizer.finalize_variable_values(network.trainable_variables)
        return history

    def evaluate(self, x: Any = None, *args: Any, **kwargs: Any) -> Any:
        """`keras.Model.evaluate`, with `fit`'s shape check (a clear error, before any step)."""
        shape = _sample_shape_of(x)
        if shape is not None:
            self._check_sample_shape(shape, "The evaluation data")
        return super().evaluate(x, *args, **kwargs)

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        return [
            self.loss_tracker,
            self.d_loss_tracker,
            self.g_loss_tracker,
            self.d_real_tracker,
            self.d_fake_tracker,
            self.r_g_tracker,
            self.r_d_tracker,
        ]

    @property
    def repeated_metrics(self) -> tuple[str, ...]:
        """Metrics that repeat another one's value: under the cross-entropy losses the
        discriminator's loss is -R_D, so `r_d` is `-d_loss` (logged once, as `d_loss`)."""
        return () if self.loss_name == "hinge" else ("r_d",)

    def _logits(self, samples: Any, training: bool) -> Any:
        """Discriminator logits; recovered from a sigmoid output without losing precision."""
        out = self.discriminator(samples, training=training)
        if not self.discriminator_returns_probability:
            return out
        logits = getattr(out, "_keras_logits", None)  # kept by Keras's sigmoid activation
        if logits is not None:
            return logits
        p = ops.clip(out, _EPSILON, 1.0 - _EPSILON)
        return ops.log(p) - ops.log1p(-p)

    def _real_batch(self, data: Any) -> Any:
        """The real samples of a batch, shaped like the generator's output (what D takes)."""
        real = _features_only(data)
        if tuple(real.shape[1:]) != self.data_shape:  # e.g. (28, 28, 1) images for Dense(784)
            real = ops.reshape(real, (-1, *self.data_shape))
        return real

    def _latent(self, batch_size: Any) -> Any:
        return keras.random.normal((batch_size, self.latent_dim), seed=self.seed_generator)

    def _discriminator_loss(self, real_logits: Any, fake_logits: Any) -> Any:
        if self.loss_name == "hinge":
            return ops.mean(ops.relu(1.0 - real_logits)) + ops.mean(ops.relu(1.0 + fake_logits))
        # BCE(1, D(x)) + BCE(0, D(G(z))) = -R_D; softplus(-l) = -log sigmoid(l).
        return ops.mean(ops.softplus(-real_logits)) + ops.mean(ops.softplus(fake_logits))

    def _generator_loss(self, fake_logits: Any) -> Any:
        if self.loss_name == "non_saturating":
            return ops.mean(ops.softplus(-fake_logits))  # BCE(1, D(G(z)))
        if self.loss_name == "minimax":
            return -ops.mean(ops.softplus(fake_logits))  # E[log(1 - D(G(z)))]
        if self.loss_name == "hinge":
            return -ops.mean(fake_logits)
        return -ops.mean(ops.sigmoid(fake_logits))  # "reward": maximise R_G = E[D(G(z))]

    def train_step(self, data: Any) -> dict[str, Any]:
        import tensorflow as tf

        real = self._real_batch(data)
        batch_size = ops.shape(real)[0]

        # 1) Discriminator: one pass over [real; fake] instead of two separate passes.
        for _ in range(self.d_steps):
            fake = self.generator(self._latent(batch_size), training=False)
            with tf.GradientTape() as tape:
                logits = self._logits(ops.concatenate([real, fake], axis=0), training=True)
                real_logits, fake_logits = logits[:batch_size], logits[batch_size:]
                d_loss = self._discriminator_loss(real_logits, fake_logits)
            d_vars = self.discriminator.trainable_variables
            self.d_optimizer.apply_gradients(
                zip(tape.gradient(d_loss, d_vars), d_vars, strict=True)
            )

        # 2) Generator: fresh latent vectors through the updated discriminator.
        with tf.GradientTape() as tape:
            gen_logits = self._logits(
                self.generator(self._latent(batch_size), training=True), training=True
            )
            g_loss = self._generator_loss(gen_logits)
        g_vars = self.generator.trainable_variables
        self.g_optimizer.apply_gradients(zip(tape.gradient(g_loss, g_vars), g_vars, strict=True))
        if self.average_generator is not None:
            self._update_average_generator()

        return self._update_metrics(d_loss, g_loss, real_logits, fake_logits, gen_logits)

    def _update_average_generator(self) -> None:
        # a <- m a + (1 - m) w, with m = min(ema_momentum, (1 + t) / (c + t)) at generator
        # step t: tf.train.ExponentialMovingAverage's warm-up (c = 10), so that the average soon
        # forgets the initial weights instead of holding e^-1 of them after 1 / (1 - m) steps.
        step = ops.cast(self.g_optimizer.iterations, "float32")
        momentum = ops.minimum(self.ema_momentum, (1.0 + step) / (self.ema_warmup + step))
        pairs = zip(self.average_generator.weights, self.generator.weights, strict=True)
        for average, weight in pairs:
            if "float" in str(weight.dtype):  # not a layer's integer seed state
                average.assign(momentum * average + (1.0 - momentum) * weight)

    def test_step(self, data: Any) -> dict[str, Any]:
        real = self._real_batch(data)
        batch_size = ops.shape(real)[0]
        fake = self.generator(self._latent(batch_size), training=False)
        logits = self._logits(ops.concatenate([real, fake], axis=0), training=False)
        real_logits, fake_logits = logits[:batch_size], logits[batch_size:]
        d_loss = self._discriminator_loss(real_logits, fake_logits)
        g_loss = self._generator_loss(fake_logits)
        return self._update_metrics(d_loss, g_loss, real_logits, fake_logits, fake_logits)

    def _update_metrics(
        self, d_loss: Any, g_loss: Any, real_logits: Any, fake_logits: Any, gen_logits: Any
    ) -> dict[str, Any]:
        r_d = -(ops.mean(ops.softplus(-real_logits)) + ops.mean(ops.softplus(fake_logits)))
        self.loss_tracker.update_state(d_loss + g_loss)
        self.d_loss_tracker.update_state(d_loss)
        self.g_loss_tracker.update_state(g_loss)
        self.d_real_tracker.update_state(ops.mean(ops.sigmoid(real_logits)))
        self.d_fake_tracker.update_state(ops.mean(ops.sigmoid(fake_logits)))
        self.r_g_tracker.update_state(ops.mean(ops.sigmoid(gen_logits)))
        self.r_d_tracker.update_state(r_d)
        return {m.name: m.result() for m in self.metrics}

    # ------------------------------------------------------------------ sampling

    def latent_vectors(self, n: int, seed: int | None = None) -> np.ndarray:
        """`n` standard-normal latent vectors, reproducible for a given seed."""
        rng = np.random.default_rng(seed)
        return rng.standard_normal((int(n), self.latent_dim)).astype("float32")

    def generate(
        self, n: int, seed: int | None = None, z: np.ndarray | None = None, batch_size: int = 2048
    ) -> np.ndarray:
        """Generates samples in data space, shaped like the data (`sample_shape`), from
        `average_generator` when the GAN keeps one (`ema_momentum`), else from `generator`.

        Args:
            n: Number of samples.
            seed: Seed of the latent vectors; the same seed gives the same samples.
            z: Latent vectors to use instead of drawing them (shape `(n, latent_dim)`).
            batch_size: Samples generated per forward pass.

        Returns:
            A float32 array of shape `(n, *sample_shape)` (the generator's output reshaped to
            the data's per-sample shape, e.g. `(n, 28, 28, 1)` for a `Dense(784)` generator
            fitted on MNIST images), in the generator's output range ([-1, 1] for tanh).
        """
        z = self.latent_vectors(n, seed) if z is None else np.asarray(z, dtype="float32")
        generator = self.generator if self.average_generator is None else self.average_generator
        # Direct calls, not predict(): no per-model tf.function to trace for a few batches.
        chunks = [
            np.asarray(generator(z[i : i + batch_size], training=False))
            for i in range(0, len(z), batch_size)
        ]
        if not chunks:
            return np.zeros((0, *self.sample_shape), "float32")
        return np.concatenate(chunks).reshape(len(z), *self.sample_shape)

    # ------------------------------------------------------------------ serialization

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "generator": keras.saving.serialize_keras_object(self.generator),
            "discriminator": keras.saving.serialize_keras_object(self.discriminator),
            "latent_dim": self.latent_dim,
            "d_steps": self.d_steps,
            "discriminator_output": self.discriminator_output,
            "seed": self.seed,
            "sample_shape": list(self.sample_shape),
            "ema_momentum": self.ema_momentum,
            "ema_warmup": self.ema_warmup,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> GAN:
        config = dict(config)
        generator = keras.saving.deserialize_keras_object(config.pop("generator"))
        discriminator = keras.saving.deserialize_keras_object(config.pop("discriminator"))
        return cls(generator, discriminator, **config)


def _output_shape(model: keras.Model, input_shape: tuple, message: str) -> tuple:
    """Builds `model` if needed and returns its output shape; `message` explains a failure."""
    try:
        if not model.built:
            model.build(input_shape)
        return tuple(model.compute_output_shape(input_shape))
    except Exception as err:  # noqa: BLE001 - re-raised with the shapes involved
        raise ValueError(message.format(err=err)) from err


def _sample_shape_of(x: Any) -> tuple | None:
    """Per-sample shape of what `fit`/`evaluate` were given, when it can be known up front."""
    spec = getattr(x, "element_spec", None)  # a tf.data.Dataset
    if spec is not None:
        while isinstance(spec, (tuple, list)) and spec:
            spec = spec[0]  # (x, y) or (x, y, sample_weight): the GAN trains on x
        shape = getattr(spec, "shape", None)
        if shape is None or shape.rank is None or shape.rank < 1:
            return None
        return tuple(shape)[1:]
    shape = getattr(x, "shape", None)  # numpy arrays and tensors
    if isinstance(x, (tuple, list)) and x:
        shape = getattr(x[0], "shape", None)
    if shape is None or len(shape) < 1:
        return None
    return tuple(None if d is None else int(d) for d in shape)[1:]


def _features_only(data: Any) -> Any:
    """`fit` may hand over `x` or `(x, y)`; a GAN only needs `x`."""
    if isinstance(data, (tuple, list)):
        data = data[0]
    return data


def _optimizer(spec: keras.optimizers.Optimizer | str | None) -> keras.optimizers.Optimizer:
    if spec is None:
        return keras.optimizers.Adam(learning_rate=2e-4, beta_1=0.5)
    return keras.optimizers.get(spec)


def _built_input_shape(model: keras.Model) -> tuple | None:
    if not model.built:
        return None
    try:
        shape = model.input_shape
    except (AttributeError, ValueError):
        return None
    if not isinstance(shape, (tuple, list)) or not shape or isinstance(shape[0], (tuple, list)):
        return None  # unknown, or a multi-input model
    return tuple(shape)


def _built_input_size(model: keras.Model) -> int | None:
    shape = _built_input_shape(model)
    return int(shape[-1]) if shape and shape[-1] is not None else None


def load_gan(path: str | Any, safe_mode: bool = True) -> GAN:
    """Loads a GAN saved with `GAN.save` (or a `Sequential([generator, discriminator])`).

    Args:
        path: A `.keras` file.
        safe_mode: Keras's safe mode: refuse files with Lambda layers or other arbitrary code.
            Turn it off only for files you trust.

    Returns:
        The `GAN`.

    Raises:
        ValueError: If the file is missing, not a `.keras` file, or holds something else.
    """
    from pathlib import Path

    path = Path(path)
    if path.suffix != ".keras" or not path.is_file():
        raise ValueError(
            f"{path} is not a .keras model file. Pass the model.keras or best_model.keras "
            "written by `rlhf-keras train` / `finetune` (or `GAN.save`)."
        )
    try:
        model = keras.models.load_model(path, safe_mode=safe_mode)
    except Exception as err:  # noqa: BLE001 - zip, JSON and Keras errors alike, re-raised
        if "safe_mode" in str(err) or "Lambda" in str(err):
            raise ValueError(
                f"{path} contains code (e.g. a Lambda layer) that safe mode refuses to run. "
                "If you trust the file, load it with safe_mode=False (CLI: --unsafe)."
            ) from err
        raise ValueError(
            f"{path} could not be loaded as a Keras model (a truncated or corrupt file, or "
            f"not a .keras archive): {err}. Pass a model.keras or best_model.keras written by "
            "`rlhf-keras train` / `finetune` (or `GAN.save`)."
        ) from err
    if isinstance(model, GAN):
        return model
    try:
        return GAN.from_sequential(model)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"{path} holds a {type(model).__name__}, not a GAN: {err}"
        ) from err
