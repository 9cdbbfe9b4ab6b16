"""PacGAN's mode-collapse metrics for samples of a Gaussian mixture (Lin et al. 2018).

For the 2-D sets `"ring8"` and `"grid25"` (or any `(centers, std)` mixture): how many modes the
generator reaches, what share of its samples sit on a mode, and how evenly they spread.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn.neighbors import NearestNeighbors

from rlhf_keras.metric_inputs import MetricError

__all__ = ["HIGH_QUALITY_STDS", "KL_EPSILON", "MIXTURES", "mode_metrics"]

MIXTURES = ("ring8", "grid25")
# A sample is "high quality" within this many standard deviations of its nearest mode (PacGAN).
HIGH_QUALITY_STDS = 3.0
# Empty modes get this much probability mass before normalising, so the log stays finite.
KL_EPSILON = 1e-10


def mixture(dataset: Any) -> tuple[np.ndarray, float]:
    """`(centers, std)` of a mixture given by name or as a pair."""
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
    centers, std = mixture(dataset)
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != centers.shape[1] or len(x) < 1:
        raise MetricError(
            f"samples must be shaped (N, {centers.shape[1]}) for this mixture; got {x.shape}."
        )
    if not np.all(np.isfinite(x)):
        raise MetricError(
            "The samples hold NaN or infinite values (the GAN diverged); no metric can score them."
        )
    distance, nearest = NearestNeighbors(n_neighbors=1).fit(centers).kneighbors(x)
    good = distance[:, 0] <= HIGH_QUALITY_STDS * std
    counts = np.bincount(nearest[good, 0], minlength=len(centers)).astype(np.float64)
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
