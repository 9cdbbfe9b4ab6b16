"""Quality metrics on real data and real networks: FID, classifier score, k-NN metrics, modes."""

from __future__ import annotations

import math
from pathlib import Path

import keras
import numpy as np
import pytest

from rlhf_keras import data as data_lib
from rlhf_keras import feature_net as fnet
from rlhf_keras import metrics
from rlhf_keras.architectures import small_mlp
from rlhf_keras.gan import GAN

MNIST_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"
NOISE_SIGMAS = (0.1, 0.2, 0.4)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def mnist() -> tuple[np.ndarray, np.ndarray]:
    if not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip(f"MNIST test split not found at {MNIST_DIR}")
    x, y, _ = data_lib.load_arrays(MNIST_DIR, split="test")
    return np.array(x), np.array(y)


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    x, _, _ = data_lib.load_arrays("digits")
    return np.array(x)


@pytest.fixture(scope="module")
def extractor() -> metrics.FeatureExtractor:
    return metrics.shipped_extractor()


def _halves(x: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(len(x))
    half = len(x) // 2
    return x[order[:half]], x[order[half : 2 * half]]


def _fid_checks(x: np.ndarray, extractor: metrics.FeatureExtractor) -> None:
    """The acceptance checks shared by MNIST and digits."""
    a, b = _halves(x)
    same = metrics.fid(a, b, n=len(a))  # the public entry point, features included
    fa, fb = extractor(a), extractor(b)
    assert same == pytest.approx(metrics.frechet_distance(fa, fb), rel=1e-6)
    noise = np.random.default_rng(1).uniform(-1.0, 1.0, b.shape).astype("float32")
    to_noise = metrics.frechet_distance(fa, extractor(noise))
    assert same < 0.02 * to_noise, (same, to_noise)
    rng = np.random.default_rng(2)
    noisy = [
        metrics.frechet_distance(fa, extractor(np.clip(b + rng.normal(0, s, b.shape), -1, 1)))
        for s in NOISE_SIGMAS
    ]
    assert same < noisy[0] < noisy[1] < noisy[2], (same, noisy)


# --------------------------------------------------------------------------- Frechet distance


def _exact_gaussian(n: int, mean: np.ndarray, std: np.ndarray, seed: int) -> np.ndarray:
    """Samples whose sample mean and unbiased covariance are exactly mean and diag(std^2)."""
    z = np.random.default_rng(seed).standard_normal((n, len(mean)))
    q, _ = np.linalg.qr(z - z.mean(axis=0))  # orthonormal, zero-mean columns
    return q * math.sqrt(n - 1) * std + mean


def test_frechet_distance_is_zero_for_identical_features() -> None:
    f = np.random.default_rng(0).standard_normal((500, 16))
    assert metrics.frechet_distance(f, f) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_matches_closed_form_for_diagonal_gaussians() -> None:
    mu1, mu2 = np.array([0.0, 1.0, -2.0, 0.5]), np.array([1.0, 1.0, 0.0, -0.5])
    s1, s2 = np.array([1.0, 2.0, 0.5, 3.0]), np.array([0.5, 2.0, 1.5, 1.0])
    a = _exact_gaussian(400, mu1, s1, seed=0)
    b = _exact_gaussian(300, mu2, s2, seed=1)
    # For diagonal covariances Tr(S1 + S2 - 2 (S1 S2)^1/2) = sum (s1 - s2)^2.
    expected = float(np.sum((mu1 - mu2) ** 2) + np.sum((s1 - s2) ** 2))
    assert metrics.frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)
    assert metrics.frechet_distance(b, a) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_rejects_mismatched_or_broken_features() -> None:
    with pytest.raises(metrics.MetricError, match="differ in width"):
        metrics.frechet_distance(np.zeros((10, 3)), np.zeros((10, 4)))
    bad = np.ones((10, 3))
    bad[0, 0] = np.nan
    with pytest.raises(metrics.MetricError, match="NaN"):
        metrics.frechet_distance(np.ones((10, 3)), bad)
    with pytest.raises(metrics.MetricError, match="at least 2 rows"):
        metrics.frechet_distance(np.ones((1, 3)), np.ones((5, 3)))


# --------------------------------------------------------------------------- FID on real data


