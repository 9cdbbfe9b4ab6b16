"""Sample-quality metrics, the evidence room's judge: `quality`, `evaluate` and `FIDCallback`.

`quality(gan, data)` is the single number the tuner maximises; `evaluate` adds every other
measure that applies. The measures themselves live in one module each, by what they measure,
and are re-exported here (`rlhf_keras.metrics` is the place to import them from):

* `rlhf_keras.frechet`: FID (Heusel et al. 2017) in the feature space of the project's small
  MNIST CNN (`rlhf_keras.feature_net`), not Inception, so values are comparable within the
  project only; the feature networks; the classifier score. Lower FID is better.
* `rlhf_keras.knn`: precision/recall (Kynkaanniemi et al. 2019) and density/coverage (Naeem et
  al. 2020) on any features.
* `rlhf_keras.modes`: PacGAN's mode metrics for the 2-D mixtures `"ring8"` and `"grid25"`.
"""

from __future__ import annotations

import os
from typing import Any

import keras
import numpy as np

from rlhf_keras.frechet import (
    CACHE_ENV,
    DIGIT_SOURCES,
    FeatureExtractor,
    cache_dir,
    classifier_score,
    feature_extractor,
    fid,
    frechet_distance,
    resolve_extractor,
    shipped_classifier,
    shipped_extractor,
    train_feature_extractor,
)
from rlhf_keras.knn import density_coverage, precision_recall
from rlhf_keras.metric_inputs import (
    MetricError,
    check_real_images,
    generated,
    subsample,
)
from rlhf_keras.modes import HIGH_QUALITY_STDS, KL_EPSILON, MIXTURES, mode_metrics

# Samples used by `quality` when `n` is not given. 2,000 images keep one evaluation at ~1 s; the
# resulting FID's noise over evaluation seeds is measured by benchmarks/fid_speed.py and
# benchmarks/fid_noise.py and recorded in benchmarks/RESULTS.md.
DEFAULT_IMAGE_SAMPLES = 2000
DEFAULT_POINT_SAMPLES = 2500


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
      moves by a standard deviation of 1-3 points across evaluation seeds, whatever its level
      (FID 18 to 215; benchmarks/fid_noise.py in benchmarks/RESULTS.md). Compare trials at
      the same `n` and `seed`.
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
        samples = generated(gan, int(n or DEFAULT_POINT_SAMPLES), seed)
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

        real_images = check_real_images(data_lib.load_arrays(os.fspath(data), split="train")[0])
    else:
        real_images = check_real_images(data)
    extractor = resolve_extractor(feature_model, data, real_images)
    fake = generated(gan, n, seed)
    real = subsample(real_images, n, seed)
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
    "CACHE_ENV",
    "DEFAULT_IMAGE_SAMPLES",
    "DEFAULT_POINT_SAMPLES",
    "DIGIT_SOURCES",
    "FIDCallback",
    "FeatureExtractor",
    "HIGH_QUALITY_STDS",
    "KL_EPSILON",
    "MIXTURES",
    "MetricError",
    "cache_dir",
    "classifier_score",
    "density_coverage",
    "evaluate",
    "feature_extractor",
    "fid",
    "frechet_distance",
    "mode_metrics",
    "precision_recall",
    "quality",
    "shipped_classifier",
    "shipped_extractor",
    "train_feature_extractor",
]
