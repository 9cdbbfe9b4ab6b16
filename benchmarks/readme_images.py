"""Regenerates the README's policy picture (benchmarks/images/policy.png) from a real search.

    python benchmarks/readme_images.py --out benchmarks/images --dir /tmp/readme_run

Runs `RLHF(max_trials=8, epochs_per_trial=10, seed=0)` (the defaults) on the first article's
MLP pair and `--data` (default: the embedded digits), writes the run's report and TensorBoard
summaries, trains the best GAN `--extra-epochs` more epochs, and writes `policy.png` (the
policy's probability for each choice after every trial) and `search_samples.png` (32 samples of
that GAN, seed 0). The README's `samples.png` comes from `rlhf-keras train --arch dcgan` (see
benchmarks/RESULTS.md). About 5 minutes on 2 CPU cores. Prints the best trial, FIDs and timings.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from rlhf_keras import RLHF, architectures, board, data, metrics, reports  # noqa: E402
from rlhf_keras.gan import GAN  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/images", help="folder for the PNGs")
    parser.add_argument("--dir", default="/tmp/readme_run", help="run directory (overwritten)")
    parser.add_argument("--data", default="digits", help="data source, e.g. an MNIST folder")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--extra-epochs", type=int, default=60)
    args = parser.parse_args()

    start = time.perf_counter()
    generator, discriminator = architectures.seed_mlp((784,), latent_dim=100)
    rlhf = RLHF(max_trials=args.trials, epochs_per_trial=args.epochs, data=args.data,
                directory=args.dir, project_name="readme", overwrite=True, seed=0)
    best = rlhf.finetune(GAN(generator, discriminator, seed=0))
    searched = time.perf_counter() - start
    reports.write_report(rlhf.project_dir)
    board.log_run(rlhf.project_dir)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    before = metrics.fid(best, args.data, seed=0)
    dataset, _ = data.load(args.data, batch_size=64, seed=0, shape=best.data_shape)
    best.fit(dataset, epochs=args.extra_epochs, verbose=0)
    after = metrics.fid(best, args.data, seed=0)
    print(f"best GAN: FID {before:.1f} after the search, {after:.1f} after "
          f"{args.extra_epochs} more epochs ({time.perf_counter() - start:.0f} s in all)")
    reports.save_samples(best.generate(32, seed=0), out / "search_samples.png")
    shutil.copyfile(rlhf.project_dir / reports.POLICY_PNG, out / "policy.png")
    row = reports.best_row(rlhf.results, "min")
    print(f"search: {searched:.0f} s; best trial {row['trial_id']} FID {row['score']:.1f} "
          f"{row['values']}")
    for name in ("search_samples.png", "policy.png"):
        print(f"{out / name}: {(out / name).stat().st_size / 1024:.0f} KB")


if __name__ == "__main__":
    main()
