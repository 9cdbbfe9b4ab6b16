"""Trajectories of fixed points of the search space: the first article's MLP on MNIST.

Trains one GAN with fixed hyperparameters and measures FID, coverage and classifier score
every `--every` steps, to see where a fixed configuration peaks and whether it degrades.

    python benchmarks/fixed_points.py "beta_1=0.0" --steps 10000 --every 1000
    python benchmarks/fixed_points.py "g_lr=1e-3,d_lr=2e-4" --steps 2000 --every 500
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from rlhf_keras import GAN, architectures, data, metrics  # noqa: E402

DEFAULTS = {"g_lr": 2e-4, "d_lr": 2e-4, "beta_1": 0.5, "g_width": 1.0, "d_width": 1.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("point", help="Changes to the articles' defaults, e.g. 'beta_1=0.0'.")
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--every", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    point = dict(DEFAULTS)
    for item in filter(None, args.point.split(",")):
        name, value = item.split("=")
        point[name] = float(value)
    keras.utils.set_random_seed(args.seed)
    dataset, _ = data.load("mnist", batch_size=64, seed=args.seed, shape=(784,))
    generator, discriminator = architectures.seed_mlp(data_shape=(784,), latent_dim=100)
    gan = GAN(architectures.scale_widths(generator, point["g_width"]),
              architectures.scale_widths(discriminator, point["d_width"]), latent_dim=100,
              seed=args.seed)
    gan.compile(g_optimizer=keras.optimizers.Adam(point["g_lr"], beta_1=point["beta_1"]),
                d_optimizer=keras.optimizers.Adam(point["d_lr"], beta_1=point["beta_1"]))
    start = time.time()
    for block in range(args.steps // args.every):
        gan.fit(dataset.repeat(), steps_per_epoch=args.every, epochs=1, verbose=0)
        measures = metrics.evaluate(gan, "mnist", seed=0)
        print(f"{args.point} step {(block + 1) * args.every} ({time.time() - start:.0f} s): "
              f"FID {measures['fid']:.1f}, coverage {measures['coverage']:.3f}, "
              f"classifier score {measures['classifier_score']:.2f}", flush=True)


if __name__ == "__main__":
    main()
