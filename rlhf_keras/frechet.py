"""FID: the Frechet distance between feature statistics of real and generated images.

Heusel et al. (2017) with the project's small MNIST CNN (`rlhf_keras.feature_net`) instead of
Inception, so values are comparable within the project only. Lower is better.

Which features `fid` uses, when the caller passes none (`feature_model=None`):

* 28x28x1 digit data (`"mnist"`, `"digits"`, a folder of MNIST IDX files, 28x28 arrays): the
  network shipped in the package.
* Any other images: a randomly initialised CNN embedding with fixed weights (Naeem et al. 2020
  show random embeddings work for fidelity/diversity metrics).

`fid` never trains anything. A network trained on other labelled images is an explicit step,
`train_feature_extractor(...)` (cached on disk), whose result the caller passes as
`feature_model=` to `fid`, `quality`, `evaluate` or `FIDCallback`.

The shipped classifier's softmax also gives `classifier_score` (an "Inception score" for digits).
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
from rlhf_keras.metric_inputs import (
    MetricError,
    check_count,
    check_pair,
    check_real_images,
    generated,
    subsample,
)

__all__ = [
    "CACHE_ENV",
    "DIGIT_SOURCES",
    "FeatureExtractor",
    "cache_dir",
    "classifier_score",
    "feature_extractor",
    "fid",
    "frechet_distance",
    "shipped_classifier",
    "shipped_extractor",
    "train_feature_extractor",
]

CACHE_ENV = "RLHF_KERAS_CACHE"
# Sources whose images are MNIST-like 28x28 digits: the shipped network fits them.
DIGIT_SOURCES = ("mnist", "digits")
DIGIT_SHAPE = (28, 28, 1)
FEATURE_BATCH = 2000
# One random embedding for every evaluation, so FIDs on the same data stay comparable.
RANDOM_EMBEDDING_SEED = fnet.DEFAULT_SEED


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
    a, b = check_pair(real_features, fake_features, ("real_features", "fake_features"))
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
                 batch_size: int = FEATURE_BATCH) -> None:
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
        x = as_images(images, self.input_shape)
        out = [np.asarray(self._forward(x[i : i + self.batch_size]))
               for i in range(0, len(x), self.batch_size)]
        return np.concatenate(out).reshape(len(x), -1)

    def __repr__(self) -> str:
        return f"FeatureExtractor(kind={self.kind!r}, key={self.key!r})"


# Loaded or built once per process: the shipped network and the random embeddings by shape.
_SHIPPED: dict[str, Any] = {}
_RANDOM: dict[tuple, FeatureExtractor] = {}


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


def random_extractor(shape: tuple[int, ...], seed: int = RANDOM_EMBEDDING_SEED
                     ) -> FeatureExtractor:
    """A seeded random CNN embedding for images of `shape`, built once per process."""
    key = (tuple(int(d) for d in shape), int(seed))
    if key not in _RANDOM:
        model = fnet.random_embedding(key[0], seed=key[1])
        _RANDOM[key] = FeatureExtractor(model, kind="random", key=f"random:{key[0]}:{key[1]}")
    return _RANDOM[key]


def cache_dir() -> Path:
    """Root of the on-disk cache: `$RLHF_KERAS_CACHE`, else `~/.cache/rlhf_keras`."""
    root = os.environ.get(CACHE_ENV)
    return Path(root).expanduser() if root else Path.home() / ".cache" / "rlhf_keras"


def feature_extractor(info_or_name: Any, seed: int = RANDOM_EMBEDDING_SEED) -> FeatureExtractor:
    """The feature network `fid` uses for a dataset when the caller passes none. Never trains.

    * 28x28x1 digits (`"mnist"`, `"digits"`, a folder of 28x28 IDX files): the shipped network.
    * Any other image data: a randomly initialised CNN embedding with weights fixed by `seed`.
      For a network trained on labelled data, call `train_feature_extractor` and pass its
      result as `feature_model=`.

    Args:
        info_or_name: A `data.DataInfo` or a source accepted by `data.load_arrays`.
        seed: Seed of the random embedding.

    Returns:
        A `FeatureExtractor` (callable images -> `(N, 128)` features).

    Raises:
        MetricError: If the data are 2-D points (use `mode_metrics`) or not images.
    """
    from rlhf_keras import data as data_lib

    if isinstance(info_or_name, data_lib.DataInfo):
        info = info_or_name
    else:
        info = data_lib.load_arrays(info_or_name, split="train")[2]
    shape = tuple(info.shape)
    if info.kind != "image" or len(shape) != 3:
        raise MetricError(
            f"{info.name!r} holds {info.kind} of shape {shape}, not images; FID needs images. "
            "For 2-D mixtures use mode_metrics(samples, 'ring8') or quality(gan, 'ring8')."
        )
    if shape == DIGIT_SHAPE and _is_digit_source(info.name):
        return shipped_extractor()
    return random_extractor(shape, seed)


def train_feature_extractor(
    data: Any,
    y: np.ndarray | None = None,
    num_classes: int | None = None,
    epochs: int = 10,
    seed: int = fnet.DEFAULT_SEED,
    cache: bool = True,
) -> FeatureExtractor:
    """Trains a feature network on labelled images (or loads it from the cache): an explicit step.

    The network has the shipped one's design (`feature_net.build_feature_net`); its `"features"`
    layer is the embedding. Pass the result as `feature_model=` to `fid`, `quality`, `evaluate`
    or `FIDCallback`. Trained networks are cached as `<cache>/feature_nets/<key>.keras`, the key
    naming the data (source name, shape, size, or a digest of the arrays), `epochs` and `seed`;
    the cache root is `$RLHF_KERAS_CACHE` or `~/.cache/rlhf_keras`.

    Args:
        data: A source name/path for `data.load_arrays` whose samples are labelled images, or
            an array of images in [-1, 1] (then `y` is required).
        y: Integer labels of the array `data`; None when `data` is a source.
        num_classes: Number of classes; defaults to the source's, else `max(y) + 1`.
        epochs: Training epochs.
        seed: Seed of the training.
        cache: Whether to load from / save to the on-disk cache.

    Returns:
        A `FeatureExtractor` of kind `"trained"`.

    Raises:
        MetricError: If the data are not labelled images.
    """
    from rlhf_keras import data as data_lib

    if isinstance(data, (str, os.PathLike)):
        if y is not None:
            raise MetricError("y= is only for an array of images; a source brings its labels.")
        x, y, info = data_lib.load_arrays(data, split="train")
        if info.kind != "image" or len(info.shape) != 3 or y is None:
            raise MetricError(
                f"{info.name!r} holds {'labelled' if y is not None else 'unlabelled'} "
                f"{info.kind} of shape {info.shape}; a feature network trains on labelled images. "
                "Without labels, fid() uses a seeded random embedding on its own."
            )
        num_classes = num_classes or info.num_classes
        name = info.name
        identity = f"{info.name}|{info.shape}|{info.size}"
    else:
        if y is None:
            raise MetricError(
                "train_feature_extractor needs labels: pass y= (integer classes) with the images, "
                "or a labelled data source name."
            )
        x = check_real_images(data)
        name = "arrays"
        digest = hashlib.sha1(np.ascontiguousarray(x).tobytes())
        digest.update(np.ascontiguousarray(np.asarray(y, dtype=np.int64)).tobytes())
        identity = digest.hexdigest()
    x = np.asarray(x)
    key = _cache_key(name, tuple(x.shape[1:]), len(x), f"{identity}|{epochs}|{seed}")
    path = cache_dir() / "feature_nets" / f"{key}.keras"
    if cache and path.is_file():
        classifier = fnet.load_feature_net(path)
    else:
        try:
            classifier = fnet.train_feature_net(x, np.asarray(y), num_classes, epochs=epochs,
                                                seed=seed)
        except ValueError as err:
            raise MetricError(str(err)) from err
        if cache:
            path.parent.mkdir(parents=True, exist_ok=True)
            classifier.save(path)
    return FeatureExtractor(fnet.embedding(classifier), kind="trained", key=f"trained:{key}")


def _is_digit_source(name: str) -> bool:
    if name in DIGIT_SOURCES:
        return True
    # A folder of IDX files is MNIST's own layout; 28x28 there means handwritten digits.
    return Path(name).expanduser().is_dir()


def _cache_key(name: str, shape: tuple[int, ...], size: int, identity: str) -> str:
    stem = "".join(c if c.isalnum() else "_" for c in Path(name).name or name)[:40]
    digest = hashlib.sha1(identity.encode()).hexdigest()[:10]
    return f"{stem}_{'x'.join(map(str, shape))}_{size}_{digest}"


def resolve_extractor(feature_model: Any, real: Any, real_images: np.ndarray | None
                      ) -> FeatureExtractor | Callable[[np.ndarray], np.ndarray]:
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
        return feature_extractor(os.fspath(real))
    shape = tuple(real_images.shape[1:]) if real_images is not None else ()
    if shape in ((784,), (28, 28), DIGIT_SHAPE):
        return shipped_extractor()
    if len(shape) == 3:
        return random_extractor(shape)
    raise MetricError(
        f"No feature network fits real samples of shape {shape}: pass images shaped "
        "(N, height, width, channels), the data source name as `real`, or feature_model=."
    )


def as_images(images: Any, shape: tuple[int, ...] = DIGIT_SHAPE) -> np.ndarray:
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
    batch_size: int = FEATURE_BATCH,
) -> float:
    """Frechet distance between the feature statistics of real and generated images.

    Args:
        gan_or_samples: A `GAN` (anything with `generate(n, seed=)`) or an array of generated
            images in [-1, 1]; `(N, 784)` samples are read as 28x28x1.
        real: Real images in [-1, 1] (an array), or a source name/path for
            `data.load_arrays` (e.g. `"mnist"`, `"digits"`, `"../shared/data/mnist"`).
        n: Samples per side: `n` are generated from a GAN; arrays larger than `n` are
            subsampled (without replacement, by `seed`).
        feature_model: None (picked from `real` without training: the shipped MNIST network
            for 28x28x1 digits, else a seeded random CNN embedding; see `feature_extractor`),
            a `FeatureExtractor` (e.g. from `train_feature_extractor`), a `keras.Model` (a
            `feature_net` classifier is cut at its `"features"` layer; any other model's
            output is used as is), or a callable images -> features.
        seed: Seed of the latent vectors and of the subsampling; None draws fresh ones.
        batch_size: Images per forward pass of the feature network.

    Returns:
        The FID (>= 0; lower is better).

    Raises:
        MetricError: If `n < 2`, the images have the wrong shape or range (e.g. [0, 255]), or
            the generated samples are not finite.
    """
    n = check_count(n)
    real_images = None
    real_key: tuple | None = None
    if isinstance(real, (str, os.PathLike)):
        real_key = (os.fspath(real), n, seed)
    else:
        real_images = check_real_images(real)
    extractor = resolve_extractor(feature_model, real, real_images)
    if isinstance(extractor, FeatureExtractor):
        extractor.batch_size = int(batch_size)
    fake = generated(gan_or_samples, n, seed)
    if real_key is not None:
        cache_key = (*real_key, getattr(extractor, "key", id(extractor)))
        real_features = _REAL_FEATURES.get(cache_key)
        if real_features is None:
            from rlhf_keras import data as data_lib

            x, _, _ = data_lib.load_arrays(real_key[0], split="train")
            real_features = extractor(subsample(check_real_images(x), n, seed))
            _REAL_FEATURES[cache_key] = real_features
    else:
        real_features = extractor(subsample(real_images, n, seed))
    return frechet_distance(real_features, extractor(fake))


# --------------------------------------------------------------------------- classifier score


def classifier_score(samples: np.ndarray, classifier: keras.Model | None = None,
                     batch_size: int = FEATURE_BATCH) -> float:
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
    x = as_images(generated(samples, len(np.asarray(samples)), None), shape)
    probs = np.concatenate(
        [np.asarray(model(x[i : i + batch_size], training=False), dtype=np.float64)
         for i in range(0, len(x), batch_size)]
    )
    probs = np.clip(probs, 1e-12, 1.0)
    marginal = probs.mean(axis=0, keepdims=True)
    kl = np.sum(probs * (np.log(probs) - np.log(marginal)), axis=1)
    return float(np.exp(np.mean(kl)))
