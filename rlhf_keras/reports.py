"""Pictures of a GAN's output: sample grids for images, scatter plots for 2-D points."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np


def as_images(samples: np.ndarray) -> np.ndarray | None:
    """Samples as `(n, h, w, c)` images in [-1, 1], or None when they are not images.

    Flat samples whose size is a perfect square (784 -> 28x28) are treated as grayscale images.
    """
    samples = np.asarray(samples)
    if samples.ndim == 4:
        return samples
    if samples.ndim == 3:
        return samples[..., None]
    if samples.ndim == 2 and samples.shape[1] > 3:
        side = math.isqrt(samples.shape[1])
        if side * side == samples.shape[1]:
            return samples.reshape(-1, side, side, 1)
    return None


def save_samples(
    samples: np.ndarray,
    path: str | os.PathLike,
    real: np.ndarray | None = None,
    title: str | None = None,
) -> Path:
    """Writes a PNG: a grid of generated images, or generated points over the real ones.

    Args:
        samples: Generated samples, `(n, *data_shape)`.
        path: Where to write the PNG.
        real: Real samples to draw beneath 2-D points (ignored for images).
        title: Optional figure title.

    Returns:
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = as_images(samples)
    if images is not None:
        n = min(len(images), 64)
        cols = min(8, n)
        rows = math.ceil(n / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(cols, rows), squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        for ax, image in zip(axes.flat, images[:n], strict=False):
            image = (np.clip(image, -1.0, 1.0) + 1.0) / 2.0
            if image.shape[-1] == 1:
                ax.imshow(image[..., 0], cmap="gray", vmin=0.0, vmax=1.0)
            else:
                ax.imshow(image)
        fig.subplots_adjust(wspace=0.05, hspace=0.05)
    else:
        points = np.asarray(samples).reshape(len(samples), -1)
        fig, ax = plt.subplots(figsize=(5, 5))
        if real is not None:
            real = np.asarray(real).reshape(len(real), -1)
            ax.scatter(real[:, 0], real[:, 1], s=2, c="tab:blue", alpha=0.3, label="real")
        ax.scatter(points[:, 0], points[:, 1], s=2, c="tab:red", alpha=0.5, label="generated")
        ax.set_aspect("equal")
        ax.legend(loc="upper right")
    if title:
        fig.suptitle(title)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    os.replace(tmp, path)  # a reader never sees a half-written PNG
    return path
