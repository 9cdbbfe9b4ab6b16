"""Equal compute: is running RLHF better than training the defaults, and better than other tuners?

Every method gets the same budget B of TRAINING STEPS (evaluations are not counted; their time is
in the wall seconds) on the same task, the same search space (`rlhf_keras.default_search_space()`)
and the same trial function (`Trials`: the GAN built exactly as `GANHyperModel.build` builds a
trial's GAN, trained for N steps on the task's data, continuing a model when asked, scored with
`metrics.quality(gan, data, seed=0)["score"]`, higher is better):

* `defaults`  one GAN with the articles' defaults (Adam 2e-4, beta_1 0.5, widths 1) trained for
              all B steps (what `rlhf-keras train --steps B` does); its final score.
* `defaults_ema` the same, sampling from the moving average of the generator's weights that
              every trial of the search space keeps (`g_ema`, 0.999): what
              `rlhf-keras train --steps B --g-ema 0.999` does; is the search's gain the average's?
* `rlhf`      `RLHF(budget_steps=B, ...).finetune(GAN(...))`: the default trajectory search
              (8 born, the first at the space's defaults, 4 after one segment, 2 after half
              the budget; elitist, running baseline); `rlhf.best_gan` re-scored.
* `random`    keras-tuner's RandomSearch oracle, 8 trials of B/8 steps.
* `hyperband` keras-tuner's Hyperband oracle, max_epochs 9, factor 3, one iteration: 75 units of
              B/75 steps (a promoted trial continues its parent's model, so no step is paid twice).
* `tpe`       Optuna's TPE (ask/tell), 8 trials of B/8 steps.
* `pbt`       Ray Tune's `PopulationBasedTraining` (synchronous), population 4, each member
              B/4 steps, perturbation every B/32 steps (rlhf's segment length); g_lr, d_lr
              (log-uniform 1e-5..1e-2) and beta_1 (the space's choices) mutate, widths stay 1.

A method's score is that of the model it picks (its best evaluation; `defaults` has one),
re-scored with the same scorer and seed. Image tasks also record `metrics.evaluate` (coverage,
classifier score, precision/recall, density) of that model.

    python benchmarks/equal_compute.py --tasks ring8 grid25 --out /tmp/eqc
    python benchmarks/equal_compute.py --tasks mnist-seed --methods defaults rlhf --out /tmp/eqc
    python benchmarks/equal_compute.py --tasks ring8 --budget ring8=640 --seeds 0 --out /tmp/q
    python benchmarks/equal_compute.py --tasks ring8 --methods rlhf --rlhf final_population=2
    python benchmarks/equal_compute.py --tasks ring8 --methods rlhf --d-lr-ratio
    python benchmarks/equal_compute.py --report /tmp/eqc

One JSON per (task, method, seed) is written into `--out` (existing ones are skipped, so a run
resumes); `--report` prints a markdown table per task.
"""

from __future__ import annotations

import argparse
import ast
import gc
import json
import math
import os
import platform
import random
import shutil
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import keras_tuner  # noqa: E402
import numpy as np  # noqa: E402
import spaces  # noqa: E402  (benchmarks/spaces.py)

from rlhf_keras import GAN, architectures, data, metrics  # noqa: E402
from rlhf_keras.compat import (  # noqa: E402
    load_weights_keeping_learning_rates,
    released_gradient_functions,
)
from rlhf_keras.hypermodel import GANHyperModel, default_search_space  # noqa: E402

