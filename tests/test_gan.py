"""The GAN core: construction checks, losses, training on real data, saving, callbacks."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

from rlhf_keras import GAN, architectures, data
from rlhf_keras import gan as gan_module


def article_pair() -> tuple[keras.Sequential, keras.Sequential]:
    """The first article's models, exactly as written there (unbuilt)."""
    generator = tf.keras.Sequential(
        [
            layers.Dense(256, activation="relu"),
            layers.Dense(512, activation="relu"),
            layers.Dense(1024, activation="relu"),
            layers.Dense(784, activation="tanh"),
        ]
    )
    discriminator = tf.keras.Sequential(
        [
            layers.Dense(1024, activation="relu"),
            layers.Dense(512, activation="relu"),
            layers.Dense(256, activation="relu"),
            layers.Dense(1, activation="sigmoid"),
        ]
    )
    return generator, discriminator


def compiled(gan: GAN, lr: float = 2e-4, loss: str = "non_saturating") -> GAN:
    gan.compile(
        g_optimizer=keras.optimizers.Adam(lr, beta_1=0.5),
        d_optimizer=keras.optimizers.Adam(lr, beta_1=0.5),
        loss=loss,
    )
    return gan


# ---------------------------------------------------------------- construction


def test_from_sequential_accepts_the_articles_unbuilt_models():
    generator, discriminator = article_pair()
    gan = GAN.from_sequential(tf.keras.Sequential([generator, discriminator]))
    assert gan.latent_dim == 100
    assert gan.data_shape == (784,)
    assert gan.discriminator_returns_probability
    assert gan.generator is generator and gan.discriminator is discriminator


@pytest.mark.parametrize("latent_dim", [10**9, 0, -3, 2.5, True])
def test_an_impossible_latent_dim_is_refused_before_anything_is_built(latent_dim):
    generator = keras.Sequential([keras.layers.Dense(256), keras.layers.Dense(784)])  # unbuilt
    discriminator = keras.Sequential([keras.layers.Dense(1, activation="sigmoid")])
    with pytest.raises(ValueError, match=r"latent_dim must be an integer from 1 to 65,536"):
        GAN(generator, discriminator, latent_dim=latent_dim)
    assert not generator.built  # nothing was allocated


def test_latent_dim_comes_from_a_built_generator():
    generator, discriminator = architectures.small_mlp(data_shape=(2,), latent_dim=8)
    assert GAN(generator, discriminator).latent_dim == 8


def test_shape_mismatch_names_both_shapes():
    generator, _ = architectures.small_mlp(data_shape=(784,))
    _, discriminator = architectures.small_mlp(data_shape=(2,))
    with pytest.raises(ValueError) as err:
        GAN(generator, discriminator)
    message = str(err.value)
    assert "(None, 784)" in message and "(None, 2)" in message
    assert "Make the generator's last layer" in message


def test_discriminator_must_output_one_unit():
    generator, _ = architectures.small_mlp(data_shape=(2,))
    discriminator = keras.Sequential([layers.Dense(8), layers.Dense(3)])
    with pytest.raises(ValueError, match=r"one unit.*\(None, 3\).*\(None, 2\).*Dense\(1"):
        GAN(generator, discriminator)


def test_sequential_of_three_models_is_refused():
    generator, discriminator = article_pair()
    extra = keras.Sequential([layers.Dense(1)])
    with pytest.raises(ValueError, match=r"exactly two models.*Sequential, Sequential, Sequential"):
        GAN.from_sequential(keras.Sequential([generator, discriminator, extra]))


def test_not_a_keras_model_is_refused():
    with pytest.raises(TypeError, match="must be a keras.Model"):
        GAN(lambda z: z, keras.Sequential([layers.Dense(1)]))
    with pytest.raises(TypeError, match=r"Sequential\(\[generator, discriminator\]\)"):
        GAN.from_sequential("generator+discriminator")


def test_compile_refuses_unknown_loss_and_keras_arguments():
    gan = GAN(*architectures.small_mlp(data_shape=(2,)))
    with pytest.raises(ValueError, match="Unknown loss 'wasserstein'"):
        gan.compile(loss="wasserstein")
    with pytest.raises(ValueError, match="'optimizer=' is not used"):
        gan.compile(optimizer="adam")


def test_compile_leaves_no_unused_optimizer():
    gan = compiled(GAN(*architectures.small_mlp(data_shape=(2,))))
    assert gan.optimizer is None
    assert gan.g_optimizer is not gan.d_optimizer


