"""Where a trajectory search's segment spends its wall time (the main job's kind of search).

Runs `RLHF(...).finetune` on the article's MLP with a Keras callback that times, for every
segment: its first training step (tf.function trace + XLA compile + one step), its steady
steps/s after 10 steps, and its time outside `fit` (build, checkpoint load, FID, saves,
records: the trial's `seconds` in results.json minus training).

    python benchmarks/segment_time.py --data mnist --budget 2000 --dir /tmp/segment_time

Prints a markdown table. Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from typing import Any

import keras

from rlhf_keras import RLHF, architectures
from rlhf_keras.gan import GAN
from rlhf_keras.hypermodel import default_search_space

# keras-tuner deep-copies a search's callbacks for every trial: the records live outside them.
RECORDS: list[dict[str, float]] = []


class SegmentTimer(keras.callbacks.Callback):
    """Appends one record per `fit` (one segment) to RECORDS: first step, steady rate, time."""

    def on_train_begin(self, logs: Any = None) -> None:
        self._begin, self._steps, self._first, self._tenth = time.perf_counter(), 0, 0.0, 0.0

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        self._steps += 1
        if self._steps == 1:
            self._first = time.perf_counter()
        if self._steps == 10:
            self._tenth = time.perf_counter()

    def on_train_end(self, logs: Any = None) -> None:
        end = time.perf_counter()
        steady = (self._steps - 10) / (end - self._tenth) if self._steps > 10 else float("nan")
        RECORDS.append({"first_step": self._first - self._begin, "steady": steady,
                        "train": end - self._begin, "steps": self._steps})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="mnist")
    parser.add_argument("--budget", type=int, default=2000)
    parser.add_argument("--population", type=int, default=2)
    parser.add_argument("--segments", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dir", default=None, help="run folder (default: a temporary one)")
    args = parser.parse_args()
    directory = args.dir or tempfile.mkdtemp(prefix="segment_time_")
    rlhf = RLHF(search_space=default_search_space(), budget_steps=args.budget, data=args.data,
                population_size=args.population, segments=args.segments,
                final_population=args.population, birth_population=args.population,
                directory=directory, seed=args.seed, verbose=1)
    generator, discriminator = architectures.build("seed", (28, 28, 1), latent_dim=100)
    start = time.perf_counter()
    rlhf.finetune(GAN(generator, discriminator, latent_dim=100), callbacks=[SegmentTimer()])
    total = time.perf_counter() - start
    print("| trial | widths G/D | segment s | training s | first step s | steady steps/s | "
          "outside fit s |")
    print("|---|---|---|---|---|---|---|")
    # One process trains the segments one after another, in trial order.
    for row, record in zip(rlhf.results, RECORDS, strict=True):
        values = row["values"]
        print(f"| {row['trial_id']} | {values['g_width']:g}/{values['d_width']:g} | "
              f"{row['seconds']:.1f} | {record['train']:.1f} | {record['first_step']:.1f} | "
              f"{record['steady']:.1f} | {row['seconds'] - record['train']:.1f} |")
    training = sum(record["train"] for record in RECORDS)
    print(f"\nsearch {total:.1f} s, of which training {training:.1f} s")


if __name__ == "__main__":
    main()