TASKS: dict[str, dict[str, Any]] = {
    "ring8": {"data": "ring8", "arch": "small", "shape": (2,), "latent": 8, "batch": 256,
              "budget": 6000},
    "grid25": {"data": "grid25", "arch": "small", "shape": (2,), "latent": 8, "batch": 256,
               "budget": 6000},
    # The first article's MLP on the embedded MNIST test split; score -FID (2,000 samples).
    "mnist-seed": {"data": "mnist", "arch": "seed", "shape": (784,), "latent": 100, "batch": 64,
                   "budget": 20000},
    # The project's DCGAN: slow on CPU, hence the small default budget.
    "mnist-dcgan": {"data": "mnist", "arch": "dcgan", "shape": (28, 28, 1), "latent": 100,
                    "batch": 64, "budget": 4000},
}
METHODS = ("defaults", "defaults_ema", "rlhf", "random", "hyperband", "tpe", "pbt")
DEFAULTS = {"g_lr": 2e-4, "d_lr": 2e-4, "g_width": 1.0, "d_width": 1.0, "beta_1": 0.5}
N_TRIALS = 8  # random and tpe: 8 trials of B/8 steps
HB_MAX_EPOCHS, HB_FACTOR = 9, 3
HB_UNITS = 75  # units keras-tuner's Hyperband(9, 3, 1 iteration) trains, continuing promotions
PBT_POPULATION, PBT_SEGMENTS = 4, 8
FAILED = -1e6  # what a tuner is told for a diverged trial (its row records null)


# ------------------------------------------------------------------------ the trial function
class Trials:
    """The one trial function: build with `GANHyperModel.build`, train N steps, score.

    Args:
        task: A key of `TASKS`.
        seed: The benchmark seed.
    """

    def __init__(self, task: str, seed: int):
        self.task, self.seed, self.config = task, seed, TASKS[task]
        cfg = self.config
        generator, discriminator = architectures.build(cfg["arch"], cfg["shape"],
                                                       latent_dim=cfg["latent"])
        self.hypermodel = GANHyperModel(generator, discriminator, latent_dim=cfg["latent"],
                                        pretrained=False, data=cfg["data"],
                                        batch_size=cfg["batch"], epochs=1, seed=seed)
        self.steps = 0  # training steps spent (the budget's unit)
        self.train_seconds = 0.0
        self.eval_seconds = 0.0
        self.evaluations = 0
        self.best: dict[str, Any] | None = None  # the best evaluation so far, weights included
        self.rows: list[dict[str, Any]] = []

    def build(self, values: dict[str, Any], seed: int, space: bool = True) -> GAN:
        """A trial's GAN: `values` over the space's defaults (its fixed `g_ema` included);
        `space=False` builds from `values` alone (the articles' defaults: no weight average)."""
        hp = default_search_space() if space else default_search_space(g_ema=None)
        for name, value in values.items():
            hp.values[name] = value
        self.hypermodel.trial_seed = seed
        return self.hypermodel.build(hp)

    def train(self, gan: GAN, steps: int, data_seed: int) -> bool:
        """Trains `steps` batches; False if a loss went non-finite (training stops there)."""
        start = time.perf_counter()
        dataset, _ = data.load(self.config["data"], batch_size=self.config["batch"],
                               seed=data_seed, shape=gan.data_shape)
        history = gan.fit(dataset.repeat(), epochs=1, steps_per_epoch=int(steps), verbose=0,
                          shuffle=False,
                          callbacks=[keras.callbacks.TerminateOnNaN()]).history
        self.steps += int(steps)
        self.train_seconds += time.perf_counter() - start
        return all(math.isfinite(v[-1]) for v in history.values() if v)

    def score(self, gan: GAN) -> float:
        start = time.perf_counter()
        try:
            value = float(metrics.quality(gan, self.config["data"], seed=0)["score"])
        except metrics.MetricError:  # e.g. NaN samples
            value = math.nan
        self.eval_seconds += time.perf_counter() - start
        self.evaluations += 1
        return value if math.isfinite(value) else math.nan

    def record(self, gan: GAN, values: dict[str, Any], seed: int, score: float,
               trained: int, **extra: Any) -> None:
        """Adds an evaluation row and keeps the generator's weights if it is the best so far."""
        self.rows.append({"values": _plain(values), "trained_steps": trained,
                          "budget_spent": self.steps,
                          "score": score if math.isfinite(score) else None, **extra})
        if math.isfinite(score) and (self.best is None or score > self.best["score"]):
            average = gan.average_generator  # what the GAN samples from, if it averages
            self.best = {"score": score, "values": dict(values), "seed": seed,
                         "weights": [w.copy() for w in gan.generator.get_weights()],
                         "average": None if average is None else average.get_weights(),
                         "row": len(self.rows) - 1}

    def best_model(self) -> GAN | None:
        if self.best is None:
            return None
        average = self.best["average"]
        gan = self.build(self.best["values"], self.best["seed"], space=average is not None)
        gan.generator.set_weights(self.best["weights"])
        if average is not None:
            gan.average_generator.set_weights(average)
        return gan

    def release(self) -> None:
        self.best = None
        keras.backend.clear_session()
        gc.collect()


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    return value


