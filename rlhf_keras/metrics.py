"""Sample-quality metrics: FID, classifier score, precision/recall, density/coverage, modes.

The evidence room's judge. `quality(gan, data)` is the single number the tuner maximises;
everything else here explains it.

* Images: the Frechet distance between Gaussians fitted to feature-network activations (FID,
  Heusel et al. 2017) with the project's small MNIST CNN (see `rlhf_keras.feature_net`), not
  Inception, so values are comparable within the project only. Lower is better.
* 2-D mixtures (`"ring8"`, `"grid25"`): PacGAN's mode metrics (Lin et al. 2018).
* Any features: precision/recall (Kynkaanniemi et al. 2019), density/coverage (Naeem et al. 2020).
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from rlhf_keras import feature_net as fnet

# Samples used by `quality` when `n` is not given. 2,000 images keep one evaluation at ~1 s; the
# resulting FID's noise floor (coefficient of variation over evaluation seeds) is measured by
# benchmarks/fid_speed.py and recorded in benchmarks/RESULTS.md.
DEFAULT_IMAGE_SAMPLES = 2000
DEFAULT_POINT_SAMPLES = 2500
MIXTURES = ("ring8", "grid25")
# A sample is "high quality" within this many standard deviations of its nearest mode (PacGAN).
HIGH_QUALITY_STDS = 3.0
# Empty modes get this much probability mass before normalising, so the log stays finite.
KL_EPSILON = 1e-10
CACHE_ENV = "RLHF_KERAS_CACHE"
# Sources whose images are MNIST-like 28x28 digits: the shipped network fits them.
DIGIT_SOURCES = ("mnist", "digits")
_DIGIT_SHAPE = (28, 28, 1)
_FEATURE_BATCH = 2000


class MetricError(ValueError):
    """Inputs a metric cannot use; the message says what was wrong and how to fix it."""


# --------------------------------------------------------------------------- Frechet distance


def frechet_distance(real_features: np.ndarray, fake_features: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two feature sets.

    `||mu1 - mu2||^2 + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^(1/2))`, in float64 with unbiased
    covariances. `Tr((S1 S2)^(1/2))` is computed from the eigenvalues of the symmetric matrix
    `S1^(1/2) S2 S1^(1/2)`, which has the same eigenvalues as `S1 S2` but stays real and
    stable when the covariances are near singular.

    Args:
        real_features: `(N, D)` features of real samples, N >= 2.
        fake_features: `(M, D)` features of generated samples, M >= 2.

    Returns:
        The distance (>= 0).

    Raises:
        MetricError: If the arrays are not 2-D with the same D, hold fewer than 2 rows, or
            hold non-finite values.
    """
    a, b = _pair(real_features, fake_features, ("real_features", "fake_features"))
    mu1, mu2 = a.mean(axis=0), b.mean(axis=0)
    s1 = np.atleast_2d(np.cov(a, rowvar=False))
    s2 = np.atleast_2d(np.cov(b, rowvar=False))
    sqrt_s1 = _sqrtm_psd(s1)
    middle = sqrt_s1 @ s2 @ sqrt_s1
    eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2.0)
    # Round-off can leave tiny negative eigenvalues of a PSD matrix; they are zero.
    trace_sqrt = float(np.sum(np.sqrt(np.clip(eigenvalues, 0.0, None))))
    diff = mu1 - mu2
    value = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * trace_sqrt)
    return max(value, 0.0)