def test_fid_on_mnist_separates_real_from_noise_and_grows_with_noise(mnist, extractor) -> None:
    _fid_checks(mnist[0], extractor)


def test_fid_on_digits_separates_real_from_noise_and_grows_with_noise(digits, extractor) -> None:
    _fid_checks(digits, extractor)


def test_shipped_feature_net_accuracy_on_held_out_mnist(mnist) -> None:
    x, y = mnist
    classifier = metrics.shipped_classifier()
    acc = fnet.accuracy(classifier, x[fnet.TRAIN_SIZE :], y[fnet.TRAIN_SIZE :])
    assert acc >= 0.98, acc
    assert classifier.get_layer(fnet.FEATURE_LAYER).units == fnet.FEATURE_DIM
    assert fnet.default_model_path().stat().st_size < 2_000_000


def test_classifier_score_is_high_for_mnist_and_one_for_noise(mnist) -> None:
    x = mnist[0][:2000]
    assert metrics.classifier_score(x) > 9.0
    assert metrics.classifier_score(x.reshape(len(x), 784)) > 9.0  # flat samples work too
    noise = np.random.default_rng(0).uniform(-1, 1, (500, 28, 28, 1)).astype("float32")
    assert metrics.classifier_score(noise) < 1.5


def test_fid_accepts_flat_samples_and_source_names(digits) -> None:
    flat = digits.reshape(len(digits), 784)
    from_array = metrics.fid(flat, digits, n=1000, seed=3)
    from_name = metrics.fid(flat, "digits", n=1000, seed=3)
    # Same samples, same real subset (subsampled by the same seed), same network.
    assert from_name == pytest.approx(from_array, rel=1e-5)
    assert from_array < 5.0


def test_embedded_mnist_is_scored_as_digit_data() -> None:
    # Whatever "mnist" resolves to (TFDS or the embedded copy), it is MNIST: the shipped network.
    assert metrics.feature_extractor("mnist").kind == "shipped"
    x, _, _ = data_lib.load_arrays("mnist")
    real_vs_real = metrics.fid(np.array(x[:500]), "mnist", n=500, seed=0)
    noise = np.random.default_rng(0).uniform(-1, 1, (500, 784)).astype("float32")
    assert real_vs_real < 20.0
    assert metrics.fid(noise, "mnist", n=500, seed=0) > 10 * real_vs_real
    gan = GAN(*small_mlp((784,), 8, hidden=16), seed=0)
    assert "classifier_score" in metrics.evaluate(gan, "mnist", n=200)


def test_fid_rejects_unscaled_images_and_bad_n(digits) -> None:
    with pytest.raises(metrics.MetricError, match="127.5"):
        metrics.fid(digits, (digits + 1) * 127.5)
    with pytest.raises(metrics.MetricError, match="n must be"):
        metrics.fid(digits, digits, n=1)
    with pytest.raises(metrics.MetricError, match="do not fit"):
        metrics.fid(np.zeros((10, 30, 30, 1), "float32"), digits)


def test_missing_feature_net_says_how_to_retrain(tmp_path) -> None:
    with pytest.raises(fnet.FeatureNetError, match="python -m rlhf_keras.feature_net"):
        fnet.load_feature_net(tmp_path / "absent.keras")


# --------------------------------------------------------------------------- other image data