# ------------------------------------------------------------------------ methods
def _one_defaults_gan(trials: Trials, budget: int, average: bool) -> dict[str, Any]:
    """The articles' defaults for all B steps; `average`: with the space's fixed `g_ema`."""
    seed = 1000 * trials.seed
    gan = trials.build(DEFAULTS, seed, space=average)
    trials.train(gan, budget, data_seed=seed)
    values = {**DEFAULTS, "g_ema": gan.ema_momentum} if average else DEFAULTS
    trials.record(gan, values, seed, trials.score(gan), budget)
    return {}


def run_defaults(trials: Trials, budget: int, workdir: Path) -> dict[str, Any]:
    return _one_defaults_gan(trials, budget, average=False)


def run_defaults_ema(trials: Trials, budget: int, workdir: Path) -> dict[str, Any]:
    return _one_defaults_gan(trials, budget, average=True)


RLHF_OPTIONS: dict[str, Any] = {}  # `--rlhf NAME=VALUE`: keyword arguments of RLHF(...)


def run_rlhf(trials: Trials, budget: int, workdir: Path) -> dict[str, Any]:
    from rlhf_keras import RLHF

    cfg = trials.config
    generator, discriminator = architectures.build(cfg["arch"], cfg["shape"],
                                                   latent_dim=cfg["latent"])
    rlhf = RLHF(budget_steps=budget, data=cfg["data"], batch_size=cfg["batch"],
                seed=trials.seed, directory=str(workdir), verbose=0, **RLHF_OPTIONS)
    start = time.perf_counter()
    best = rlhf.finetune(GAN(generator, discriminator, latent_dim=cfg["latent"]))
    trials.train_seconds = time.perf_counter() - start  # training + its own evaluations
    trials.steps = int(rlhf.total_steps)
    rows = rlhf.results
    for row in rows:
        trials.rows.append({"values": _plain(row.get("values", {})),
                            "score": row.get("score"), "status": row.get("status"),
                            "trial_id": row.get("trial_id"), "member": row.get("member"),
                            "segment": row.get("segment"), "parent": row.get("parent")})
    trials.evaluations = len(rows)
    internal = max((r["score"] for r in rows if r.get("score") is not None), default=None)
    values = dict(rlhf.best_hyperparameters.values)
    trials.best = {"score": internal, "values": values, "seed": None, "weights": None, "row": None,
                   "model": best}
    return {"schedule": _plain(rlhf.best_schedule), "internal_best_score": internal,
            "total_steps": rlhf.total_steps}


