"""Search efficiency: RLHF's oracle against keras-tuner's oracles and Optuna's TPE at equal compute.

Every method searches the same space (`rlhf_keras.default_search_space()`) through ONE trial
function (`TrialRunner.run`): build the GAN with the sampled widths, train it for a number of
steps with the sampled learning rates and beta_1, score it with `metrics.quality`. Compute is
counted in training steps; a full trial is `UNITS` units of `steps_per_unit` steps, and every
method gets the same total (`trials x UNITS x steps_per_unit`). Multi-fidelity methods
(Hyperband, RLHF with rungs) spend it on more, shorter trials; a trial promoted to a higher
rung continues training the same model (no step is paid twice). Trial `i` of seed `s`
initialises its GAN and draws its noise from the same seed whatever the method.

Keras-tuner oracles (including `ReinforceOracle`) are driven through the Oracle API
(`create_trial` / `update_trial` / `end_trial`) exactly as a Tuner drives them; Optuna's TPE
through ask/tell.

    python benchmarks/search_efficiency.py --quick                  # smoke check, < 5 min
    python benchmarks/search_efficiency.py --tasks ring8 grid25 --seeds 5 --out /tmp/se
    python benchmarks/search_efficiency.py --tasks mnist --seeds 3 --out /tmp/se
    python benchmarks/search_efficiency.py --report /tmp/se          # table + PNG from JSON

Each (task, method, seed) run is written as JSON under `--out`, so runs can be split across
processes and resumed; `--report` merges them into a markdown table (best score after 25%,
50%, 100% of the budget, mean +- sd over seeds) and `benchmarks/search_efficiency.png`.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import shutil
import tempfile
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import keras_tuner  # noqa: E402
import numpy as np  # noqa: E402
import spaces  # noqa: E402  (benchmarks/spaces.py)
import tensorflow as tf  # noqa: E402

from rlhf_keras import GAN, architectures, data, metrics  # noqa: E402
from rlhf_keras.hypermodel import default_search_space  # noqa: E402
from rlhf_keras.oracle import ReinforceOracle  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
UNITS = 3  # a full trial = 3 units; Hyperband's max_epochs (factor 3: rungs at 1 and 3 units)
FRACTIONS = (0.25, 0.5, 1.0)

# Per task: data, architecture, latent size, batch size, steps per unit, full trials.
TASKS: dict[str, dict[str, Any]] = {
    "ring8": {"arch": "small", "latent": 8, "batch": 256, "unit": 100, "trials": 16},
    # Smaller budgets than ring8 so the whole benchmark fits about an hour on 2 shared cores.
    "grid25": {"arch": "small", "latent": 8, "batch": 256, "unit": 60, "trials": 12},
    # 8,000 images, batch 64: 50 steps a unit, 150 (1.2 epochs) a full trial; FID on 1,000.
    "mnist": {"arch": "seed", "latent": 100, "batch": 64, "unit": 50, "trials": 8,
              "images": 8000, "fid_n": 1000},
}
QUICK = {"ring8": {"unit": 20, "trials": 4}, "grid25": {"unit": 20, "trials": 4},
         "mnist": {"unit": 20, "trials": 3, "images": 2000, "fid_n": 500}}

# RLHF variants: ReinforceOracle keyword arguments (the default first).
RLHF_VARIANTS: dict[str, dict[str, Any]] = {
    "rlhf": {},
    "rlhf_sh": {"rungs": (1, UNITS), "reduction_factor": 3},
    "rlhf_wide": {"init_std": 0.5},
    "rlhf_replay": {"replay": 16},
    "rlhf_sh_replay": {"rungs": (1, UNITS), "reduction_factor": 3, "replay": 16},
}
BASELINES = ("random", "bayes", "hyperband", "tpe")


class TrialRunner:
    """The one trial function every method calls.

    Args:
        task: A key of `TASKS`.
        seed: The benchmark seed; trial `i` trains with seed `1000 * seed + i`.
        config: The task's budget settings (`TASKS[task]`, possibly shrunk by `--quick`).
        mnist_dir: Folder of the MNIST IDX files (task "mnist").
    """

    def __init__(self, task: str, seed: int, config: dict[str, Any], mnist_dir: Path):
        self.task, self.seed, self.config = task, seed, config
        self.arch = architectures.seed_mlp if config["arch"] == "seed" else architectures.small_mlp
        if task == "mnist":
            x, _, info = data.load_arrays(str(mnist_dir), shape=(784,))
            self.x = np.array(x[: config["images"]])
            # FID reference: the held-out rest of the split (never trained on).
            self.real = np.array(x[config["images"]:])
            self.shape = (784,)
        else:
            self.x, _, info = data.load_arrays(task, seed=seed)
            self.real = task
            self.shape = (2,)
        self.steps = 0  # training steps spent so far (the compute budget's unit)
        self._models: OrderedDict[str, tuple[GAN, int]] = OrderedDict()  # for continuation

    def dataset(self, seed: int) -> tf.data.Dataset:
        ds = tf.data.Dataset.from_tensor_slices(self.x).shuffle(len(self.x), seed=seed)
        return ds.repeat().batch(self.config["batch"], drop_remainder=True).prefetch(2)

    def build(self, values: dict[str, Any], seed: int) -> GAN:
        keras.utils.set_random_seed(seed)
        generator, _ = self.arch(self.shape, self.config["latent"], width=values["g_width"])
        _, discriminator = self.arch(self.shape, self.config["latent"], width=values["d_width"])
        gan = GAN(generator, discriminator, latent_dim=self.config["latent"], seed=seed)
        beta_1 = float(values["beta_1"])
        per_call = max(d for d in range(1, 26) if self.config["unit"] % d == 0)
        gan.compile(g_optimizer=keras.optimizers.Adam(float(values["g_lr"]), beta_1=beta_1),
                    d_optimizer=keras.optimizers.Adam(float(values["d_lr"]), beta_1=beta_1),
                    # Same numbers, ~20% less per-step overhead; a divisor of the unit so every
                    # fit runs exactly the steps it is asked for.
                    steps_per_execution=per_call)
        return gan

    def run(self, key: str, index: int, values: dict[str, Any], units: int,
            continue_from: str | None = None) -> float:
        """Train trial `key` up to `units` units (continuing `continue_from`) and score it.

        Returns:
            The score to maximise (`quality(...)["score"]`: -FID or modes + hq/100); NaN when
            training diverged.
        """
        trained = 0
        if continue_from is not None and continue_from in self._models:
            gan, trained = self._models.pop(continue_from)
        else:
            gan = self.build(values, 1000 * self.seed + index)
        steps = (units - trained) * self.config["unit"]
        if steps > 0:
            history = gan.fit(self.dataset(1000 * self.seed + index + trained), epochs=1,
                              steps_per_epoch=steps, verbose=0,
                              callbacks=[keras.callbacks.TerminateOnNaN()]).history
            self.steps += steps
            if not all(math.isfinite(v[-1]) for v in history.values() if v):
                return math.nan
        self._models[key] = (gan, units)
        while len(self._models) > 12:  # Hyperband continues recent trials; drop old ones
            self._models.popitem(last=False)
        if self.task == "mnist":
            result = metrics.quality(gan, self.real, n=self.config["fid_n"], seed=0)
        else:
            result = metrics.quality(gan, self.real, seed=0)
        score = float(result["score"])
        return score if math.isfinite(score) else math.nan

    def release(self) -> None:
        self._models.clear()
        keras.backend.clear_session()
        gc.collect()


def make_oracle(method: str, seed: int, max_trials: int, oracle_kwargs: dict | None = None):
    objective = keras_tuner.Objective("score", "max")
    space = default_search_space()
    if method == "random":
        return keras_tuner.oracles.RandomSearchOracle(
            objective=objective, max_trials=max_trials, hyperparameters=space, seed=seed)
    if method == "bayes":
        return keras_tuner.oracles.BayesianOptimizationOracle(
            objective=objective, max_trials=max_trials, hyperparameters=space, seed=seed)
    if method == "hyperband":
        return keras_tuner.oracles.HyperbandOracle(
            objective=objective, max_epochs=UNITS, factor=3, hyperband_iterations=100,
            hyperparameters=space, seed=seed)
    kwargs = dict(RLHF_VARIANTS[method])
    kwargs.update(oracle_kwargs or {})
    return ReinforceOracle(objective=objective, max_trials=max_trials, hyperparameters=space,
                           seed=seed, **kwargs)


def run_method(runner: TrialRunner, method: str, budget: int) -> list[dict[str, Any]]:
    """Run one search until `budget` training steps are spent; a row per evaluation."""
    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    full = UNITS
    if method == "tpe":
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(direction="maximize",
                                    sampler=optuna.samplers.TPESampler(seed=runner.seed))
        index = 0
        while runner.steps < budget:
            trial = study.ask()
            values = spaces.optuna_values(trial)
            score = runner.run(str(index), index, values, full)
            if math.isfinite(score):
                study.tell(trial, score)
            else:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            rows.append(_row(runner, index, values, full, score, start))
            index += 1
        return rows
    multi_fidelity = method == "hyperband" or "rungs" in RLHF_VARIANTS.get(method, {})
    # Multi-fidelity methods stop on the step budget alone; the others after `trials` trials.
    max_trials = 10_000 if multi_fidelity else budget // (full * runner.config["unit"])
    oracle = make_oracle(method, runner.seed, max_trials)
    oracle.verbose = 0  # keras-tuner's per-trial tables
    workdir = tempfile.mkdtemp(prefix="se_")
    try:
        oracle._set_project_dir(workdir, method)  # noqa: SLF001 (what BaseTuner does)
        index = 0
        while runner.steps < budget:
            trial = oracle.create_trial("bench")
            if trial.status != "RUNNING":
                break
            hp = trial.hyperparameters.values
            values = {k: hp[k] for k in ("g_lr", "d_lr", "g_width", "d_width", "beta_1")}
            units = int(hp.get("tuner/epochs", full))
            score = runner.run(trial.trial_id, index, values, units, hp.get("tuner/trial_id"))
            oracle.update_trial(trial.trial_id, {"score": score})
            trial.status = "COMPLETED"
            oracle.end_trial(trial)
            rows.append(_row(runner, index, values, units, score, start))
            index += 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return rows


def _row(runner: TrialRunner, index: int, values: dict, units: int, score: float,
         start: float) -> dict[str, Any]:
    return {"index": index, "values": values, "units": units, "steps": runner.steps,
            "score": None if not math.isfinite(score) else score,
            "seconds": round(time.perf_counter() - start, 2)}


def best_at(rows: list[dict[str, Any]], steps: float) -> float:
    """Best score among evaluations finished within `steps` training steps (NaN if none)."""
    scores = [r["score"] for r in rows if r["steps"] <= steps and r["score"] is not None]
    return max(scores) if scores else math.nan


# ------------------------------------------------------------------------------- report
def report(out: Path, png: Path) -> str:
    runs: dict[str, dict[str, list[dict]]] = {}
    order = {name: i for i, name in enumerate([*RLHF_VARIANTS, *BASELINES])}
    paths = sorted(out.glob("*.json"), key=lambda p: p.name)
    loaded = [json.loads(p.read_text()) for p in paths]
    loaded.sort(key=lambda r: (list(TASKS).index(r["task"]), order.get(r["method"], 99),
                               r["method"], r["seed"]))
    for run in loaded:
        runs.setdefault(run["task"], {}).setdefault(run["method"], []).append(run)
    lines = []
    for task, by_method in runs.items():
        budget = next(iter(by_method.values()))[0]["budget"]
        unit = "-FID (higher is better)" if task == "mnist" else "modes + hq/100"
        lines += [f"**{task}** — best score ({unit}) after a fraction of {budget} training "
                  "steps, mean ± sd over seeds", "",
                  "| method | seeds | 25% | 50% | 100% | evaluations | wall s / run |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for method, seeds in by_method.items():
            cells = []
            for fraction in FRACTIONS:
                values = np.array([best_at(r["rows"], fraction * budget) for r in seeds])
                ok = values[np.isfinite(values)]
                cells.append("-" if ok.size == 0 else f"{ok.mean():.3f} ± {ok.std(ddof=0):.3f}"
                             + ("" if ok.size == values.size else f" ({ok.size})"))
            evals = np.mean([len(r["rows"]) for r in seeds])
            wall = np.mean([r["seconds"] for r in seeds])
            lines.append(f"| {method} | {len(seeds)} | " + " | ".join(cells)
                         + f" | {evals:.1f} | {wall:.0f} |")
        lines.append("")
    _plot(runs, png)
    return "\n".join(lines)


def _plot(runs: dict, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(runs), figsize=(5 * len(runs), 4), squeeze=False)
    for ax, (task, by_method) in zip(axes[0], runs.items(), strict=True):
        budget = next(iter(by_method.values()))[0]["budget"]
        grid = np.linspace(0, budget, 101)[1:]
        for method, seeds in by_method.items():
            curves = np.array([[best_at(r["rows"], s) for s in grid] for r in seeds])
            mean = np.nanmean(np.where(np.isfinite(curves), curves, np.nan), axis=0) \
                if np.isfinite(curves).any() else grid * np.nan
            ax.plot(grid / budget, mean, label=method,
                    linewidth=2.5 if method.startswith("rlhf") else 1.2)
        ax.set_title(f"{task} ({len(next(iter(by_method.values())))} seeds)")
        ax.set_xlabel("fraction of training-step budget")
        ax.set_ylabel("best score so far (mean over seeds)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=110)


# ------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["ring8", "grid25", "mnist"],
                        choices=list(TASKS))
    parser.add_argument("--methods", nargs="+", default=["rlhf", *BASELINES])
    parser.add_argument("--seeds", type=int, default=None,
                        help="seeds per task (default 5 for 2-D, 3 for MNIST; 1 with --quick)")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--mnist", default=str(REPO.parent / "shared" / "data" / "mnist"),
                        help="folder of the MNIST IDX files (the test split is enough)")
    parser.add_argument("--out", default=None, help="folder for the per-run JSON files")
    parser.add_argument("--quick", action="store_true", help="tiny budgets: a smoke check")
    parser.add_argument("--report", default=None, metavar="OUT",
                        help="only merge the JSON files in OUT into a table and the PNG")
    parser.add_argument("--png", default=None,
                        help="figure path; default benchmarks/search_efficiency.png, or the "
                        "--out folder with --quick (a smoke run never replaces the figure)")
    args = parser.parse_args(argv)
    known = set(BASELINES) | set(RLHF_VARIANTS)
    unknown = [m for m in args.methods if m not in known]
    if unknown:
        parser.error(f"unknown method(s) {unknown}; choose from {sorted(known)}")
    default_png = REPO / "benchmarks" / "search_efficiency.png"
    if args.report:
        print(report(Path(args.report), Path(args.png or default_png)))
        return
    if "mnist" in args.tasks and not (Path(args.mnist) / "t10k-images-idx3-ubyte.gz").exists() \
            and not any(Path(args.mnist).glob("*idx3-ubyte*")):
        parser.error(f"no MNIST IDX files in {args.mnist}; pass --mnist FOLDER or drop the "
                     "mnist task")
    if "tpe" in args.methods:
        try:
            import optuna  # noqa: F401
        except ImportError:
            parser.error("method tpe needs Optuna: pip install optuna (or drop tpe)")
    out = Path(args.out or tempfile.mkdtemp(prefix="search_efficiency_"))
    out.mkdir(parents=True, exist_ok=True)
    print(f"writing runs to {out} ({platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores)", flush=True)
    total_start = time.perf_counter()
    for task in args.tasks:
        config = dict(TASKS[task])
        if args.quick:
            config.update(QUICK[task])
        n_seeds = args.seeds or (1 if args.quick else (3 if task == "mnist" else 5))
        budget = config["trials"] * UNITS * config["unit"]
        for seed in range(args.first_seed, args.first_seed + n_seeds):
            for method in args.methods:
                path = out / f"{task}_{method}_{seed}.json"
                if path.exists():
                    continue  # done in an earlier run
                runner = TrialRunner(task, seed, config, Path(args.mnist))
                start = time.perf_counter()
                rows = run_method(runner, method, budget)
                seconds = time.perf_counter() - start
                runner.release()
                best = best_at(rows, budget)
                path.write_text(json.dumps({"task": task, "method": method, "seed": seed,
                                            "budget": budget, "config": config,
                                            "seconds": round(seconds, 1), "rows": rows}))
                print(f"{task} {method:10s} seed {seed}: best {best:.3f} in {len(rows)} "
                      f"evaluations, {seconds:.0f} s", flush=True)
    print(f"total {time.perf_counter() - total_start:.0f} s", flush=True)
    png = args.png or (out / "search_efficiency.png" if args.quick else default_png)
    print(report(out, Path(png)))


if __name__ == "__main__":
    main()
