"""How fast FID is, and how noisy its default-size estimate is.

1. Speed: FID between 10,000 and 10,000 MNIST images (the real test split against a shuffled
   copy of itself), feature extraction included, cold (first call: loads the network and
   traces the forward pass) and warm (best of 3).
2. Noise floor: a `seed_mlp` GAN trained for one epoch on `digits` (seed 0) is scored with
   `metrics.quality` (FID on the default 2,000 samples) under 5 evaluation seeds; the
   coefficient of variation (std / mean) says how far apart two FIDs must be to mean anything.

Run from the repository root::

    python benchmarks/fid_speed.py

It prints a markdown snippet (and writes it to `--out` when given).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from rlhf_keras import data as data_lib  # noqa: E402
from rlhf_keras import metrics  # noqa: E402
from rlhf_keras.architectures import seed_mlp  # noqa: E402
from rlhf_keras.gan import GAN  # noqa: E402

MNIST_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"
COMMAND = "python benchmarks/fid_speed.py"


def time_fid_10k(mnist_dir: Path) -> dict[str, float]:
    """Seconds for FID(10k real, 10k shuffled real), features included."""
    x, _, _ = data_lib.load_arrays(mnist_dir, split="test")
    other = x[np.random.default_rng(0).permutation(len(x))]
    start = time.perf_counter()
    value = metrics.fid(other, x, n=10000, seed=0)
    cold = time.perf_counter() - start
    warm = []
    for _ in range(3):
        start = time.perf_counter()
        metrics.fid(other, x, n=10000, seed=0)
        warm.append(time.perf_counter() - start)
    extractor = metrics.shipped_extractor()
    start = time.perf_counter()
    extractor(x)
    features = time.perf_counter() - start
    return {"cold_s": cold, "warm_s": min(warm), "features_s": features, "fid": value}


def noise_floor(real: str | Path, seeds: int = 5, n: int | None = None) -> dict[str, float]:
    """FID of one fixed generator under `seeds` evaluation seeds, at the default size."""
    keras.utils.set_random_seed(0)
    x, _, info = data_lib.load_arrays("digits")
    generator, discriminator = seed_mlp(info.shape)
    gan = GAN(generator, discriminator, seed=0)
    gan.compile()
    gan.fit(x, batch_size=64, epochs=1, shuffle=False, verbose=0)
    values = [metrics.quality(gan, os.fspath(real), n=n, seed=s)["fid"] for s in range(seeds)]
    mean, std = float(np.mean(values)), float(np.std(values, ddof=1))
    return {"mean": mean, "std": std, "cv": std / mean, "values": values}


def real_noise_floor(mnist_dir: Path, seeds: int = 5) -> dict[str, float]:
    """FID between two disjoint random sets of 2,000 real MNIST images, under `seeds` seeds.

    The floor a perfect generator would hit at the default size.
    """
    x, _, _ = data_lib.load_arrays(mnist_dir, split="test")
    n = metrics.DEFAULT_IMAGE_SAMPLES
    values = []
    for s in range(seeds):
        order = np.random.default_rng(s).permutation(len(x))
        values.append(metrics.fid(x[order[:n]], x[order[n : 2 * n]], n=n))
    mean, std = float(np.mean(values)), float(np.std(values, ddof=1))
    return {"mean": mean, "std": std, "cv": std / mean, "values": values}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", default=str(MNIST_DIR), help="MNIST IDX folder")
    parser.add_argument("--out", default=None, help="also write the snippet to this file")
    args = parser.parse_args()
    lines = [
        "## Quality metrics (`rlhf_keras.metrics`)",
        "",
        f"Command: `{COMMAND}`  ",
        f"Machine: {os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}, "
        f"no GPU; TensorFlow/Keras {keras.__version__}.",
        "",
    ]
    mnist_dir = Path(args.mnist)
    if (mnist_dir / "t10k-images-idx3-ubyte.gz").exists():
        t = time_fid_10k(mnist_dir)
        lines += [
            "| FID 10k vs 10k MNIST (features included) | seconds |",
            "| --- | --- |",
            f"| first call (load network, trace) | {t['cold_s']:.2f} |",
            f"| later calls (best of 3) | {t['warm_s']:.2f} |",
            f"| of which: features of 10k images | {t['features_s']:.2f} |",
            "",
            f"FID(MNIST test split, shuffled copy of itself) = {t['fid']:.3g} (0 expected).",
            "",
        ]
    sources: list[tuple[str, str | Path]] = [("digits (1,797 real)", "digits")]
    if (mnist_dir / "t10k-images-idx3-ubyte.gz").exists():
        sources.append(("MNIST test split (2,000 of 10,000 real, by seed)", mnist_dir))
    lines += [
        f"Noise floor of `quality(gan, real)` (default n = {metrics.DEFAULT_IMAGE_SAMPLES}): "
        "one `seed_mlp` GAN trained 1 epoch on `digits` (seed 0), FID under evaluation seeds "
        "0-4.",
        "",
        "| real data | mean FID | std | coefficient of variation |",
        "| --- | --- | --- | --- |",
    ]
    for label, real in sources:
        r = noise_floor(real)
        lines.append(f"| {label} | {r['mean']:.2f} | {r['std']:.3f} | {100 * r['cv']:.2f}% |")
    lines += [
        "",
        "With `digits` as the real side every seed uses the same 1,797 real images and the "
        "1-epoch generator is nearly collapsed, so only the fake side moves, and barely; with "
        "MNIST the 2,000 real images are redrawn per seed too, the usual setting.",
    ]
    if (mnist_dir / "t10k-images-idx3-ubyte.gz").exists():
        r = real_noise_floor(mnist_dir)
        lines += [
            "",
            "Low end (a perfect generator): FID between two disjoint random sets of 2,000 real "
            f"MNIST images, seeds 0-4: mean {r['mean']:.2f}, std {r['std']:.3f} "
            f"(CV {100 * r['cv']:.1f}%).",
        ]
    snippet = "\n".join(lines) + "\n"
    print(snippet)
    if args.out:
        Path(args.out).write_text(snippet)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