def _oracle_loop(trials: Trials, oracle: keras_tuner.Oracle, budget: int, steps_per_unit: int,
                 full_units: int, workdir: Path, name: str) -> dict[str, Any]:
    """Drives a keras-tuner oracle as a Tuner does (create_trial / update_trial / end_trial)."""
    oracle.verbose = 0
    oracle._set_project_dir(str(workdir), name)  # noqa: SLF001 (what BaseTuner does)
    models: dict[str, tuple[GAN, int, int]] = {}  # trial_id -> (gan, units trained, seed)
    index = 0
    while trials.steps < budget:
        trial = oracle.create_trial("bench")
        if trial.status != "RUNNING":
            break
        hp = trial.hyperparameters.values
        values = {k: hp[k] for k in DEFAULTS}
        units = int(hp.get("tuner/epochs", full_units))
        parent = hp.get("tuner/trial_id")
        if parent is not None and parent in models:
            gan, trained, seed = models.pop(parent)
        else:
            seed, trained = 1000 * trials.seed + index, 0
            gan = trials.build(values, seed)
        steps = min((units - trained) * steps_per_unit, budget - trials.steps)
        ok = trials.train(gan, steps, data_seed=seed + trained) if steps > 0 else True
        score = trials.score(gan) if ok else math.nan
        models[trial.trial_id] = (gan, units, seed)
        trials.record(gan, values, seed, score, units * steps_per_unit,
                      trial_id=trial.trial_id, parent=parent)
        oracle.update_trial(trial.trial_id, {"score": score if math.isfinite(score) else FAILED})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
        index += 1
        if len(models) > 30:  # Hyperband continues only recent trials
            models.pop(next(iter(models)))
    best = oracle.get_best_trials(1)
    return {"oracle_best_trial": best[0].trial_id if best else None}


def run_random(trials: Trials, budget: int, workdir: Path) -> dict[str, Any]:
    oracle = keras_tuner.oracles.RandomSearchOracle(
        objective=keras_tuner.Objective("score", "max"), max_trials=N_TRIALS,
        hyperparameters=default_search_space(), seed=trials.seed)
    return _oracle_loop(trials, oracle, budget, budget // N_TRIALS, 1, workdir, "random")


def run_hyperband(trials: Trials, budget: int, workdir: Path) -> dict[str, Any]:
    oracle = keras_tuner.oracles.HyperbandOracle(
        objective=keras_tuner.Objective("score", "max"), max_epochs=HB_MAX_EPOCHS,
        factor=HB_FACTOR, hyperband_iterations=1, hyperparameters=default_search_space(),
        seed=trials.seed)
    return _oracle_loop(trials, oracle, budget, budget // HB_UNITS, HB_MAX_EPOCHS, workdir,
                        "hyperband")


def run_tpe(trials: Trials, budget: int, workdir: Path) -> dict[str, Any]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=trials.seed))
    steps = budget // N_TRIALS
    for index in range(N_TRIALS):
        trial = study.ask()
        values = spaces.optuna_values(trial)
        seed = 1000 * trials.seed + index
        gan = trials.build(values, seed)
        score = trials.score(gan) if trials.train(gan, steps, data_seed=seed) else math.nan
        trials.record(gan, values, seed, score, steps, trial=trial.number)
        if math.isfinite(score):
            study.tell(trial, score)
        else:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
    return {}