def _sqrtm_psd(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a positive semi-definite matrix."""
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def _features(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] < 2:
        raise MetricError(
            f"{name} must be a 2-D array (samples, features) with at least 2 rows; got shape "
            f"{arr.shape}. Extract features first (feature_extractor) or reshape."
        )
    if not np.all(np.isfinite(arr)):
        raise MetricError(
            f"{name} holds NaN or infinite values; the generator may have diverged. Check the "
            "samples before computing metrics."
        )
    return arr


def _pair(
    real_f: Any, fake_f: Any, names: tuple[str, str] = ("real_f", "fake_f")
) -> tuple[np.ndarray, np.ndarray]:
    """Both feature sets, checked, as float64; they must have the same width."""
    real = _features(real_f, names[0])
    fake = _features(fake_f, names[1])
    if real.shape[1] != fake.shape[1]:
        raise MetricError(
            f"Feature sets differ in width: real {real.shape}, fake {fake.shape}. Extract both "
            "with the same feature network."
        )
    return real, fake


# --------------------------------------------------------------------------- feature extraction


class FeatureExtractor:
    """A callable mapping images to features, in large batches through a compiled forward pass.

    Args:
        model: A Keras model mapping images to a 2-D feature array.
        kind: How the network was obtained: `"shipped"`, `"trained"`, `"random"` or `"custom"`.
        key: A string identifying the network, used to cache real-image features.
        batch_size: Images per forward pass.
    """

    def __init__(self, model: keras.Model, kind: str = "custom", key: str | None = None,
                 batch_size: int = _FEATURE_BATCH) -> None:
        import tensorflow as tf

        self.model = model
        self.kind = kind
        self.key = key or f"{kind}:{model.name}:{id(model)}"
        self.batch_size = int(batch_size)
        self.input_shape = tuple(int(d) for d in model.input_shape[1:])
        spec = tf.TensorSpec((None, *self.input_shape), tf.float32)
        # One graph for every batch size: tracing once keeps repeated evaluations fast.
        self._forward = tf.function(lambda x: model(x, training=False), input_signature=[spec],
                                    reduce_retracing=True)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Features of `images` (`(N, *input_shape)`, or `(N, 784)` for 28x28x1), as float32."""
        x = _as_images(images, self.input_shape)
        out = [np.asarray(self._forward(x[i : i + self.batch_size]))
               for i in range(0, len(x), self.batch_size)]
        return np.concatenate(out).reshape(len(x), -1)

    def __repr__(self) -> str:
        return f"FeatureExtractor(kind={self.kind!r}, key={self.key!r})"


_SHIPPED: dict[str, Any] = {}


def shipped_classifier() -> keras.Model:
    """The shipped MNIST classifier (`rlhf_keras/assets/mnist_features.keras`), loaded once."""
    if "classifier" not in _SHIPPED:
        _SHIPPED["classifier"] = fnet.load_feature_net()
    return _SHIPPED["classifier"]


def shipped_extractor() -> FeatureExtractor:
    """Features of the shipped MNIST network's `"features"` layer (128 values per image)."""
    if "extractor" not in _SHIPPED:
        model = fnet.embedding(shipped_classifier())
        _SHIPPED["extractor"] = FeatureExtractor(model, kind="shipped", key="shipped:mnist")
    return _SHIPPED["extractor"]


def cache_dir() -> Path:
    """Root of the on-disk cache: `$RLHF_KERAS_CACHE`, else `~/.cache/rlhf_keras`."""
    root = os.environ.get(CACHE_ENV)
    return Path(root).expanduser() if root else Path.home() / ".cache" / "rlhf_keras"


def feature_extractor(
    info_or_name: Any,
    x: np.ndarray | None = None,
    y: np.ndarray | None = None,
    seed: int = 0,
) -> FeatureExtractor:
    """The feature network that fits a dataset.

    * 28x28x1 digits (`"mnist"`, `"digits"`, a folder of 28x28 IDX files): the shipped network.
    * Other image data with labels: a network of the same design trained on `x, y` (10 epochs)
      and cached as `<cache>/feature_nets/<key>.keras`, key = name + shape + size; the cache
      root is `$RLHF_KERAS_CACHE` or `~/.cache/rlhf_keras`.
    * Image data without labels: a randomly initialised CNN embedding with weights fixed by
      `seed` (Naeem et al. 2020 show random embeddings work for fidelity/diversity metrics).

    Args:
        info_or_name: A `data.DataInfo` or a source accepted by `data.load_arrays`.
        x: The dataset's images; loaded from the source when needed and not given.
        y: Their labels; None means unlabelled.
        seed: Seed of the training or of the random embedding.

    Returns:
        A `FeatureExtractor` (callable images -> `(N, 128)` features).

    Raises:
        MetricError: If the data are 2-D points (use `mode_metrics`) or not images.
    """
    from rlhf_keras import data as data_lib

    if isinstance(info_or_name, data_lib.DataInfo):
        info = info_or_name
    else:
        x_loaded, y_loaded, info = data_lib.load_arrays(info_or_name, split="train")
        if x is None:
            x, y = x_loaded, y_loaded
    shape = tuple(info.shape)
    if info.kind != "image" or len(shape) != 3:
        raise MetricError(
            f"{info.name!r} holds {info.kind} of shape {shape}, not images; FID needs images. "
            "For 2-D mixtures use mode_metrics(samples, 'ring8') or quality(gan, 'ring8')."
        )
    if shape == _DIGIT_SHAPE and _is_digit_source(info.name):
        return shipped_extractor()
    if x is None and info.has_labels:
        x, y, _ = data_lib.load_arrays(info.name, split="train", shape=shape)
    if y is None or not info.has_labels:
        model = fnet.random_embedding(shape, seed=seed)
        return FeatureExtractor(model, kind="random", key=f"random:{shape}:{seed}")
    key = _cache_key(info.name, shape, info.size, seed)
    path = cache_dir() / "feature_nets" / f"{key}.keras"
    if path.is_file():
        classifier = fnet.load_feature_net(path)
    else:
        classifier = fnet.train_feature_net(np.asarray(x), np.asarray(y), info.num_classes,
                                            epochs=10, seed=seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        classifier.save(path)
    return FeatureExtractor(fnet.embedding(classifier), kind="trained", key=f"trained:{key}")


def _is_digit_source(name: str) -> bool:
    if name in DIGIT_SOURCES:
        return True
    # A folder of IDX files is MNIST's own layout; 28x28 there means handwritten digits.
    return Path(name).expanduser().is_dir()


def _cache_key(name: str, shape: tuple[int, ...], size: int, seed: int) -> str:
    stem = "".join(c if c.isalnum() else "_" for c in Path(name).name or name)[:40]
    digest = hashlib.sha1(f"{name}|{shape}|{size}|{seed}".encode()).hexdigest()[:10]
    return f"{stem}_{'x'.join(map(str, shape))}_{size}_{digest}"


def _resolve_extractor(feature_model: Any, real: Any, real_images: np.ndarray | None,
                       seed: int | None) -> FeatureExtractor | Callable[[np.ndarray], np.ndarray]:
    """The extractor `fid` uses: the given one, else one chosen from the real data."""
    if isinstance(feature_model, FeatureExtractor):
        return feature_model
    if isinstance(feature_model, keras.Model):
        try:
            # A classifier made by feature_net: use its embedding layer, not its softmax.
            model = fnet.embedding(feature_model)
        except ValueError:
            model = feature_model
        return FeatureExtractor(model, kind="custom")
    if callable(feature_model):
        return feature_model
    if feature_model is not None:
        raise MetricError(
            f"feature_model must be None, a keras.Model or a callable images -> features; got "
            f"{type(feature_model).__name__}."
        )
    if isinstance(real, (str, os.PathLike)):
        return feature_extractor(os.fspath(real), seed=0 if seed is None else seed)
    shape = tuple(real_images.shape[1:]) if real_images is not None else ()
    if shape in ((784,), (28, 28), _DIGIT_SHAPE):
        return shipped_extractor()
    raise MetricError(
        f"No feature network is known for real images of shape {shape}. Pass the data source "
        "name as `real` (a network is picked or trained for it) or pass feature_model=."
    )


def _as_images(images: Any, shape: tuple[int, ...] = _DIGIT_SHAPE) -> np.ndarray:
    """Images as float32 `(N, *shape)`; flat 784-vectors and missing channels are reshaped."""
    x = np.asarray(images, dtype=np.float32)
    if x.ndim >= 2 and x.shape[1:] != shape and math.prod(x.shape[1:]) == math.prod(shape):
        x = x.reshape(len(x), *shape)
    if x.shape[1:] != shape:
        raise MetricError(
            f"Images of shape {x.shape} do not fit a feature network for {shape}; pass samples "
            f"shaped (N, {', '.join(map(str, shape))}) or flat (N, {math.prod(shape)})."
        )
    return x


# --------------------------------------------------------------------------- FID

# Real-image features per (source, n, seed, extractor): the real side of FID is fixed.
_REAL_FEATURES: dict[tuple, np.ndarray] = {}


def fid(
    gan_or_samples: Any,
    real: Any,
    n: int = 10000,
    feature_model: Any = None,
    seed: int | None = None,
    batch_size: int = _FEATURE_BATCH,
) -> float:
    """Frechet distance between the feature statistics of real and generated images.

    Args:
        gan_or_samples: A `GAN` (anything with `generate(n, seed=)`) or an array of generated
            images in [-1, 1]; `(N, 784)` samples are read as 28x28x1.
        real: Real images in [-1, 1] (an array), or a source name/path for
            `data.load_arrays` (e.g. `"digits"`, `"../shared/data/mnist"`).
        n: Samples per side: `n` are generated from a GAN; arrays larger than `n` are
            subsampled (without replacement, by `seed`).
        feature_model: None (picked from `real`: the shipped MNIST network for 28x28x1
            digits, see `feature_extractor`), a `keras.Model` (a `feature_net` classifier is
            cut at its `"features"` layer; any other model's output is used as is), or a
            callable images -> features.
        seed: Seed of the latent vectors and of the subsampling; None draws fresh ones.
        batch_size: Images per forward pass of the feature network.

    Returns:
        The FID (>= 0; lower is better).

    Raises:
        MetricError: If `n < 2`, the images have the wrong shape or range (e.g. [0, 255]), or
            the generated samples are not finite.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise MetricError(f"n must be an integer >= 2, got {n!r}.")
    real_images = None
    real_key: tuple | None = None
    if isinstance(real, (str, os.PathLike)):
        real_key = (os.fspath(real), int(n), seed)
    else:
        real_images = _check_real_images(real)
    extractor = _resolve_extractor(feature_model, real, real_images, seed)
    if isinstance(extractor, FeatureExtractor):
        extractor.batch_size = int(batch_size)
    fake = _generated(gan_or_samples, n, seed)
    if real_key is not None:
        cache_key = (*real_key, getattr(extractor, "key", id(extractor)))
        real_features = _REAL_FEATURES.get(cache_key)
        if real_features is None:
            from rlhf_keras import data as data_lib

            x, _, _ = data_lib.load_arrays(real_key[0], split="train")
            real_features = extractor(_subsample(_check_real_images(x), n, seed))
            _REAL_FEATURES[cache_key] = real_features
    else:
        real_features = extractor(_subsample(real_images, n, seed))
    return frechet_distance(real_features, extractor(fake))


def _check_real_images(real: Any) -> np.ndarray:
    x = np.asarray(real, dtype=np.float32)
    if x.ndim < 2 or len(x) < 2:
        raise MetricError(
            f"real must hold at least 2 images (N, ...) or be a data source name; got shape "
            f"{x.shape}."
        )
    if not np.all(np.isfinite(x)):
        raise MetricError("real holds NaN or infinite values; check the data loading.")
    if x.max() > 1.5 or x.min() < -1.5:
        raise MetricError(
            f"real images range over [{x.min():.3g}, {x.max():.3g}], not [-1, 1]; scale them "
            "first, e.g. x / 127.5 - 1 for uint8 pixels."
        )
    return x


def _subsample(x: np.ndarray, n: int, seed: int | None) -> np.ndarray:
    if len(x) <= n:
        return x
    rng = np.random.default_rng(seed)
    return x[np.sort(rng.choice(len(x), size=n, replace=False))]


def _generated(gan_or_samples: Any, n: int, seed: int | None) -> np.ndarray:
    """`n` generated samples from a GAN, or the given array (subsampled to `n`)."""
    if hasattr(gan_or_samples, "generate"):
        samples = np.asarray(gan_or_samples.generate(int(n), seed=seed), dtype=np.float32)
    else:
        samples = np.asarray(gan_or_samples, dtype=np.float32)
        if samples.ndim < 2 or len(samples) < 2:
            raise MetricError(
                f"Generated samples must be an array (N, ...) with N >= 2 or a GAN; got shape "
                f"{samples.shape}."
            )
        samples = _subsample(samples, n, seed)
    if not np.all(np.isfinite(samples)):
        raise MetricError(
            "The generated samples hold NaN or infinite values (the GAN diverged); no metric "
            "can score them. Lower the learning rates or restart training."
        )
    return samples


# --------------------------------------------------------------------------- classifier score


def classifier_score(samples: np.ndarray, classifier: keras.Model | None = None,
                     batch_size: int = _FEATURE_BATCH) -> float:
    """The "Inception score" computed with a digit classifier: `exp(E_x KL(p(y|x) || p(y)))`.

    Confident, class-balanced samples score high (up to the number of classes; real MNIST
    scores about 9.x with the shipped network); blurry or collapsed ones score near 1.

    Args:
        samples: Images in [-1, 1], `(N, 28, 28, 1)` or `(N, 784)` for the shipped network.
        classifier: A model images -> class probabilities; defaults to the shipped one.
        batch_size: Images per forward pass.

    Returns:
        The score, in [1, number of classes].

    Raises:
        MetricError: If the samples do not fit the classifier or are not finite.
    """
    if hasattr(samples, "generate"):
        raise MetricError(
            "classifier_score takes an array of images; pass gan.generate(n, seed=...) instead "
            "of the GAN."
        )
    model = classifier if classifier is not None else shipped_classifier()
    shape = tuple(int(d) for d in model.input_shape[1:])
    x = _as_images(_generated(samples, len(np.asarray(samples)), None), shape)
    probs = np.concatenate(
        [np.asarray(model(x[i : i + batch_size], training=False), dtype=np.float64)
         for i in range(0, len(x), batch_size)]
    )
    probs = np.clip(probs, 1e-12, 1.0)
    marginal = probs.mean(axis=0, keepdims=True)
    kl = np.sum(probs * (np.log(probs) - np.log(marginal)), axis=1)
    return float(np.exp(np.mean(kl)))


# --------------------------------------------------------------------------- k-NN metrics


def _pairwise_sq(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.maximum(d, 0.0)


def _knn_radii(x: np.ndarray, k: int, chunk: int = 1024) -> np.ndarray:
    """Squared distance from each row to its k-th nearest other row."""
    if not 1 <= k < len(x):
        raise MetricError(f"k must be in [1, {len(x) - 1}] for {len(x)} samples, got k={k}.")
    out = np.empty(len(x))
    for i in range(0, len(x), chunk):
        d = _pairwise_sq(x[i : i + chunk], x)
        # Index k, not k-1: the row itself sits at distance 0.
        out[i : i + chunk] = np.partition(d, k, axis=1)[:, k]
    return out


def _within_counts(points: np.ndarray, centers: np.ndarray, radii: np.ndarray,
                   chunk: int = 1024) -> np.ndarray:
    """For each point, how many balls B(center_i, radius_i) contain it."""
    counts = np.empty(len(points), dtype=np.int64)
    for i in range(0, len(points), chunk):
        d = _pairwise_sq(points[i : i + chunk], centers)
        counts[i : i + chunk] = (d <= radii[None, :]).sum(axis=1)
    return counts


def precision_recall(real_f: np.ndarray, fake_f: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019), exact k-NN.

    Precision: the fraction of fake samples inside the k-NN ball of at least one real sample
    (fidelity). Recall: the fraction of real samples inside the k-NN ball of at least one fake
    sample (diversity).

    Args:
        real_f: `(N, D)` real features.
        fake_f: `(M, D)` fake features.
        k: Neighbour whose distance sets each ball's radius.

    Returns:
        `(precision, recall)`, each in [0, 1].

    Raises:
        MetricError: On bad shapes or `k` out of range.
    """
    real, fake = _pair(real_f, fake_f)
    precision = float(np.mean(_within_counts(fake, real, _knn_radii(real, k)) > 0))
    recall = float(np.mean(_within_counts(real, fake, _knn_radii(fake, k)) > 0))
    return precision, recall


def density_coverage(real_f: np.ndarray, fake_f: np.ndarray, k: int = 5) -> tuple[float, float]:
    """Density and coverage (Naeem et al. 2020), exact k-NN.

    Density: the mean number of real k-NN balls containing each fake sample, divided by k
    (about 1 when the distributions match; above 1 when fakes crowd dense real regions).
    Coverage: the fraction of real samples whose k-NN ball contains at least one fake sample.

    Args:
        real_f: `(N, D)` real features.
        fake_f: `(M, D)` fake features.
        k: Neighbour whose distance sets each real ball's radius.

    Returns:
        `(density, coverage)`; density >= 0, coverage in [0, 1].

    Raises:
        MetricError: On bad shapes or `k` out of range.
    """
    real, fake = _pair(real_f, fake_f)
    radii = _knn_radii(real, k)
    density = float(_within_counts(fake, real, radii).sum() / (k * len(fake)))
    nearest = np.empty(len(real))
    for i in range(0, len(real), 1024):
        nearest[i : i + 1024] = _pairwise_sq(real[i : i + 1024], fake).min(axis=1)
    coverage = float(np.mean(nearest <= radii))
    return density, coverage


# --------------------------------------------------------------------------- 2-D mode metrics


def _mixture(dataset: Any) -> tuple[np.ndarray, float]:
    if isinstance(dataset, str):
        if dataset not in MIXTURES:
            raise MetricError(
                f"Unknown 2-D mixture {dataset!r}; pass 'ring8', 'grid25' or (centers, std)."
            )
        from rlhf_keras import data as data_lib

        centers, std = data_lib.mixture_modes(dataset)
        return np.asarray(centers, dtype=np.float64), float(std)
    if isinstance(dataset, (tuple, list)) and len(dataset) == 2:
        centers = np.asarray(dataset[0], dtype=np.float64)
        std = float(dataset[1])
        if centers.ndim == 2 and len(centers) >= 1 and std > 0:
            return centers, std
    raise MetricError(
        "dataset must be 'ring8', 'grid25' or (centers of shape (k, d), std > 0); got "
        f"{type(dataset).__name__}."
    )


def mode_metrics(samples: np.ndarray, dataset: Any) -> dict[str, float]:
    """PacGAN's mode-collapse metrics for samples of a Gaussian mixture.

    A sample is high quality when it lies within 3 standard deviations (Euclidean distance) of
    its nearest mode, and is then assigned to that mode.

    Args:
        samples: `(N, 2)` generated points (2,500 is the customary N).
        dataset: `"ring8"`, `"grid25"`, or `(centers (k, 2), std)`.

    Returns:
        `{"modes": modes with >= 1 high-quality sample, "high_quality": % of samples that are
        high quality, "reverse_kl": KL(q || p)}` where q is the histogram of high-quality
        samples over the modes and p is uniform. Empty modes get `KL_EPSILON` mass before
        normalising (they add ~0 to the sum); with no high-quality sample at all q is
        undefined and `reverse_kl` is `log(k)`, its value for a single-mode histogram.

    Raises:
        MetricError: If `samples` is not `(N, d)` matching the centers, or not finite.
    """
    centers, std = _mixture(dataset)
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != centers.shape[1] or len(x) < 1:
        raise MetricError(
            f"samples must be shaped (N, {centers.shape[1]}) for this mixture; got {x.shape}."
        )
    if not np.all(np.isfinite(x)):
        raise MetricError(
            "The samples hold NaN or infinite values (the GAN diverged); no metric can score them."
        )
    d2 = _pairwise_sq(x, centers)
    nearest = np.argmin(d2, axis=1)
    good = np.sqrt(d2[np.arange(len(x)), nearest]) <= HIGH_QUALITY_STDS * std
    counts = np.bincount(nearest[good], minlength=len(centers)).astype(np.float64)
    k = len(centers)
    if counts.sum() == 0:
        reverse_kl = math.log(k)
    else:
        q = (counts + KL_EPSILON) / (counts.sum() + k * KL_EPSILON)
        reverse_kl = float(np.sum(q * np.log(q * k)))
    return {
        "modes": int(np.count_nonzero(counts)),
        "high_quality": float(100.0 * good.mean()),
        "reverse_kl": max(float(reverse_kl), 0.0),
    }


# --------------------------------------------------------------------------- reward


def _is_points(gan: Any, data: Any) -> bool:
    if isinstance(data, str) and data in MIXTURES:
        return True
    if isinstance(data, (tuple, list)) and len(data) == 2 and np.ndim(data[0]) == 2:
        return True
    return tuple(getattr(gan, "data_shape", ())) == (2,) and not isinstance(data, np.ndarray)


def quality(gan: Any, data: Any, n: int | None = None, seed: int = 0,
            feature_model: Any = None) -> dict[str, float]:
    """The tuner's reward: one dict of metrics with a scalar `"score"` to maximise.

    * Images: `{"fid": FID, "score": -FID}` with n = 2,000 samples per side by default.
      FID on 2,000 samples is biased upwards compared with 10,000 and carries evaluation
      noise: two disjoint sets of 2,000 real MNIST images score 1.7 +- 0.2, and one GAN's FID
      varies by ~0.75% (coefficient of variation) across evaluation seeds
      (benchmarks/RESULTS.md). Compare trials at the same `n` and `seed`.
    * 2-D mixtures: `mode_metrics` plus `score = modes + high_quality / 100`, so capturing one
      more mode always beats any gain in sample quality, and quality breaks ties (n = 2,500).

    Args:
        gan: A `GAN` (anything with `generate(n, seed=)` and `data_shape`).
        data: Real images (an array), a source name/path (`"digits"`, an MNIST folder,
            `"ring8"`, `"grid25"`), or `(centers, std)` of a 2-D mixture.
        n: Samples to generate; None picks the defaults above.
        seed: Seed of the latent vectors (fixed, so trials are compared on the same noise).
        feature_model: Passed to `fid` for image data.

    Returns:
        The metrics, with `"score"` (higher is better).

    Raises:
        MetricError: If the data cannot be scored; see `fid` and `mode_metrics`.
    """
    if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2):
        raise MetricError(f"n must be None or an integer >= 2, got {n!r}.")
    if _is_points(gan, data):
        mixture = data
        if isinstance(data, str) and data not in MIXTURES:
            raise MetricError(
                f"2-D data {data!r} has no known modes; pass 'ring8', 'grid25' or (centers, std)."
            )
        samples = _generated(gan, int(n or DEFAULT_POINT_SAMPLES), seed)
        result: dict[str, float] = dict(mode_metrics(samples, mixture))
        result["score"] = result["modes"] + result["high_quality"] / 100.0
        return result
    if tuple(getattr(gan, "data_shape", ())) == (2,):
        raise MetricError(
            "The GAN makes 2-D points; score them against the mixture's modes: pass data= "
            "'ring8', 'grid25' or (centers, std) instead of an array."
        )
    value = fid(gan, data, n=int(n or DEFAULT_IMAGE_SAMPLES), feature_model=feature_model,
                seed=seed)
    return {"fid": value, "score": -value}


def evaluate(gan: Any, data: Any, n: int | None = None, seed: int = 0,
             feature_model: Any = None) -> dict[str, float]:
    """Every measure that applies to a GAN, for reports and `rlhf-keras evaluate`.

    `quality(...)`, plus for images: precision and recall (k=3), density and coverage (k=5) in
    the same feature space as FID, and for 28x28 digit data the classifier score.

    Args:
        gan: A `GAN`.
        data: A source name/path or real images, as for `quality`.
        n: Samples per side; None picks `quality`'s defaults.
        seed: Seed of the latent vectors and of the real subsample.
        feature_model: Passed to `fid`.

    Returns:
        The metrics by name.
    """
    result = dict(quality(gan, data, n=n, seed=seed, feature_model=feature_model))
    if "fid" not in result:
        return result
    n = int(n or DEFAULT_IMAGE_SAMPLES)
    if isinstance(data, (str, os.PathLike)):
        from rlhf_keras import data as data_lib

        real_images = _check_real_images(data_lib.load_arrays(os.fspath(data), split="train")[0])
    else:
        real_images = _check_real_images(data)
    extractor = _resolve_extractor(feature_model, data, real_images, seed)
    fake = _generated(gan, n, seed)
    real = _subsample(real_images, n, seed)
    real_f, fake_f = extractor(real), extractor(fake)
    result["precision"], result["recall"] = precision_recall(real_f, fake_f, k=3)
    result["density"], result["coverage"] = density_coverage(real_f, fake_f, k=5)
    if getattr(extractor, "kind", "") == "shipped":
        result["classifier_score"] = classifier_score(fake)
    return result


# --------------------------------------------------------------------------- callback


class FIDCallback(keras.callbacks.Callback):
    """Adds FID (or the 2-D mode metrics) to the epoch logs of `GAN.fit`.

    Every `every` epochs (and after the last one) it scores the model being trained with
    `quality(...)` on fixed latent vectors and writes `logs["fid"]` for image data, or
    `logs["modes"]`, `logs["high_quality"]`, `logs["reverse_kl"]` for 2-D mixtures, so they land
    in `History.history` and in TensorBoard. Put it BEFORE `keras.callbacks.TensorBoard` (and
    any `EarlyStopping` watching `fid`) in the callbacks list: callbacks see the logs in order.
    On epochs that are skipped the keys are absent, so `history["fid"]` has one entry per
    evaluated epoch.

    Args:
        real: What `quality` takes as `data`: real images, a source name/path, or a mixture.
        every: Evaluate every this many epochs.
        n: Samples per evaluation (2-D data: None or the given n, default 2,500 then).
        seed: Seed of the latent vectors, the same at every evaluation.
        feature_model: Passed to `fid`.
    """

    def __init__(self, real: Any, every: int = 1, n: int = DEFAULT_IMAGE_SAMPLES, seed: int = 0,
                 feature_model: Any = None) -> None:
        super().__init__()
        if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
            raise MetricError(f"every must be an integer >= 1, got {every!r}.")
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
            raise MetricError(f"n must be an integer >= 2, got {n!r}.")
        self.real = real
        self.every = int(every)
        self.n = int(n)
        self.seed = seed
        self.feature_model = feature_model

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        last = (self.params or {}).get("epochs")
        if (epoch + 1) % self.every and epoch + 1 != last:
            return
        result = quality(self.model, self.real, n=self.n, seed=self.seed,
                         feature_model=self.feature_model)
        if logs is not None:
            logs.update({k: float(v) for k, v in result.items() if k != "score"})


__all__ = [
    "DEFAULT_IMAGE_SAMPLES",
    "DEFAULT_POINT_SAMPLES",
    "FIDCallback",
    "FeatureExtractor",
    "MetricError",
    "classifier_score",
    "density_coverage",
    "evaluate",
    "feature_extractor",
    "fid",
    "frechet_distance",
    "mode_metrics",
    "precision_recall",
    "quality",
]