def test_compile_turns_xla_on_for_a_heavy_train_step_unless_asked_otherwise():
    """Keras's "auto" resolves to no XLA on a CPU-only machine; the GAN asks for it when G and
    D are large enough for it to pay (the article's MLP), and a reloaded GAN does the same."""
    heavy = compiled(GAN(*architectures.seed_mlp(data_shape=(784,), latent_dim=100)))
    assert heavy.jit_compile is True
    assert (heavy.generator.count_params() + heavy.discriminator.count_params()
            >= gan_module.XLA_MIN_WEIGHTS)
    heavy.fit(np.zeros((64, 784), "float32"), batch_size=32, epochs=1, verbose=0)
    assert np.isfinite(heavy.history.history["d_loss"][-1])
    restored = GAN.from_config(heavy.get_config())
    restored.compile_from_config(heavy.get_compile_config())
    assert restored.jit_compile is True
    light = compiled(GAN(*architectures.small_mlp(data_shape=(2,))))
    if not tf.config.list_physical_devices("GPU"):
        assert light.jit_compile is False  # Keras's own choice: compiling it costs more
    off = GAN(*architectures.seed_mlp(data_shape=(784,), latent_dim=100))
    off.compile(jit_compile=False)
    assert off.jit_compile is False


# ---------------------------------------------------------------- losses


def test_losses_are_stable_when_the_sigmoid_saturates():
    """A sigmoid D certain that the fakes are fake still gives G a finite, useful loss."""
    generator = keras.Sequential([keras.Input((4,)), layers.Dense(2)])
    discriminator = keras.Sequential(
        [
            keras.Input((2,)),
            layers.Dense(
                1,
                activation="sigmoid",
                kernel_initializer="zeros",
                bias_initializer=keras.initializers.Constant(-40.0),
            ),
        ]
    )
    gan = compiled(GAN(generator, discriminator, seed=0))
    logits = gan._logits(generator(np.ones((3, 4), "float32")), training=False)
    np.testing.assert_allclose(np.asarray(logits), -40.0, atol=1e-3)  # not clipped at log(1e-7)
    g_loss = float(gan._generator_loss(logits))
    assert g_loss == pytest.approx(40.0, rel=1e-3)


@pytest.mark.parametrize("loss", ["non_saturating", "minimax", "hinge", "reward"])
def test_every_loss_trains_and_reports_the_reward_terms(loss):
    keras.utils.set_random_seed(0)
    gan = compiled(GAN(*architectures.small_mlp(data_shape=(2,), latent_dim=8), seed=0), loss=loss)
    x = np.random.default_rng(0).normal(size=(256, 2)).astype("float32")
    logs = gan.fit(x, batch_size=64, epochs=1, verbose=0).history
    assert set(logs) == {"loss", "d_loss", "g_loss", "d_real", "d_fake", "r_g", "r_d"}
    assert all(math.isfinite(v[-1]) for v in logs.values())
    assert 0.0 < logs["d_real"][-1] < 1.0 and 0.0 < logs["r_g"][-1] < 1.0
    assert logs["r_d"][-1] < 0.0  # a sum of two log-probabilities
    assert logs["loss"][-1] == pytest.approx(logs["d_loss"][-1] + logs["g_loss"][-1], rel=1e-5)
    if loss in ("non_saturating", "minimax", "reward"):
        assert logs["d_loss"][-1] == pytest.approx(-logs["r_d"][-1], rel=1e-5)


def test_logit_discriminator_uses_logits_directly():
    gan = compiled(GAN(*architectures.dcgan(latent_dim=16), seed=0))
    assert not gan.discriminator_returns_probability
    x = np.random.default_rng(0).uniform(-1, 1, size=(64, 28, 28, 1)).astype("float32")
    logs = gan.fit(x, batch_size=32, epochs=1, verbose=0).history
    assert all(math.isfinite(v[-1]) for v in logs.values())
    assert gan.generate(3, seed=0).shape == (3, 28, 28, 1)


def test_d_steps_updates_the_discriminator_more_often():
    keras.utils.set_random_seed(0)
    gan = compiled(GAN(*architectures.small_mlp(data_shape=(2,), latent_dim=8), d_steps=3, seed=0))
    gan.fit(np.zeros((64, 2), "float32"), batch_size=64, epochs=1, verbose=0)
    assert int(gan.d_optimizer.iterations) == 3 and int(gan.g_optimizer.iterations) == 1


