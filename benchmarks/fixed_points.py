"""Trajectories of fixed points and hand schedules of the search space: the article's MLP on MNIST.

Trains one GAN and measures FID, coverage and classifier score every `--every` steps, to see
where a configuration peaks, whether it degrades, and what a schedule changes. A point is a list
of changes to the articles' defaults; a schedule is phases `point@steps` separated by `;`, each
phase changing the learning rates from then on (beta_1, widths, `g_ema`, the momentum of the
generator's weight average that samples, and `g_ema_warmup`, its warm-up constant, are fixed
at the first phase).

    python benchmarks/fixed_points.py "beta_1=0.0" --steps 10000 --every 1000
    python benchmarks/fixed_points.py "beta_1=0,g_lr=1e-3,g_ema=0.999" --steps 7500 --every 1250
    python benchmarks/fixed_points.py "g_lr=1e-3,d_lr=2e-4,beta_1=0@4000;g_lr=5e-4,d_lr=1e-4@2000"
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from rlhf_keras import GAN, architectures, data, metrics  # noqa: E402

DEFAULTS = {"g_lr": 2e-4, "d_lr": 2e-4, "beta_1": 0.5, "g_width": 1.0, "d_width": 1.0,
            "g_ema": 0.0, "g_ema_warmup": 10.0}


def parse_phases(text: str, steps: int) -> list[tuple[dict[str, float], int]]:
    """`"a=1,b=2@4000;a=0.5@2000"` -> [({a: 1, b: 2}, 4000), ({a: 0.5}, 2000)]; a single
    point without `@` lasts `steps`."""
    phases = []
    for part in filter(None, text.split(";")):
        values, _, length = part.partition("@")
        changes = {}
        for item in filter(None, values.split(",")):
            name, value = item.split("=")
            changes[name.strip()] = float(value)
        phases.append((changes, int(length) if length else steps))
    return phases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("point", help="Changes to the defaults, or phases 'point@steps;...'.")
    parser.add_argument("--steps", type=int, default=10_000, help="Length of a single point.")
    parser.add_argument("--every", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    phases = parse_phases(args.point, args.steps)
    point = {**DEFAULTS, **phases[0][0]}
    keras.utils.set_random_seed(args.seed)
    dataset, _ = data.load("mnist", batch_size=64, seed=args.seed, shape=(784,))
    generator, discriminator = architectures.seed_mlp(data_shape=(784,), latent_dim=100)
    gan = GAN(architectures.scale_widths(generator, point["g_width"]),
              architectures.scale_widths(discriminator, point["d_width"]), latent_dim=100,
              seed=args.seed, ema_momentum=point["g_ema"] or None, ema_warmup=point["g_ema_warmup"])
    gan.compile(g_optimizer=keras.optimizers.Adam(point["g_lr"], beta_1=point["beta_1"]),
                d_optimizer=keras.optimizers.Adam(point["d_lr"], beta_1=point["beta_1"]))
    start, done = time.time(), 0
    for changes, length in phases:
        point.update(changes)
        gan.g_optimizer.learning_rate.assign(point["g_lr"])
        gan.d_optimizer.learning_rate.assign(point["d_lr"])
        for _ in range(length // args.every):
            gan.fit(dataset.repeat(), steps_per_epoch=args.every, epochs=1, verbose=0)
            done += args.every
            measures = metrics.evaluate(gan, "mnist", seed=0)
            print(f"g_lr {point['g_lr']:.3g} d_lr {point['d_lr']:.3g} beta_1 {point['beta_1']:g} "
                  f"step {done} ({time.time() - start:.0f} s): FID {measures['fid']:.1f}, "
                  f"coverage {measures['coverage']:.3f}, precision {measures['precision']:.3f}, "
                  f"recall {measures['recall']:.3f}, "
                  f"classifier score {measures['classifier_score']:.2f}", flush=True)


if __name__ == "__main__":
    main()
