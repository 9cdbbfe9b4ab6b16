"""How far a saved GAN's FID moves with the evaluation seed alone, at every quality level.

`metrics.quality` (what the search ranks trials by) and `metrics.evaluate` (what the CLI
prints) draw 2,000 latent vectors and 2,000 of the real images with one seed. This scores each
saved GAN under several seeds and prints, per model, the FIDs, their mean and standard
deviation, and the coefficient of variation (std / mean): the smallest difference between two
FIDs that means something, and how much a target such as "FID <= 25" rests on the seed.

Run from the repository root::

    python benchmarks/fid_noise.py MODEL.keras [MODEL.keras ...] --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from rlhf_keras import metrics  # noqa: E402
from rlhf_keras.gan import load_gan  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="Saved GANs (.keras).")
    parser.add_argument("--data", default="mnist", help="Real data (default: embedded MNIST).")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    args = parser.parse_args()
    print(f"| model | FID, seeds {', '.join(map(str, args.seeds))} | mean | std | CV |")
    print("|---|---|---|---|---|")
    for path in args.models:
        gan = load_gan(path)
        fids = np.array([metrics.quality(gan, args.data, seed=s)["fid"] for s in args.seeds])
        print(f"| `{path}` | {', '.join(f'{f:.2f}' for f in fids)} | {fids.mean():.2f} | "
              f"{fids.std():.2f} | {100 * fids.std() / fids.mean():.1f}% |", flush=True)


if __name__ == "__main__":
    main()