def test_fid_never_trains_a_feature_network(tmp_path, monkeypatch) -> None:
    """Labelled images of another shape get the seeded random embedding, and nothing on disk."""
    monkeypatch.setenv(metrics.CACHE_ENV, str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    path = tmp_path / "toy.npz"
    np.savez(path, x=rng.integers(0, 256, (60, 12, 12), dtype=np.uint8), y=np.arange(60) % 3)
    x, _, info = data_lib.load_arrays(path)
    assert info.has_labels and info.shape == (12, 12, 1)
    assert metrics.feature_extractor(info).kind == "random"
    fake = rng.uniform(-1, 1, (40, 12, 12, 1)).astype("float32")
    from_name = metrics.fid(fake, str(path), n=40, seed=0)
    from_array = metrics.fid(fake, x, n=40, seed=0)  # arrays of that shape: the same embedding
    assert math.isfinite(from_name) and from_name == pytest.approx(from_array, rel=1e-6)
    assert not (tmp_path / "cache").exists()


def test_train_feature_extractor_is_explicit_and_cached(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(metrics.CACHE_ENV, str(tmp_path))
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (120, 8, 8, 1)).astype("float32")
    y = (x.mean(axis=(1, 2, 3)) > 0).astype("int64")
    first = metrics.train_feature_extractor(x, y, epochs=2, seed=0)
    saved = list((tmp_path / "feature_nets").glob("arrays_8x8x1_120_*.keras"))
    assert first.kind == "trained" and len(saved) == 1
    second = metrics.train_feature_extractor(x, y, epochs=2, seed=0)  # loaded from the cache
    np.testing.assert_allclose(second(x), first(x), rtol=1e-5, atol=1e-5)
    assert first(x).shape == (120, fnet.FEATURE_DIM)
    # What it is for: the caller hands it to fid.
    assert math.isfinite(metrics.fid(x[:60], x[60:], n=60, feature_model=first))
    with pytest.raises(metrics.MetricError, match="needs labels"):
        metrics.train_feature_extractor(x)
    with pytest.raises(metrics.MetricError, match="labelled images"):
        metrics.train_feature_extractor("ring8")


def test_feature_extractor_falls_back_to_seeded_random_embedding() -> None:
    info = data_lib.DataInfo(
        name="unlabelled", shape=(16, 16, 3), size=50, has_labels=False, kind="image"
    )
    x = np.random.default_rng(0).uniform(-1, 1, (50, 16, 16, 3)).astype("float32")
    a = metrics.feature_extractor(info, seed=7)
    b = metrics.feature_extractor(info, seed=7)
    assert a.kind == "random"
    np.testing.assert_allclose(a(x), b(x), rtol=1e-6)
    assert metrics.feature_extractor("digits").kind == "shipped"
    with pytest.raises(metrics.MetricError, match="mode_metrics"):
        metrics.feature_extractor("ring8")


# --------------------------------------------------------------------------- k-NN metrics


def _brute_force_knn_metrics(real: np.ndarray, fake: np.ndarray, k: int) -> tuple[float, ...]:
    """The four k-NN measures from full distance matrices, as the papers define them."""
    def dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))

    real_radii = np.sort(dist(real, real), axis=1)[:, k]
    fake_radii = np.sort(dist(fake, fake), axis=1)[:, k]
    fake_in_real = dist(fake, real) <= real_radii[None, :]
    real_in_fake = dist(real, fake) <= fake_radii[None, :]
    precision = fake_in_real.any(axis=1).mean()
    recall = real_in_fake.any(axis=1).mean()
    density = fake_in_real.sum() / (k * len(fake))
    coverage = (dist(real, fake).min(axis=1) <= real_radii).mean()
    return float(precision), float(recall), float(density), float(coverage)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_knn_metrics_match_the_definitions(k: int) -> None:
    rng = np.random.default_rng(k)
    real = rng.standard_normal((300, 6))
    fake = rng.standard_normal((200, 6)) * 1.3 + 0.4
    precision, recall, density, coverage = _brute_force_knn_metrics(real, fake, k)
    assert metrics.precision_recall(real, fake, k=k) == pytest.approx((precision, recall))
    assert metrics.density_coverage(real, fake, k=k) == pytest.approx((density, coverage))


def test_knn_metrics_on_identical_and_disjoint_distributions() -> None:
    rng = np.random.default_rng(0)
    real = rng.standard_normal((1500, 8))
    same = rng.standard_normal((1500, 8))
    density, coverage = metrics.density_coverage(real, same)
    assert 0.8 < density < 1.2 and coverage >= 0.9
    precision, recall = metrics.precision_recall(real, same)
    assert precision > 0.6 and recall > 0.6
    far = same + 100.0
    assert metrics.precision_recall(real, far) == (0.0, 0.0)
    assert metrics.density_coverage(real, far) == (0.0, 0.0)
    with pytest.raises(metrics.MetricError, match="k must be"):
        metrics.precision_recall(real[:3], same[:3], k=3)


# --------------------------------------------------------------------------- 2-D modes