def _numpy(variables: list) -> list[np.ndarray]:
    return [keras.ops.convert_to_numpy(v) for v in variables]


class StepWeights(keras.callbacks.Callback):
    """Both networks' weights after every training step."""

    def on_train_begin(self, logs=None):
        self.generator, self.discriminator = [], []

    def on_train_batch_end(self, batch, logs=None):
        self.generator.append(_numpy(self.model.generator.weights))
        self.discriminator.append(_numpy(self.model.discriminator.weights))


def test_fit_ends_with_the_weight_averages_of_an_ema_optimizer(tmp_path):
    """Keras's use_ema contract, for both of a GAN's optimizers: the weights when fit returns are
    the moving average of the weights after each step (a_1 = w_1, a_t = m a_(t-1) + (1 - m) w_t),
    not the last step's weights."""

    keras.utils.set_random_seed(0)
    gan = GAN(*architectures.small_mlp(data_shape=(2,), latent_dim=8), seed=0)
    momentum = 0.8
    gan.compile(
        g_optimizer=keras.optimizers.Adam(1e-2, beta_1=0.5, use_ema=True, ema_momentum=momentum),
        d_optimizer=keras.optimizers.Adam(1e-2, beta_1=0.5),
    )
    steps = StepWeights()
    points = data.load_arrays("ring8", seed=0)[0][:256]
    gan.fit(points, batch_size=32, epochs=2, verbose=0, callbacks=[steps])
    assert len(steps.generator) == 16
    average = steps.generator[0]
    for weights in steps.generator[1:]:
        average = [momentum * a + (1 - momentum) * w for a, w in zip(average, weights, strict=True)]
    final = [np.asarray(v) for v in gan.generator.trainable_variables]
    for weight, expected in zip(final, average, strict=True):
        np.testing.assert_allclose(weight, expected, rtol=1e-4, atol=1e-6)
    assert any(not np.allclose(w, last) for w, last in zip(final, steps.generator[-1], strict=True))
    for weight, last in zip(gan.discriminator.trainable_variables, steps.discriminator[-1],
                            strict=True):
        np.testing.assert_array_equal(np.asarray(weight), last)  # no EMA: the last step's
    gan.save(tmp_path / "gan.keras")
    loaded = keras.models.load_model(tmp_path / "gan.keras")
    assert loaded.g_optimizer.use_ema and loaded.g_optimizer.ema_momentum == momentum
    assert not loaded.d_optimizer.use_ema


