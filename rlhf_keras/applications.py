"""What a trained GAN is for, as the articles name it: more data, and an anomaly signal.

* `as_dataset(gan, ...)`: generated samples as a `tf.data.Dataset` (data augmentation).
* `anomaly_score(gan, x, ...)`: how unlike the training data the discriminator finds samples.

Functions beside the model rather than methods of it: they use a trained `GAN` and add nothing
to training or saving.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rlhf_keras.gan import GAN

__all__ = ["anomaly_score", "as_dataset"]


def _is_int(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, np.integer))


def as_dataset(
    gan: GAN, n: int | None = None, batch_size: int = 64, seed: int | None = None
) -> Any:
    """Generated samples as a `tf.data.Dataset`, e.g. to augment a training set.

    Batch `i` is generated from latent vectors drawn with the stateless seed `(seed, i)`, so a
    dataset built with a seed yields the same samples on every pass and in every process.
    Generation happens lazily, batch by batch, on the `tf.data` threads.

    To mix generated samples into real training data (data augmentation), interleave the two
    streams with the weights you want; generated samples carry no labels, so use them for
    unsupervised or semi-supervised training (or as an extra "generated" class):

        real, _ = rlhf_keras.data.load("mnist", batch_size=64, seed=0)
        fake = applications.as_dataset(gan, batch_size=64, seed=0)   # endless
        mixed = tf.data.Dataset.sample_from_datasets(
            [real.unbatch(), fake.unbatch()], weights=[0.75, 0.25], seed=0,
            stop_on_empty_dataset=True,                              # one pass over the real data
        ).batch(64)

    Generated samples repeat the GAN's flaws (missing modes, artefacts): keep the real share
    high and check that augmented training helps on held-out real data.

    Args:
        gan: A `GAN`.
        n: Number of samples; None for an endless stream.
        batch_size: Samples per element (the last one may be smaller when `n` is given).
        seed: Seed of the latent vectors; None draws a fresh one (not reproducible).

    Returns:
        A dataset of float32 batches of shape `(batch, *gan.sample_shape)`, shaped like the
        data the GAN was fitted on.

    Raises:
        ValueError: If `n`, `batch_size` or `seed` is not valid.
    """
    import tensorflow as tf

    if n is not None and (not _is_int(n) or n < 1):
        raise ValueError(f"n must be a positive int, or None for an endless stream; got {n!r}.")
    if not _is_int(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
    if seed is None:
        seed = int(np.random.default_rng().integers(2**31 - 1))
    elif not _is_int(seed):
        raise ValueError(f"seed must be an int or None, got {seed!r}.")
    batch_size, latent_dim, generator = int(batch_size), gan.latent_dim, gan.generator
    sample_shape = gan.sample_shape
    if n is None:
        sizes = tf.data.Dataset.from_tensors(batch_size).repeat()
    else:
        full, rest = divmod(int(n), batch_size)
        sizes = tf.data.Dataset.from_tensor_slices([batch_size] * full + [rest] * bool(rest))
    indexed = tf.data.Dataset.zip(tf.data.Dataset.counter(), sizes)

    def make_batch(index: Any, size: Any) -> Any:
        stateless_seed = tf.stack([tf.constant(int(seed), tf.int64), index])
        z = tf.random.stateless_normal((size, latent_dim), seed=stateless_seed)
        samples = tf.cast(generator(z, training=False), tf.float32)
        return tf.reshape(samples, (-1, *sample_shape))

    # One call at a time keeps batches in order; each is still seeded by its index.
    return indexed.map(make_batch, num_parallel_calls=1).prefetch(1)


def anomaly_score(gan: GAN, x: Any, batch_size: int = 1024, kind: str = "logit") -> np.ndarray:
    """How unlike the training data the discriminator finds each sample (higher: stranger).

    `kind="logit"` (default) gives `-logit D(x)`; `kind="probability"` gives `1 - D(x)`. Both
    rank samples the same way; the logit does not saturate at 0 or 1, so it still separates
    samples the discriminator is very sure about.

    Limits: a discriminator is not a density model. It only learned to tell the training data
    from the generator's current samples, so inputs far from both (another dataset, heavy noise)
    get arbitrary scores; scores drift while the GAN trains (compare scores from one checkpoint,
    and calibrate a threshold on held-out normal data, e.g. its 99th percentile); and a
    generator that covers the data well leaves the discriminator little to say. Treat it as a
    cheap screening signal, not a likelihood.

    Args:
        gan: A `GAN`.
        x: Samples, `(n, *gan.data_shape)` or any shape with the same values per sample
            (`(n, 28, 28)` for a 784-value GAN), scaled like the training data.
        batch_size: Samples per forward pass.
        kind: `"logit"` or `"probability"`.

    Returns:
        A float64 array of `n` scores.

    Raises:
        ValueError: If `x` has the wrong size per sample, non-finite values, or `kind` is
            unknown.
    """
    if kind not in ("logit", "probability"):
        raise ValueError(f"kind must be 'logit' or 'probability', got {kind!r}.")
    x = np.asarray(x, dtype="float32")
    per_sample = int(np.prod(gan.data_shape))
    if x.ndim == 0 or len(x) == 0 or x[0].size != per_sample:
        raise ValueError(
            f"anomaly_score needs samples of shape (n, {', '.join(map(str, gan.data_shape))})"
            f" (or n samples of {per_sample} values), got {x.shape}."
        )
    if not np.isfinite(x).all():
        raise ValueError("anomaly_score got NaN or infinite values; clean the input first.")
    x = x.reshape(len(x), *gan.data_shape)
    # The GAN's own logits: recovered from a sigmoid discriminator without losing precision.
    logits = np.concatenate([
        np.asarray(gan._logits(x[i : i + batch_size], training=False), "float64").reshape(-1)
        for i in range(0, len(x), batch_size)
    ])
    if kind == "logit":
        return -logits
    return 1.0 - 1.0 / (1.0 + np.exp(-logits))
