"""Checks shared by every metric: the error type, feature sets, real images, generated samples.

Each metric module (`frechet`, `knn`, `modes`) validates its inputs through these helpers, so a
bad input gets the same clear message whichever measure it reaches first.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class MetricError(ValueError):
    """Inputs a metric cannot use; the message says what was wrong and how to fix it."""


def check_count(n: Any, name: str = "n") -> int:
    """`n` as an int, if it is an integer >= 2 (a covariance or a k-NN needs two samples)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise MetricError(f"{name} must be an integer >= 2, got {n!r}.")
    return int(n)


def check_features(x: Any, name: str) -> np.ndarray:
    """A `(samples, features)` array of finite values with at least 2 rows, as float64."""
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


def check_pair(
    real_f: Any, fake_f: Any, names: tuple[str, str] = ("real_f", "fake_f")
) -> tuple[np.ndarray, np.ndarray]:
    """Both feature sets, checked, as float64; they must have the same width."""
    real = check_features(real_f, names[0])
    fake = check_features(fake_f, names[1])
    if real.shape[1] != fake.shape[1]:
        raise MetricError(
            f"Feature sets differ in width: real {real.shape}, fake {fake.shape}. Extract both "
            "with the same feature network."
        )
    return real, fake


def check_real_images(real: Any) -> np.ndarray:
    """Real images as float32, if there are at least 2, finite and scaled to [-1, 1]."""
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


def subsample(x: np.ndarray, n: int, seed: int | None) -> np.ndarray:
    """At most `n` rows of `x`, drawn without replacement by `seed`, in their original order."""
    if len(x) <= n:
        return x
    rng = np.random.default_rng(seed)
    return x[np.sort(rng.choice(len(x), size=n, replace=False))]


def generated(gan_or_samples: Any, n: int, seed: int | None) -> np.ndarray:
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
        samples = subsample(samples, n, seed)
    if not np.all(np.isfinite(samples)):
        raise MetricError(
            "The generated samples hold NaN or infinite values (the GAN diverged); no metric "
            "can score them. Lower the learning rates or restart training."
        )
    return samples