@pytest.mark.parametrize("name,k", [("ring8", 8), ("grid25", 25)])
def test_mode_metrics_on_constructed_samples(name: str, k: int) -> None:
    centers, std = data_lib.mixture_modes(name)
    rng = np.random.default_rng(0)
    everywhere = np.repeat(centers, 100, axis=0) + rng.normal(0, std, (100 * k, 2))
    result = metrics.mode_metrics(everywhere, name)
    assert result["modes"] == k
    assert result["high_quality"] > 95.0  # within 3 std with prob. 1 - exp(-4.5) = 98.9%
    assert result["reverse_kl"] < 0.01
    exact = metrics.mode_metrics(np.repeat(centers, 10, axis=0), name)
    assert exact == {"modes": k, "high_quality": 100.0, "reverse_kl": pytest.approx(0.0, abs=1e-6)}
    one = metrics.mode_metrics(np.repeat(centers[:1], 50, axis=0), (centers, std))
    assert one["modes"] == 1 and one["high_quality"] == 100.0
    assert one["reverse_kl"] == pytest.approx(math.log(k), rel=1e-6)
    far = metrics.mode_metrics(np.full((40, 2), 10.0), name)
    assert far["modes"] == 0 and far["high_quality"] == 0.0


def test_mode_metrics_rejects_bad_input() -> None:
    with pytest.raises(metrics.MetricError, match="ring8"):
        metrics.mode_metrics(np.zeros((5, 2)), "ring9")
    with pytest.raises(metrics.MetricError, match=r"\(N, 2\)"):
        metrics.mode_metrics(np.zeros((5, 3)), "ring8")


# --------------------------------------------------------------------------- reward and callback


def _tiny_gan(data_shape: tuple[int, ...], seed: int = 0) -> GAN:
    keras.utils.set_random_seed(seed)
    generator, discriminator = small_mlp(data_shape, latent_dim=8, hidden=16)
    gan = GAN(generator, discriminator, seed=seed)
    gan.compile()
    return gan


def test_fid_callback_adds_fid_to_history(digits) -> None:
    gan = _tiny_gan((28, 28, 1))
    real = digits[:256]
    callback = metrics.FIDCallback(real, every=1, n=256, seed=0)
    history = gan.fit(real, batch_size=64, epochs=2, verbose=0, callbacks=[callback])
    fids = history.history["fid"]
    assert len(fids) == 2 and all(math.isfinite(v) and v > 0 for v in fids)
    # The callback scores fixed latent vectors: the same call now reproduces the last value.
    assert metrics.quality(gan, real, n=256, seed=0)["fid"] == pytest.approx(fids[-1], rel=1e-4)


def test_quality_on_2d_data_scores_modes_then_quality() -> None:
    gan = _tiny_gan((2,))
    x, _, _ = data_lib.load_arrays("ring8", seed=0)
    callback = metrics.FIDCallback("ring8", every=2, n=500, seed=0)
    history = gan.fit(x[:1024], batch_size=128, epochs=3, verbose=0, callbacks=[callback])
    # every=2 evaluates epoch 2 and the last epoch (3).
    assert len(history.history["modes"]) == 2 and "fid" not in history.history
    result = metrics.quality(gan, "ring8", seed=0)
    assert set(result) == {"modes", "high_quality", "reverse_kl", "score"}
    assert result["score"] == pytest.approx(result["modes"] + result["high_quality"] / 100)
    with pytest.raises(metrics.MetricError, match="'ring8', 'grid25'"):
        metrics.quality(gan, x[:100])
    with pytest.raises(metrics.MetricError, match="every"):
        metrics.FIDCallback("ring8", every=0)


def test_evaluate_adds_fidelity_and_diversity_measures_for_images():
    keras.utils.set_random_seed(0)
    gan = GAN(*small_mlp(data_shape=(784,), latent_dim=16), seed=0)
    gan.compile()
    values = metrics.evaluate(gan, "digits", n=300, seed=0)
    assert set(values) == {"fid", "score", "precision", "recall", "density", "coverage",
                           "classifier_score"}
    assert values["fid"] == pytest.approx(metrics.quality(gan, "digits", n=300)["fid"])
    # An untrained generator makes blobs of noise: nothing like a digit, no classes.
    assert values["precision"] < 0.1 and values["coverage"] < 0.1
    assert 1.0 <= values["classifier_score"] < 2.0
    assert set(metrics.evaluate(GAN(*small_mlp(data_shape=(2,))), "ring8")) == {
        "modes", "high_quality", "reverse_kl", "score"}