def _pbt_member(config: dict[str, Any], task: str, seed: int, segment_steps: int,
                log_dir: str) -> None:
    """Ray Tune function trainable: one PBT member, a report (and checkpoint) per segment.

    Besides reporting to Tune, every segment appends a line to `log_dir/reports.jsonl` and,
    when it is the best so far, saves its weights as `log_dir/best.weights.h5` (under a file
    lock: two members train side by side). Ray's own per-trial history is not used for this:
    with `reuse_actors=True` its progress files lose rows when a paused trial resumes.
    """
    import fcntl

    import tensorflow as tf
    from ray import tune

    for setter in (tf.config.threading.set_intra_op_parallelism_threads,
                   tf.config.threading.set_inter_op_parallelism_threads):
        try:
            setter(1)  # one CPU per member (two members train side by side on 2 cores)
        except RuntimeError:
            pass  # a reused worker: already set
    keras.backend.clear_session()
    trials = Trials(task, seed)
    # The trial's own index (a clone carries its donor's config, "member" included).
    suffix = (tune.get_context().get_trial_id() or "0").rsplit("_", 1)[-1]
    member = int(suffix) if suffix.isdigit() else 0
    values = {**DEFAULTS, "g_lr": float(config["g_lr"]), "d_lr": float(config["d_lr"]),
              "beta_1": float(config["beta_1"])}
    init_seed = 1000 * seed + member
    gan = trials.build(values, init_seed)
    done, lineage, cloned_from = 0, [member], None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            state = json.loads((Path(folder) / "state.json").read_text())
            # Keras restores the optimizer state with the weights, the learning rate too:
            # put this member's (possibly perturbed) rates back.
            load_weights_keeping_learning_rates(gan, str(Path(folder) / "gan.weights.h5"))
        done, lineage = int(state["segments"]), list(state["lineage"])
        if state["owner"] != member:  # PBT's exploit: this member took over another's model
            cloned_from = state["owner"]
            lineage.append(member)
    logs = Path(log_dir)
    while True:
        ok = trials.train(gan, segment_steps, data_seed=init_seed + 100 * done)
        done += 1
        score = trials.score(gan) if ok else math.nan
        record = {"member": member, "segment": done, "steps": segment_steps,
                  "train_seconds": round(trials.train_seconds, 3),
                  "score": score if math.isfinite(score) else None,
                  "g_lr": values["g_lr"], "d_lr": values["d_lr"], "beta_1": values["beta_1"],
                  "cloned_from": cloned_from, "lineage": lineage}
        trials.train_seconds, cloned_from = 0.0, None
        with open(logs / "lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            with open(logs / "reports.jsonl", "a") as out:
                out.write(json.dumps(record) + "\n")
            best_file = logs / "best.json"
            best = json.loads(best_file.read_text()) if best_file.exists() else None
            if math.isfinite(score) and (best is None or score > best["score"]):
                gan.save_weights(str(logs / "best.weights.h5"))
                best_file.write_text(json.dumps({**record, "values": values}))
        folder = tempfile.mkdtemp(prefix="pbt_ckpt_")
        gan.save_weights(str(Path(folder) / "gan.weights.h5"))
        (Path(folder) / "state.json").write_text(json.dumps(
            {"segments": done, "lineage": lineage, "owner": member, "values": values}))
        tune.report({"score": score if math.isfinite(score) else FAILED,
                     "segments": done, "member": member},
                    checkpoint=tune.Checkpoint.from_directory(folder))
        shutil.rmtree(folder, ignore_errors=True)


def run_pbt(trials: Trials, budget: int, workdir: Path) -> dict[str, Any]:
    import ray
    from ray import tune
    from ray.tune.schedulers import PopulationBasedTraining
    from ray.tune.search import BasicVariantGenerator

    segment_steps = budget // (PBT_POPULATION * PBT_SEGMENTS)
    random.seed(trials.seed)  # PBT's exploit/explore draws use `random`
    np.random.seed(trials.seed)
    logs = workdir / "pbt_log"
    logs.mkdir()
    ray_tmp = tempfile.mkdtemp(prefix="ray_", dir="/tmp")
    for attempt in range(3):
        try:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                     _temp_dir=ray_tmp, configure_logging=False)
            break
        except Exception:  # noqa: BLE001 - Ray gives its raylet 30 s; a loaded machine needs more
            ray.shutdown()
            if attempt == 2:
                raise
            time.sleep(10)
    try:
        scheduler = PopulationBasedTraining(
            time_attr="training_iteration", perturbation_interval=1,
            hyperparam_mutations={"g_lr": tune.loguniform(*spaces.log_range("g_lr")),
                                  "d_lr": tune.loguniform(*spaces.log_range("d_lr")),
                                  "beta_1": spaces.choices("beta_1")},
            synch=True)
        trainable = tune.with_resources(
            tune.with_parameters(_pbt_member, task=trials.task, seed=trials.seed,
                                 segment_steps=segment_steps, log_dir=str(logs)),
            {"cpu": 1})
        tuner = tune.Tuner(
            trainable,
            param_space={"member": tune.grid_search(list(range(PBT_POPULATION))),
                         "g_lr": tune.loguniform(*spaces.log_range("g_lr")),
                         "d_lr": tune.loguniform(*spaces.log_range("d_lr")),
                         "beta_1": tune.choice(spaces.choices("beta_1"))},
            tune_config=tune.TuneConfig(
                metric="score", mode="max", scheduler=scheduler, num_samples=1,
                search_alg=BasicVariantGenerator(random_state=trials.seed),
                reuse_actors=True),
            run_config=tune.RunConfig(
                name="pbt", storage_path=str(workdir / "ray_results"), verbose=0,
                stop={"training_iteration": PBT_SEGMENTS},
                checkpoint_config=tune.CheckpointConfig(num_to_keep=None)),
        )
        grid = tuner.fit()
        errors = [str(result.error) for result in grid if result.error]
        if errors:
            raise RuntimeError(f"PBT member(s) failed: {errors}")
    finally:
        ray.shutdown()
        shutil.rmtree(ray_tmp, ignore_errors=True)
    reports = [json.loads(line) for line in (logs / "reports.jsonl").read_text().splitlines()
               if line.strip()]
    trials.rows = reports
    trials.evaluations = len(reports)
    trials.steps = sum(r["steps"] for r in reports)
    trials.train_seconds = sum(r["train_seconds"] for r in reports)
    extra = {"reports": len(reports), "segment_steps": segment_steps,
             "exploits": sum(r["cloned_from"] is not None for r in reports)}
    if not (logs / "best.json").exists():
        return extra
    best = json.loads((logs / "best.json").read_text())
    gan = trials.build(best["values"], 1000 * trials.seed)
    load_weights_keeping_learning_rates(gan, str(logs / "best.weights.h5"))
    trials.best = {"score": best["score"], "values": best["values"], "seed": None,
                   "weights": None, "row": None, "model": gan}
    return {**extra, "best_member": best["member"], "best_segment": best["segment"],
            "best_lineage": best["lineage"], "internal_best_score": best["score"]}


