"""Does XLA pay for `GAN.fit` on this machine? Steps/s and compile time, with and without it.

For each architecture and width of the default search space, one GAN is compiled with
`jit_compile=False` and one with `jit_compile=True`; each first trains 10 steps (the trace, and
XLA's compile: what every trial of a search pays once) and then `--steps` timed steps.

    python benchmarks/xla_speed.py --data ../shared/data/mnist

Prints a markdown table; `GAN.compile`'s default ("auto") picks XLA from `XLA_MIN_WEIGHTS`
weights in G and D on, and the table shows the weights of each row beside its speed-up.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from rlhf_keras import GAN, architectures, data  # noqa: E402
from rlhf_keras.gan import XLA_MIN_WEIGHTS  # noqa: E402

# (architecture, generator width, discriminator width): the default space's extremes and the
# widths the MNIST searches ended on.
CASES = [("small", 1.0, 1.0), ("small", 2.0, 2.0), ("seed", 0.5, 0.5), ("seed", 1.0, 1.0),
         ("seed", 0.5, 2.0), ("seed", 2.0, 2.0), ("dcgan", 1.0, 1.0)]


@functools.cache  # loaded once per architecture, not once per timed GAN
def _dataset(arch: str, source: str, batch: int) -> tuple:
    if arch == "small":
        points = np.random.default_rng(0).normal(size=(6400, 2)).astype("float32")
        return points, (2,), 2
    dataset, _ = data.load(source, batch_size=batch, seed=0, shape=(28, 28, 1))
    return dataset.repeat(), (28, 28, 1), 100


def time_one(arch: str, g_width: float, d_width: float, jit: bool, source: str, steps: int,
             batch: int) -> tuple[float, float, int]:
    """(seconds of the first 10 steps, steps/s after them, weights of G and D)."""
    keras.utils.set_random_seed(0)
    x, shape, latent = _dataset(arch, source, batch)
    generator, discriminator = architectures.build(arch, shape, latent)
    generator = architectures.scale_widths(generator, g_width, keep_weights=False)
    discriminator = architectures.scale_widths(discriminator, d_width, keep_weights=False)
    gan = GAN(generator, discriminator, latent_dim=latent, seed=0, ema_momentum=0.999)
    gan.compile(keras.optimizers.Adam(1e-3, beta_1=0.0), keras.optimizers.Adam(2e-4, beta_1=0.0),
                jit_compile=jit)
    fit = ({"batch_size": batch} if isinstance(x, np.ndarray) else {})
    start = time.perf_counter()
    gan.fit(x, epochs=1, steps_per_epoch=10, verbose=0, **fit)
    first = time.perf_counter() - start
    start = time.perf_counter()
    gan.fit(x, epochs=1, steps_per_epoch=steps, verbose=0, **fit)
    rate = steps / (time.perf_counter() - start)
    return first, rate, generator.count_params() + discriminator.count_params()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="mnist")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print("| architecture, widths G/D | weights | first 10 steps, s (no XLA / XLA) | "
          "steps/s no XLA | steps/s XLA | XLA / no XLA | `auto` picks |")
    print("|---|---|---|---|---|---|---|")
    for arch, g_width, d_width in CASES:
        runs: dict[bool, list[tuple[float, float, int]]] = {False: [], True: []}
        for _ in range(args.repeats):  # the two settings take turns against the machine's drift
            for jit in (False, True):
                runs[jit].append(time_one(arch, g_width, d_width, jit, args.data, args.steps,
                                          args.batch))
        first = {jit: statistics.median(r[0] for r in runs[jit]) for jit in runs}
        rate = {jit: statistics.median(r[1] for r in runs[jit]) for jit in runs}
        weights = runs[False][0][2]
        picks = "XLA" if weights >= XLA_MIN_WEIGHTS else "Keras's (none on a CPU)"
        print(f"| {arch}, {g_width:g}/{d_width:g} | {weights:,} | {first[False]:.1f} / "
              f"{first[True]:.1f} | {rate[False]:.1f} | {rate[True]:.1f} | "
              f"{rate[True] / rate[False]:.2f}x | {picks} |", flush=True)


if __name__ == "__main__":
    main()
