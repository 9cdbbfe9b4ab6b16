"""The trajectory search on a synthetic run whose best learning rate drops halfway.

The task of `tests/test_trajectory.py` (best log10 lr -2.5 for 10 segments, then -3.7), run
over more seeds and with any `TrajectoryOracle` settings, against the best constant rate.

    python benchmarks/schedule_learning.py --seeds 0 1 2 3 4
    python benchmarks/schedule_learning.py --seeds 0 1 2 3 4 --set entropy_coef=0.01 stickiness=1.0
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_trajectory import best_fixed_total, run_search  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--set", nargs="*", default=[], help="Oracle settings, name=value.")
    args = parser.parse_args()
    settings = {k: float(v) for k, v in (item.split("=") for item in args.set)}
    print(f"best constant learning rate: {best_fixed_total():.2f}")
    for seed in args.seeds:
        oracle = run_search(Path(tempfile.mkdtemp()), seed, **settings)
        best = oracle.get_best_trials(1)[0]
        schedule = [round(math.log10(row["lr"]), 2) for row in oracle.schedule_of(best.trial_id)]
        print(f"seed {seed}: {best.score:.2f}  log10 lr by segment {schedule}")


if __name__ == "__main__":
    main()
