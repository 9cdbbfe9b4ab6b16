"""The README's two commands at equal compute, over seeds: `rlhf-keras finetune` (the trajectory
search, 20,000 training steps) against `rlhf-keras train --steps 20000` (the articles' defaults).

For each seed it runs, as a user would (skipped when the folder already holds the result):

    rlhf-keras finetune --seed S --budget B --dir OUT/finetune_sS
    rlhf-keras train --data mnist --arch seed --steps B --seed S --out OUT/defaults_sS

and, with `--methods ... defaults_ema`, the defaults sampling from the weight average that the
search's trials sample from:

    rlhf-keras train --data mnist --arch seed --steps B --seed S --g-ema 0.999 \\
        --out OUT/defaults_ema_sS

then scores the saved GANs with `metrics.evaluate` (embedded MNIST test split, 2,000 samples,
seed 0) and prints `equal_compute.py`'s table: mean ± sd over seeds and the paired difference.

    python benchmarks/main_job_seeds.py --seeds 0 1 2 --out /tmp/mjs
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import equal_compute  # noqa: E402  (benchmarks/equal_compute.py: the same table)

from rlhf_keras import metrics  # noqa: E402
from rlhf_keras.gan import load_gan  # noqa: E402
from rlhf_keras.hypermodel import default_search_space  # noqa: E402

TASK = "mnist-seed"


def _run(command: list[str], log: Path) -> float:
    """Runs one CLI command, its output into `log`; returns its wall seconds."""
    print("+", " ".join(command), flush=True)
    start = time.perf_counter()
    with log.open("w") as out:
        subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=True)
    return time.perf_counter() - start


def measure(method: str, seed: int, budget: int, out: Path) -> None:
    record = out / f"{TASK}_{method}_{seed}.json"
    if record.exists():
        return
    cli = [sys.executable, "-m", "rlhf_keras.cli"]
    if method == "rlhf":
        folder = out / f"finetune_s{seed}"
        model = folder / "rlhf" / "best_model.keras"
        command = [*cli, "finetune", "--seed", str(seed), "--budget", str(budget),
                   "--dir", str(folder)]
    else:
        folder = out / f"{method}_s{seed}"
        model = folder / "model.keras"
        command = [*cli, "train", "--data", "mnist", "--arch", "seed", "--steps", str(budget),
                   "--seed", str(seed), "--out", str(folder)]
        if method == "defaults_ema":
            command += ["--g-ema", str(default_search_space().values["g_ema"])]
    # A folder made earlier by the same command is measured, not rerun (its time is unknown).
    seconds = math.nan if model.exists() else round(_run(command, out / f"{folder.name}.log"), 1)
    measures = {k: float(v) for k, v in metrics.evaluate(load_gan(model), "mnist", seed=0).items()}
    evaluations = (len(json.loads((folder / "rlhf" / "results.json").read_text()))
                   if method == "rlhf" else 1)
    record.write_text(json.dumps({
        "task": TASK, "method": method, "seed": seed, "budget": budget, "steps": budget,
        "score": -measures["fid"], "evaluate": measures, "evaluations": evaluations,
        "seconds": seconds, "command": " ".join(["rlhf-keras", *command[3:]]), "model": str(model),
    }, indent=1))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--budget", type=int, default=20000)
    parser.add_argument("--out", required=True, help="folder for the runs and their records")
    parser.add_argument("--methods", nargs="+", default=["defaults", "rlhf"],
                        choices=["defaults", "defaults_ema", "rlhf"])
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        for method in args.methods:
            measure(method, seed, args.budget, out)
    print(equal_compute.report(out))


if __name__ == "__main__":
    main()
