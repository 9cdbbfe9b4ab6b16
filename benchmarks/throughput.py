"""Training throughput of `GAN.fit` against a plain keras.io-style custom train_step.

Both train the first article's MLP pair (G 256-512-1024-784, D 1024-512-256-1) on the same real
images with the same optimizers, through the same `fit` loop, in the same process.

    python benchmarks/throughput.py --data ../shared/data/mnist --steps 300

Prints a markdown table of steps/s: the median of --repeats timed runs after a warm-up, the
variants taking turns so that the machine's speed drifts hit them alike.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from rlhf_keras import GAN, architectures, data  # noqa: E402


class PlainGAN(keras.Model):
    """The keras.io-style baseline: two tapes, separate discriminator passes for real and fake."""

    def __init__(self, generator: keras.Model, discriminator: keras.Model, latent_dim: int = 100):
        super().__init__()
        self.generator, self.discriminator, self.latent_dim = generator, discriminator, latent_dim
        self.bce = keras.losses.BinaryCrossentropy()
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")

    def compile(self, g_optimizer, d_optimizer, **kwargs):
        super().compile(**kwargs)
        self.g_optimizer, self.d_optimizer = g_optimizer, d_optimizer

    @property
    def metrics(self):
        return [self.d_loss_tracker, self.g_loss_tracker]

    def train_step(self, real):
        batch_size = tf.shape(real)[0]
        z = tf.random.normal((batch_size, self.latent_dim))
        with tf.GradientTape() as tape:
            real_out = self.discriminator(real, training=True)
            fake_out = self.discriminator(self.generator(z, training=True), training=True)
            d_loss = self.bce(tf.ones_like(real_out), real_out) + self.bce(
                tf.zeros_like(fake_out), fake_out
            )
        d_vars = self.discriminator.trainable_variables
        self.d_optimizer.apply_gradients(zip(tape.gradient(d_loss, d_vars), d_vars, strict=True))
        z = tf.random.normal((batch_size, self.latent_dim))
        with tf.GradientTape() as tape:
            fake_out = self.discriminator(self.generator(z, training=True), training=True)
            g_loss = self.bce(tf.ones_like(fake_out), fake_out)
        g_vars = self.generator.trainable_variables
        self.g_optimizer.apply_gradients(zip(tape.gradient(g_loss, g_vars), g_vars, strict=True))
        self.d_loss_tracker.update_state(d_loss)
        self.g_loss_tracker.update_state(g_loss)
        return {"d_loss": self.d_loss_tracker.result(), "g_loss": self.g_loss_tracker.result()}


def build(variant: str, dataset: tf.data.Dataset) -> tuple[keras.Model, tf.data.Dataset]:
    """A compiled, warmed-up model for one variant (traced, so timing excludes compilation)."""
    keras.utils.set_random_seed(0)
    generator, discriminator = architectures.seed_mlp(data_shape=(784,))

    def adam() -> keras.optimizers.Optimizer:
        return keras.optimizers.Adam(2e-4, beta_1=0.5)

    if variant == "plain":
        model = PlainGAN(generator, discriminator)
        model.compile(adam(), adam(), jit_compile=False)
    else:
        model = GAN(generator, discriminator, seed=0)
        model.compile(adam(), adam(), jit_compile=variant != "GAN (no XLA)",
                      steps_per_execution=8 if "steps_per_execution" in variant else 1)
    stream = dataset.repeat()
    model.fit(stream, steps_per_epoch=20, epochs=1, verbose=0, shuffle=False)
    return model, stream


def rates(variants: list[str], dataset: tf.data.Dataset, steps: int, repeats: int) -> dict:
    """Median steps/s per variant; the variants take turns, so drifts in machine speed hit
    all of them alike."""
    built = {v: build(v, dataset) for v in variants}
    timings: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(repeats):
        for variant, (model, stream) in built.items():
            start = time.perf_counter()
            model.fit(stream, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
            timings[variant].append(steps / (time.perf_counter() - start))
    return {v: statistics.median(t) for v, t in timings.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="digits")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch-sizes", default="64,256")
    args = parser.parse_args()
    variants = ["plain", "GAN (no XLA)", "GAN (XLA, default)", "GAN (XLA, steps_per_execution=8)"]
    rows = []
    for batch_size in [int(b) for b in args.batch_sizes.split(",")]:
        dataset, info = data.load(args.data, batch_size=batch_size, seed=0, shape=(784,))
        rows.append((batch_size, rates(variants, dataset, args.steps, args.repeats)))
    print(f"Data: {info.name} ({info.size} images); {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, TF {tf.__version__}, Keras {keras.__version__}\n")
    print("| batch | " + " | ".join(f"{v} steps/s" for v in variants)
          + " | GAN / plain | GAN (steps_per_execution=8) / plain |")
    print("|---|" + "---|" * (len(variants) + 2))
    for batch_size, measured in rows:
        cells = " | ".join(f"{measured[v]:.1f}" for v in variants)
        default = measured["GAN (XLA, default)"] / measured["plain"]
        batched = measured[variants[-1]] / measured["plain"]
        print(f"| {batch_size} | {cells} | {default:.2f}x | {batched:.2f}x |")


if __name__ == "__main__":
    main()
