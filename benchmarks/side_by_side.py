"""The README's picture: two GANs' samples side by side, each titled with its measures.

    rlhf-keras train --data mnist --arch seed --steps 20000 --out /tmp/defaults
    rlhf-keras finetune --budget 20000 --dir /tmp/tuned
    python benchmarks/side_by_side.py /tmp/defaults/model.keras /tmp/tuned/rlhf/best_model.keras \\
        --labels "defaults, 20,000 steps" "rlhf finetune, 20,000 steps" \\
        --out benchmarks/images/defaults_vs_tuned.png

Both draw 64 samples from the same latent vectors (`--seed`); the measures are
`metrics.evaluate` against the embedded MNIST test split, printed and written in the titles.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from rlhf_keras import metrics  # noqa: E402
from rlhf_keras.board import image_grid  # noqa: E402
from rlhf_keras.gan import load_gan  # noqa: E402
from rlhf_keras.reports import _pyplot, as_images  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs=2, help="Two saved GANs (.keras).")
    parser.add_argument("--labels", nargs=2, required=True)
    parser.add_argument("--data", default="mnist")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 5.6))
    for ax, path, label in zip(axes, args.models, args.labels, strict=True):
        gan = load_gan(path)
        measures = metrics.evaluate(gan, args.data, seed=0)
        print(label, {k: round(float(v), 3) for k, v in measures.items()}, flush=True)
        images = as_images(gan.generate(64, seed=args.seed))
        grid = image_grid(images, cols=8)
        ax.imshow(grid[..., 0] if grid.shape[-1] == 1 else grid, cmap="gray")
        ax.set_title(f"{label}\nFID {measures['fid']:.1f}, coverage {measures['coverage']:.2f}, "
                     f"classifier score {measures['classifier_score']:.2f}", fontsize=10)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"Wrote {args.out}")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