RUNNERS = {"defaults": run_defaults, "defaults_ema": run_defaults_ema, "rlhf": run_rlhf,
           "random": run_random, "hyperband": run_hyperband, "tpe": run_tpe, "pbt": run_pbt}


class PauseClock:
    """Seconds this process was stopped (SIGSTOP by a job that wanted the cores to itself).

    A daemon thread ticks every 0.5 s; a tick that comes more than 5 s late means the process
    (and, in one process group, its Ray workers) was not running. Wall times are reported
    with these seconds left out as well as in.
    """

    def __init__(self) -> None:
        import threading

        self.paused = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(0.5):
            now = time.monotonic()
            if now - last > 5.0:
                self.paused += now - last - 0.5
            last = now

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.paused


def run_one(task: str, method: str, seed: int, budget: int) -> dict[str, Any]:
    clock = PauseClock()
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    trials = Trials(task, seed)
    workdir = Path(tempfile.mkdtemp(prefix=f"eqc_{method}_"))
    start = time.perf_counter()
    try:
        with released_gradient_functions():
            extra = RUNNERS[method](trials, budget, workdir)
            search_seconds = time.perf_counter() - start
            model = None
            if trials.best is not None:
                model = trials.best.get("model")
                if model is None:
                    model = trials.best_model()
            result: dict[str, Any] = {}
            evaluations = trials.evaluations  # the search's own (re-scoring not counted)
            if model is not None:
                # The chosen model, re-scored with the same scorer and seed.
                rescore_start = time.perf_counter()
                result["score"] = trials.score(model)
                if TASKS[task]["data"] == "mnist":
                    result["evaluate"] = {k: float(v) for k, v in
                                          metrics.evaluate(model, "mnist", seed=0).items()}
                result["rescore_seconds"] = round(time.perf_counter() - rescore_start, 1)
                result["search_best_score"] = trials.best["score"]
                result["best_values"] = _plain(trials.best["values"])
            else:
                result["score"] = None
            trials.evaluations = evaluations
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    seconds = time.perf_counter() - start
    paused = clock.stop()
    out = {"task": task, "method": method, "seed": seed, "budget": budget,
           "steps": trials.steps, "config": _plain(TASKS[task]), **result,
           "evaluations": trials.evaluations, "seconds": round(seconds - paused, 1),
           "paused_seconds": round(paused, 1),
           "search_seconds": round(search_seconds, 1),
           "train_seconds": round(trials.train_seconds, 1),
           "eval_seconds": round(trials.eval_seconds, 1), **_plain(extra),
           "rlhf_options": ({name: (value.get_config() if hasattr(value, "get_config")
                                    else _plain(value)) for name, value in RLHF_OPTIONS.items()}
                            if method == "rlhf" else None),
           "rows": trials.rows, "machine": f"{platform.machine()}, {os.cpu_count()} cores",
           "load_avg_at_end": os.getloadavg()}
    if out.get("score") is not None and not math.isfinite(out["score"]):
        out["score"] = None
    trials.release()
    return out