def test_ema_momentum_keeps_a_warmed_up_average_of_the_generator_that_samples(tmp_path):
    """a_t = m_t a_(t-1) + (1 - m_t) w_t, m_t = min(m, (1 + t) / (10 + t)), t the generator step
    before the update; `generate` samples from the average, the discriminator trains against
    the generator itself, and a saved GAN keeps both."""

    keras.utils.set_random_seed(0)
    momentum = 0.8
    gan = compiled(GAN(*architectures.small_mlp(data_shape=(2,), latent_dim=8), seed=0,
                       ema_momentum=momentum), lr=1e-2)
    average = _numpy(gan.generator.weights)  # the average starts at the initial weights
    for copied, initial in zip(_numpy(gan.average_generator.weights), average, strict=True):
        np.testing.assert_array_equal(copied, initial)
    steps = StepWeights()
    gan.fit(data.load_arrays("ring8", seed=0)[0][:256], batch_size=32, epochs=2, verbose=0,
            callbacks=[steps])
    for t, weights in enumerate(steps.generator):
        m = min(momentum, (1 + (t + 1)) / (10 + (t + 1)))  # iterations already counts step t
        average = [m * a + (1 - m) * w for a, w in zip(average, weights, strict=True)]
    for got, expected in zip(_numpy(gan.average_generator.weights), average, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(_numpy(gan.generator.weights)[0], steps.generator[-1][0])
    z = gan.latent_vectors(16, seed=1)
    np.testing.assert_allclose(gan.generate(16, z=z), np.asarray(gan.average_generator(z)),
                               rtol=1e-5, atol=1e-6)
    assert not np.allclose(gan.generate(16, z=z), np.asarray(gan.generator(z)))
    gan.save(tmp_path / "gan.keras")
    loaded = keras.models.load_model(tmp_path / "gan.keras")
    assert loaded.ema_momentum == momentum
    np.testing.assert_array_equal(loaded.generate(16, z=z), gan.generate(16, z=z))
    for bad in (1.0, -0.1, True, "0.9"):
        with pytest.raises(ValueError, match=rf"ema_momentum must be in \[0, 1\).*got {bad!r}"):
            GAN(*architectures.small_mlp(data_shape=(2,), latent_dim=8), ema_momentum=bad)
    GAN(*architectures.small_mlp(data_shape=(2,), latent_dim=8), ema_momentum=np.float32(0.9))


def test_ema_warmup_2_averages_every_generator_step_equally(tmp_path):
    """With warm-up constant 2, m_t = (1 + t) / (2 + t): after t steps the average is
    (2 w_0 + w_1 + ... + w_t) / (t + 2), the initial weights counted twice; saved with the GAN."""

    keras.utils.set_random_seed(0)
    gan = compiled(GAN(*architectures.small_mlp(data_shape=(2,), latent_dim=8), seed=0,
                       ema_momentum=0.999, ema_warmup=2), lr=1e-2)
    initial = _numpy(gan.generator.weights)
    steps = StepWeights()
    gan.fit(data.load_arrays("ring8", seed=0)[0][:256], batch_size=32, epochs=2, verbose=0,
            callbacks=[steps])
    t = len(steps.generator)
    expected = [(2 * w0 + sum(step[i] for step in steps.generator)) / (t + 2)
                for i, w0 in enumerate(initial)]
    for got, want in zip(_numpy(gan.average_generator.weights), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    gan.save(tmp_path / "gan.keras")
    assert keras.models.load_model(tmp_path / "gan.keras").ema_warmup == 2.0
    for bad in (1.5, True, "10"):
        with pytest.raises(ValueError, match=rf"ema_warmup must be a number >= 2.*got {bad!r}"):
            GAN(*architectures.small_mlp(data_shape=(2,), latent_dim=8), ema_momentum=0.9,
                ema_warmup=bad)


# ---------------------------------------------------------------- real training


def test_ring8_training_pulls_samples_onto_the_modes():
    """Acceptance: a seeded run of the small MLP cuts the distance to the nearest mode >= 5x."""
    keras.utils.set_random_seed(0)
    dataset, info = data.load("ring8", batch_size=128, seed=0)
    centers, _ = data.mixture_modes("ring8")
    gan = compiled(
        GAN(*architectures.small_mlp(data_shape=info.shape, latent_dim=8), seed=0), lr=1e-3
    )

    def mean_distance() -> float:
        points = gan.generate(2500, seed=1)
        return float(np.linalg.norm(points[:, None] - centers[None], axis=-1).min(1).mean())

    before = mean_distance()
    gan.fit(dataset.repeat().take(2000), epochs=1, verbose=0)
    after = mean_distance()
    assert after * 5 <= before, (before, after)


def test_one_epoch_on_real_mnist_as_keras_users_write_it(mnist_dir):
    """Acceptance: the articles' unbuilt MLPs (784 values out) on MNIST images (28, 28, 1),
    loaded with no shape=, train one epoch; D then tells real from fake."""
    keras.utils.set_random_seed(0)
    dataset, info = data.load(mnist_dir, batch_size=64, seed=0)
    assert info.size == 10_000 and info.shape == (28, 28, 1)
    gan = compiled(GAN(*article_pair(), seed=0))
    assert gan.data_shape == gan.sample_shape == (784,)
    logs = gan.fit(dataset, epochs=1, verbose=0).history
    assert all(math.isfinite(v[-1]) for v in logs.values())
    assert logs["d_real"][-1] > logs["d_fake"][-1]
    # Samples come back shaped like the data the GAN was fitted on.
    assert gan.data_shape == (784,) and gan.sample_shape == (28, 28, 1)
    samples = gan.generate(256, seed=0)
    assert samples.shape == (256, 28, 28, 1)
    assert samples.min() >= -1.0 and samples.max() <= 1.0
    held_out = gan.evaluate(dataset.take(5), verbose=0, return_dict=True)
    assert held_out["d_real"] > held_out["d_fake"]


def test_data_of_another_size_fails_before_training():
    gan = compiled(GAN(*architectures.small_mlp(data_shape=(784,), latent_dim=8), seed=0))
    colour = np.zeros((64, 32, 32, 3), "float32")
    calls = [
        lambda: gan.fit(colour, batch_size=32, verbose=0),
        lambda: gan.fit(tf.data.Dataset.from_tensor_slices(colour).batch(32), verbose=0),
        lambda: gan.fit(colour.reshape(64, -1)[:, :784], validation_data=(colour,), verbose=0),
        lambda: gan.evaluate(colour, batch_size=32, verbose=0),
    ]
    for call in calls:
        with pytest.raises(ValueError) as err:
            call()
        message = str(err.value)
        assert "(32, 32, 3) (3072 values)" in message and "(784,) (784 values)" in message
        assert "Reshape((32, 32, 3))" in message and "shape=(784,)" in message
    assert int(gan.g_optimizer.iterations) == 0 and int(gan.d_optimizer.iterations) == 0
    assert gan.sample_shape == (784,)
    with pytest.raises(ValueError, match=r"sample_shape has samples of shape \(2,\)"):
        GAN(*architectures.small_mlp(data_shape=(784,), latent_dim=8), sample_shape=(2,))


def test_same_seed_same_first_epoch_losses():
    def first_epoch() -> dict[str, float]:
        keras.utils.set_random_seed(7)
        dataset, info = data.load("digits", batch_size=64, seed=7, shape=(784,))
        gan = compiled(GAN(*architectures.small_mlp(data_shape=(784,)), seed=7))
        return {k: v[0] for k, v in gan.fit(dataset, epochs=1, verbose=0).history.items()}

    first, second = first_epoch(), first_epoch()
    assert first == pytest.approx(second, rel=1e-6, abs=1e-7)


# ---------------------------------------------------------------- saving and callbacks


def test_save_load_round_trip_gives_identical_samples(tmp_path):
    keras.utils.set_random_seed(0)
    gan = compiled(GAN(*architectures.small_mlp(data_shape=(784,)), seed=3), loss="hinge")
    gan.fit(
        np.random.default_rng(0).uniform(-1, 1, (128, 28, 28, 1)).astype("float32"),
        batch_size=64,
        epochs=1,
        verbose=0,
    )
    path = tmp_path / "gan.keras"
    gan.save(path)
    loaded = keras.models.load_model(path)  # safe_mode=True by default
    assert isinstance(loaded, GAN)
    assert (loaded.latent_dim, loaded.data_shape, loaded.seed) == (100, (784,), 3)
    assert loaded.sample_shape == (28, 28, 1)  # learnt from the data in fit
    assert loaded.loss_name == "hinge"
    z = gan.latent_vectors(16, seed=11)
    np.testing.assert_array_equal(gan.generate(16, z=z), loaded.generate(16, z=z))
    np.testing.assert_array_equal(gan.generate(16, seed=5), loaded.generate(16, seed=5))
    pairs = zip(gan.d_optimizer.variables, loaded.d_optimizer.variables, strict=True)
    for original, restored in pairs:
        np.testing.assert_array_equal(np.asarray(original), np.asarray(restored))


def test_fit_with_the_usual_callbacks(tmp_path):
    keras.utils.set_random_seed(0)
    gan = compiled(GAN(*architectures.small_mlp(data_shape=(2,), latent_dim=8), seed=0))
    x = np.random.default_rng(0).normal(size=(256, 2)).astype("float32")
    callbacks = [
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.EarlyStopping(monitor="g_loss", mode="min", patience=50),
        keras.callbacks.ModelCheckpoint(str(tmp_path / "ckpt.keras")),
        keras.callbacks.BackupAndRestore(str(tmp_path / "backup")),
        keras.callbacks.TensorBoard(str(tmp_path / "logs")),
    ]
    history = gan.fit(x, batch_size=64, epochs=3, verbose=0, callbacks=callbacks)
    assert len(history.history["g_loss"]) == 3
    assert isinstance(keras.models.load_model(tmp_path / "ckpt.keras"), GAN)
    assert list((tmp_path / "logs" / "train").glob("events.out.tfevents.*"))


def test_terminate_on_nan_stops_a_diverged_run():
    """The summed `loss` lets Keras's TerminateOnNaN stop a GAN at the first bad batch."""
    generator = keras.Sequential([keras.Input((4,)), layers.Dense(2)])
    discriminator = keras.Sequential([keras.Input((2,)), layers.Dense(1)])  # logits, no ReLU
    gan = compiled(GAN(generator, discriminator, seed=0))
    x = np.full((512, 2), np.nan, dtype="float32")
    history = gan.fit(
        x, batch_size=64, epochs=5, verbose=0, callbacks=[keras.callbacks.TerminateOnNaN()]
    )
    assert len(history.history["loss"]) == 1
    assert math.isnan(history.history["loss"][0])
