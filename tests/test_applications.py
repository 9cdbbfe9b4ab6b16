"""The articles' applications: generated data as a tf.data stream, and anomaly scores."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from rlhf_keras import GAN, architectures, data
from rlhf_keras.applications import anomaly_score, as_dataset


def _gan(data_shape=(784,), latent_dim=8, hidden=16, seed=0) -> GAN:
    keras.utils.set_random_seed(seed)
    generator, discriminator = architectures.small_mlp(data_shape, latent_dim, hidden=hidden)
    gan = GAN(generator, discriminator, seed=seed)
    gan.compile()
    return gan


def auroc(normal: np.ndarray, anomalous: np.ndarray) -> float:
    """P(score of an anomalous sample > score of a normal one), ties counted half."""
    normal, anomalous = np.asarray(normal), np.asarray(anomalous)
    greater = (anomalous[:, None] > normal[None, :]).mean()
    ties = (anomalous[:, None] == normal[None, :]).mean()
    return float(greater + 0.5 * ties)


def test_auroc_helper_is_right_on_known_cases():
    assert auroc(np.array([0.0, 1.0]), np.array([2.0, 3.0])) == 1.0
    assert auroc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 0.0
    assert auroc(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == 0.5


def test_as_dataset_yields_exactly_n_reproducible_samples():
    gan = _gan()
    dataset = as_dataset(gan, n=150, batch_size=64, seed=7)
    assert dataset.element_spec.shape.as_list() == [None, 784]
    assert dataset.element_spec.dtype == tf.float32
    assert int(dataset.cardinality()) == 3
    batches = [b.numpy() for b in dataset]
    assert [len(b) for b in batches] == [64, 64, 22]
    first = np.concatenate(batches)
    assert first.min() >= -1.0 and first.max() <= 1.0 and first.std() > 0
    again = np.concatenate([b.numpy() for b in dataset])  # a second pass: same samples
    np.testing.assert_array_equal(first, again)
    other = np.concatenate([b.numpy() for b in as_dataset(gan, n=150, seed=8)])
    assert not np.allclose(first, other)
    assert len(np.unique(first.round(4), axis=0)) == 150  # every batch has its own noise


def test_as_dataset_streams_forever_and_mixes_with_real_data():
    gan = _gan()
    endless = as_dataset(gan, batch_size=32, seed=0)
    assert endless.cardinality() == tf.data.INFINITE_CARDINALITY
    assert len(list(endless.take(5))) == 5

    real_x, _, _ = data.load_arrays("digits", shape=(784,))
    real = tf.data.Dataset.from_tensor_slices(real_x[:200]).batch(50)
    mixed = tf.data.Dataset.sample_from_datasets(
        [real.unbatch(), endless.unbatch()], weights=[0.75, 0.25], seed=0,
        stop_on_empty_dataset=True,
    ).batch(64)
    samples = np.concatenate([b.numpy() for b in mixed])
    from_real = (samples[:, None, :] == real_x[None, :200, :]).all(axis=2).any(axis=1)
    assert from_real.sum() == 200  # one pass over the real data, every real sample once
    assert 0.1 < 1 - from_real.mean() < 0.4  # about a quarter generated


def test_as_dataset_rejects_bad_arguments():
    gan = _gan()
    with pytest.raises(ValueError, match="n must be a positive int"):
        as_dataset(gan, n=0)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        as_dataset(gan, batch_size=0)
    with pytest.raises(ValueError, match="seed must be an int"):
        as_dataset(gan, seed="a")


def test_anomaly_score_validates_input_and_ranks_like_the_probability():
    gan = _gan()
    x = np.random.default_rng(0).uniform(-1, 1, (20, 28, 28)).astype("float32")
    logit_scores = anomaly_score(gan, x)  # (n, 28, 28) fits a 784-value GAN
    assert logit_scores.shape == (20,) and logit_scores.dtype == np.float64
    prob_scores = anomaly_score(gan, x.reshape(20, -1), kind="probability")
    assert ((prob_scores > 0) & (prob_scores < 1)).all()
    np.testing.assert_array_equal(np.argsort(logit_scores), np.argsort(prob_scores))
    # 1 - D(x) from the discriminator itself, computed independently.
    d_of_x = np.asarray(gan.discriminator(x.reshape(20, -1))).ravel()
    np.testing.assert_allclose(prob_scores, 1 - d_of_x, atol=1e-5)
    with pytest.raises(ValueError, match=r"shape \(n, 784\)"):
        anomaly_score(gan, np.zeros((3, 100)))
    with pytest.raises(ValueError, match="NaN or infinite"):
        anomaly_score(gan, np.full((2, 784), np.nan))
    with pytest.raises(ValueError, match="kind must be"):
        anomaly_score(gan, x, kind="density")


def test_trained_gan_scores_real_digits_below_noise_and_inverted_digits(mnist_dir):
    x, _, _ = data.load_arrays(mnist_dir, split="test", shape=(784,))
    train, held_out = x[:2000], x[8000:9000]  # scored digits were never seen in training
    gan = _gan(latent_dim=32, hidden=32, seed=0)
    dataset = tf.data.Dataset.from_tensor_slices(train).shuffle(2000, seed=0).batch(64)
    gan.fit(dataset, epochs=2, verbose=0)

    normal = anomaly_score(gan, held_out)
    noise = anomaly_score(gan, np.random.default_rng(0).uniform(-1, 1, held_out.shape))
    inverted = anomaly_score(gan, -held_out)  # white background, black strokes
    assert auroc(normal, noise) >= 0.9
    assert auroc(normal, inverted) >= 0.9
    # The threshold recipe in the docstring: the 99th percentile of held-out normal scores.
    threshold = np.percentile(anomaly_score(gan, x[9000:]), 99)
    assert (noise > threshold).mean() >= 0.9


def test_applications_live_beside_the_gan_and_follow_the_data_shape():
    assert not hasattr(GAN, "as_dataset") and not hasattr(GAN, "anomaly_score")
    generator, discriminator = architectures.small_mlp((784,), 8, hidden=16)
    gan = GAN(generator, discriminator, seed=0, sample_shape=(28, 28, 1))  # as after fit on MNIST
    batch = next(iter(as_dataset(gan, n=10, batch_size=10, seed=0))).numpy()
    assert batch.shape == (10, 28, 28, 1)
    np.testing.assert_allclose(batch, next(iter(as_dataset(gan, n=10, batch_size=10, seed=0))))
    assert anomaly_score(gan, batch).shape == (10,)
