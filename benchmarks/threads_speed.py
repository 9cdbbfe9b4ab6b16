"""Would two one-thread workers train more steps per second than one two-thread process?

A search's members are independent between take-overs, so on a 2-core machine they could
train side by side (a chief and two workers, one member each) instead of one after another
with TensorFlow's two intra-op threads. This measures the article's MLP with XLA (the widths
the MNIST searches end on) three ways, each in fresh processes:

- one process, 2 intra-op threads (how a search trains today);
- one process, 1 intra-op thread, alone;
- two 1-thread processes at once: the machine's total steps/s is the sum of theirs.

    python benchmarks/threads_speed.py --data ../shared/data/mnist

Prints a markdown table. Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

# (generator width, discriminator width) of the article's MLP.
WIDTHS = [(1.0, 1.0), (1.0, 2.0), (0.5, 2.0)]


def worker(g_width: float, d_width: float, source: str, steps: int) -> None:
    """Prints {"rate": steps/s} of one GAN (XLA on, after 10 warm-up steps)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from xla_speed import time_one

    _, rate, _ = time_one("seed", g_width, d_width, True, source, steps, 64)
    print(json.dumps({"rate": rate}), flush=True)


def run_workers(threads: int, count: int, g_width: float, d_width: float, source: str,
                steps: int) -> list[float]:
    """Starts `count` worker processes at once with `threads` intra-op threads each."""
    env = {**os.environ, "TF_NUM_INTRAOP_THREADS": str(threads),
           "TF_NUM_INTEROP_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, __file__, "--worker", str(g_width), str(d_width),
               "--data", source, "--steps", str(steps)]
    processes = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
                 for _ in range(count)]
    rates = []
    for process in processes:
        out, _ = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"worker failed with exit code {process.returncode}")
        rates.append(json.loads(out.strip().splitlines()[-1])["rate"])
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="mnist")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=1,
                        help="rounds of the three settings, taking turns; medians are printed")
    parser.add_argument("--worker", nargs=2, type=float, default=None, metavar=("G", "D"))
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker, args.data, args.steps)
        return
    print("| widths G/D | 1 process x 2 threads, steps/s | 1 process x 1 thread, steps/s | "
          "2 processes x 1 thread, steps/s each (sum) | sum / 2 threads |")
    print("|---|---|---|---|---|")
    for g_width, d_width in WIDTHS:
        rounds = [(run_workers(2, 1, g_width, d_width, args.data, args.steps)[0],
                   run_workers(1, 1, g_width, d_width, args.data, args.steps)[0],
                   run_workers(1, 2, g_width, d_width, args.data, args.steps))
                  for _ in range(args.repeats)]
        two = statistics.median(r[0] for r in rounds)
        one = statistics.median(r[1] for r in rounds)
        pair = [statistics.median(r[2][i] for r in rounds) for i in (0, 1)]
        print(f"| {g_width:g}/{d_width:g} | {two:.1f} | {one:.1f} | "
              f"{pair[0]:.1f} + {pair[1]:.1f} ({sum(pair):.1f}) | {sum(pair) / two:.2f}x |",
              flush=True)


if __name__ == "__main__":
    main()
