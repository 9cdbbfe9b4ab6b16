"""Fidelity and diversity from k-nearest-neighbour balls in a feature space.

* Precision and recall (Kynkaanniemi et al. 2019, "Improved Precision and Recall Metric for
  Assessing Generative Models").
* Density and coverage (Naeem et al. 2020, "Reliable Fidelity and Diversity Metrics for
  Generative Models").

Each real (or fake) sample gets a ball whose radius is the distance to its k-th nearest
neighbour in its own set; the measures count which samples of the other set fall in which balls.
Neighbour searches are exact, by scikit-learn's `NearestNeighbors`.
"""

from __future__ import annotations

import numpy as np
from sklearn.neighbors import NearestNeighbors

from rlhf_keras.metric_inputs import MetricError, check_pair

__all__ = ["density_coverage", "precision_recall"]

# Queries per radius search: bounds the memory of the neighbour lists of one chunk.
_CHUNK = 512


def _knn_radii(x: np.ndarray, k: int) -> np.ndarray:
    """Distance from each row to its k-th nearest other row."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k < len(x):
        raise MetricError(f"k must be in [1, {len(x) - 1}] for {len(x)} samples, got k={k!r}.")
    distances, _ = NearestNeighbors(n_neighbors=int(k) + 1).fit(x).kneighbors(x)
    # Column k, not k-1: each row is its own nearest neighbour, at distance 0.
    return distances[:, int(k)]


def _ball_counts(points: np.ndarray, centers: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """For each point, how many balls B(center_i, radius_i) contain it."""
    index = NearestNeighbors().fit(centers)
    widest = float(radii.max())
    counts = np.zeros(len(points), dtype=np.int64)
    for start in range(0, len(points), _CHUNK):
        # Every ball that can hold the point lies within the widest radius; keep those whose
        # own radius reaches it.
        distances, neighbours = index.radius_neighbors(
            points[start : start + _CHUNK], radius=widest, sort_results=False
        )
        rows = np.repeat(np.arange(len(neighbours)), [len(n) for n in neighbours])
        if not len(rows):
            continue
        inside = np.concatenate(distances) <= radii[np.concatenate(neighbours)]
        counts[start : start + len(neighbours)] = np.bincount(
            rows[inside], minlength=len(neighbours)
        )
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
    real, fake = check_pair(real_f, fake_f)
    real_radii, fake_radii = _knn_radii(real, k), _knn_radii(fake, k)
    precision = float(np.mean(_ball_counts(fake, real, real_radii) > 0))
    recall = float(np.mean(_ball_counts(real, fake, fake_radii) > 0))
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
    real, fake = check_pair(real_f, fake_f)
    radii = _knn_radii(real, k)
    density = float(_ball_counts(fake, real, radii).sum() / (k * len(fake)))
    nearest_fake, _ = NearestNeighbors(n_neighbors=1).fit(fake).kneighbors(real)
    coverage = float(np.mean(nearest_fake[:, 0] <= radii))
    return density, coverage