# ------------------------------------------------------------------------ report
def _ms(values: list[float], digits: int) -> str:
    ok = [v for v in values if v is not None and math.isfinite(v)]
    if not ok:
        return "-"
    sd = float(np.std(ok, ddof=1)) if len(ok) > 1 else 0.0
    text = f"{np.mean(ok):.{digits}f} ± {sd:.{digits}f}"
    return text + (f" ({len(ok)} of {len(values)})" if len(ok) < len(values) else "")


def report(out: Path) -> str:
    runs = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
    lines: list[str] = []
    for task in TASKS:
        by_method = {m: sorted((r for r in runs if r["task"] == task and r["method"] == m),
                               key=lambda r: r["seed"]) for m in METHODS}
        by_method = {m: rs for m, rs in by_method.items() if rs}
        if not by_method:
            continue
        images = TASKS[task]["data"] == "mnist"
        digits = 2 if images else 3
        budgets = sorted({r["budget"] for rs in by_method.values() for r in rs})
        seeds = sorted({r["seed"] for rs in by_method.values() for r in rs})
        means = {m: np.mean([r["score"] for r in rs if r["score"] is not None] or [np.nan])
                 for m, rs in by_method.items()}
        best = max((m for m in means if np.isfinite(means[m])), key=lambda m: means[m],
                   default=None)
        unit = "-FID" if images else "modes + high_quality/100"
        lines += [f"**{task}** — score ({unit}, higher is better) of each method's chosen model "
                  f"after {'/'.join(map(str, budgets))} training steps; mean ± sd (ddof 1) over "
                  "seeds, best mean in bold; Δ = method − defaults, paired by seed", ""]
        header = ["method", "mean ± sd", *[f"seed {s}" for s in seeds], "Δ vs defaults",
                  "Δ per seed", "steps", "evals", "wall s / run"]
        lines += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        base = {r["seed"]: r["score"] for r in by_method.get("defaults", [])}
        for method, rs in by_method.items():
            scores = {r["seed"]: r["score"] for r in rs}
            cell = _ms([r["score"] for r in rs], digits)
            if method == best:
                cell = f"**{cell}**"
            per_seed = [("-" if scores.get(s) is None else f"{scores[s]:.{digits}f}")
                        if s in scores else "" for s in seeds]
            diffs = [scores[s] - base[s] for s in seeds
                     if scores.get(s) is not None and base.get(s) is not None]
            if method == "defaults" or not diffs:
                delta, delta_seeds = "", ""
            else:
                delta = _ms(diffs, digits)
                delta_seeds = ", ".join(f"{d:+.{digits}f}" for d in diffs)
            steps = "/".join(str(v) for v in sorted({r["steps"] for r in rs}))
            evals = f"{np.mean([r['evaluations'] for r in rs]):.0f}"
            wall = f"{np.mean([r['seconds'] for r in rs]):.0f}"
            lines.append("| " + " | ".join([method, cell, *per_seed, delta, delta_seeds, steps,
                                            evals, wall]) + " |")
        lines.append("")
        if images:
            lines += [f"{task}: `metrics.evaluate` of the chosen model (2,000 samples, seed 0); "
                      "mean ± sd over seeds, per-seed values in brackets", "",
                      "| method | FID | coverage | classifier score | precision | recall |",
                      "| --- | --- | --- | --- | --- | --- |"]
            for method, rs in by_method.items():
                cells = []
                for key, d in (("fid", 1), ("coverage", 3), ("classifier_score", 2),
                               ("precision", 3), ("recall", 3)):
                    vals = [r.get("evaluate", {}).get(key) for r in rs]
                    each = ", ".join("-" if v is None else f"{v:.{d}f}" for v in vals)
                    cells.append(f"{_ms(vals, d)} [{each}]")
                lines.append(f"| {method} | " + " | ".join(cells) + " |")
            lines.append("")
    return "\n".join(lines)


# ------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["ring8", "grid25"], choices=list(TASKS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--budget", nargs="+", default=[], metavar="TASK=N",
                        help="training-step budget per task (defaults: "
                        + ", ".join(f"{t} {c['budget']}" for t, c in TASKS.items()) + ")")
    for task in TASKS:
        parser.add_argument(f"--budget-{task}", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--rlhf", nargs="+", default=[], metavar="NAME=VALUE",
                        help="keyword arguments of RLHF(...) for the rlhf method, e.g. "
                        "final_population=2 (values read as Python literals)")
    parser.add_argument("--d-lr-ratio", action="store_true",
                        help="the rlhf method searches d_lr_ratio (D's rate as a multiple of "
                        "g_lr) in place of d_lr: default_search_space(d_lr_ratio=True); the "
                        "other methods keep d_lr")
    parser.add_argument("--out", default=None, help="folder for the per-run JSON files")
    parser.add_argument("--report", default=None, metavar="DIR",
                        help="only print the tables of the JSON files in DIR")
    args = parser.parse_args(argv)
    if args.report:
        print(report(Path(args.report)))
        return
    budgets = {t: c["budget"] for t, c in TASKS.items()}
    for task in TASKS:
        value = getattr(args, f"budget_{task.replace('-', '_')}")
        if value is not None:
            budgets[task] = value
    for item in args.budget:
        task, _, value = item.partition("=")
        if task not in TASKS or not value.isdigit():
            parser.error(f"--budget takes TASK=N with TASK in {list(TASKS)}, got {item!r}")
        budgets[task] = int(value)
    for task in args.tasks:
        if budgets[task] < PBT_POPULATION * PBT_SEGMENTS * 2 or budgets[task] < HB_UNITS:
            parser.error(f"budget of {task} is too small ({budgets[task]}); use >= 75")
    for item in args.rlhf:
        name, _, value = item.partition("=")
        try:
            RLHF_OPTIONS[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            parser.error(f"--rlhf takes NAME=VALUE with a Python literal, got {item!r}")
    if args.d_lr_ratio:
        RLHF_OPTIONS["search_space"] = default_search_space(d_lr_ratio=True)
    out = Path(args.out or tempfile.mkdtemp(prefix="equal_compute_"))
    out.mkdir(parents=True, exist_ok=True)
    print(f"writing runs to {out} ({platform.machine()}, {os.cpu_count()} cores)", flush=True)
    total = time.perf_counter()
    for task in args.tasks:
        for seed in args.seeds:
            for method in args.methods:
                path = out / f"{task}_{method}_{seed}.json"
                if path.exists():
                    continue
                try:
                    result = run_one(task, method, seed, budgets[task])
                except Exception:  # report it and go on with the other runs
                    text = traceback.format_exc()
                    (out / f"{task}_{method}_{seed}.error.txt").write_text(text)
                    print(f"{task} {method} seed {seed}: FAILED\n{text}", flush=True)
                    continue
                tmp = path.with_suffix(".tmp")
                tmp.write_text(json.dumps(result, default=_plain))
                tmp.rename(path)
                score = result.get("score")
                print(f"{task} {method:9s} seed {seed}: score "
                      f"{'-' if score is None else f'{score:.3f}'} after {result['steps']} "
                      f"steps, {result['evaluations']} evaluations, {result['seconds']:.0f} s",
                      flush=True)
    print(f"total {time.perf_counter() - total:.0f} s", flush=True)
    print(report(out))


if __name__ == "__main__":
    main()
