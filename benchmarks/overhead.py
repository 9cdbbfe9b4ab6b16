"""The search's own overhead: oracle time per trial and the memory of a long real search.

1. `populate_space` and one policy update (`ReinforceOracle._learn`: reward, rank, policy
   step, records) after 1,000 completed trials on `default_search_space()`, for the default
   oracle and for the replay and multi-fidelity variants; keras-tuner's own `save` of the
   oracle (a JSON file that grows with the trials) is timed separately. Target: < 10 ms each.
2. Resident memory of a real `rlhf_keras.RLHF` search (ring8, the small MLP, one short epoch
   per trial) after 10 and after 50 trials. Target: after 50 within 20% of after 10, i.e.
   finished trials' models and graphs are released.

    python benchmarks/overhead.py                 # both parts
    python benchmarks/overhead.py --part oracle   # part 1 only (~1 minute)
    python benchmarks/overhead.py --part memory --trials 10 20 30 40 50 --trim both
    python benchmarks/overhead.py --part leak     # the cause, in plain Keras (~10 s)

Prints markdown tables.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import math
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras_tuner  # noqa: E402
import numpy as np  # noqa: E402

from rlhf_keras.hypermodel import default_search_space  # noqa: E402
from rlhf_keras.oracle import ReinforceOracle  # noqa: E402

VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "replay=16": {"replay": 16},
    "rungs=(1, 3)": {"rungs": (1, 3)},
}


def _score(values: dict[str, Any], rng: np.random.Generator) -> float:
    """A cheap stand-in objective with an optimum near the articles' settings."""
    lr = math.log10(values["g_lr"]) + math.log10(values["d_lr"])
    return -abs(lr + 7.4) - abs(values["g_width"] - 1) + rng.normal(0, 0.1)


def _finish(oracle: ReinforceOracle, rng: np.random.Generator) -> tuple[str, Any]:
    trial = oracle.create_trial("bench")
    oracle.update_trial(trial.trial_id, {"score": _score(trial.hyperparameters.values, rng)})
    trial.status = "COMPLETED"
    return trial.trial_id, trial


def time_oracle(n_trials: int = 1000, repeats: int = 30, seed: int = 0) -> list[dict[str, Any]]:
    """Median milliseconds of populate_space, one update and one save after `n_trials`."""
    rows = []
    for name, kwargs in VARIANTS.items():
        rng = np.random.default_rng(seed)
        oracle = ReinforceOracle(objective=keras_tuner.Objective("score", "max"),
                                 max_trials=n_trials + 10 * repeats,
                                 hyperparameters=default_search_space(), seed=seed, **kwargs)
        oracle.verbose = 0
        with tempfile.TemporaryDirectory() as tmp:
            oracle._set_project_dir(tmp, "overhead")  # noqa: SLF001 (what BaseTuner does)
            # Fill the history without keras-tuner's per-trial saves (not what is measured).
            oracle.save = lambda: None
            start = time.perf_counter()
            for _ in range(n_trials):
                _, trial = _finish(oracle, rng)
                keras_tuner.Oracle.end_trial(oracle, trial)
                oracle._learn(trial.trial_id)  # noqa: SLF001
            fill = time.perf_counter() - start
            del oracle.save  # the real save again
            populate, learn, save = [], [], []
            for i in range(repeats):
                trial_id = f"probe{i}"
                t0 = time.perf_counter()
                oracle.populate_space(trial_id)
                populate.append(time.perf_counter() - t0)
                oracle._pending.pop(trial_id)  # noqa: SLF001 (a probe, never run)
                trial_id, trial = _finish(oracle, rng)
                keras_tuner.Oracle.end_trial(oracle, trial)
                t0 = time.perf_counter()
                oracle._learn(trial_id)  # noqa: SLF001
                learn.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                oracle.save()
                save.append(time.perf_counter() - t0)
            size = Path(oracle._get_oracle_fname()).stat().st_size  # noqa: SLF001
        rows.append({"variant": name, "trials": len(oracle.trials),
                     "populate_ms": 1e3 * statistics.median(populate),
                     "update_ms": 1e3 * statistics.median(learn),
                     "save_ms": 1e3 * statistics.median(save), "oracle_json_kb": size / 1024,
                     "fill_s": fill})
    return rows


def _rss_mb() -> float:
    """Current resident set size (Linux /proc), in MiB."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _malloc_trim() -> None:
    """Ask glibc to hand freed heap pages back to the OS (no-op elsewhere)."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def measure_memory(trials: int, seed: int = 0, trim: bool = False) -> list[dict[str, Any]]:
    """Run one real RLHF search of `trials` trials; RSS after every trial.

    Args:
        trials: Trials of the search.
        seed: Its seed.
        trim: Call glibc's `malloc_trim(0)` after every trial, so freed memory the allocator
            keeps is returned: what remains is memory still referenced.

    Returns:
        A row per trial: `trial`, `rss_mb`, `peak_mb`, `seconds`.
    """
    import keras

    from rlhf_keras import GAN, RLHF, architectures

    rows: list[dict[str, Any]] = []
    start = time.perf_counter()

    class Probe(keras.callbacks.Callback):
        # Passed through finetune(**fit_kwargs) to every trial's fit: runs at each trial end.
        def on_train_end(self, logs=None):
            if trim:
                gc.collect()
                _malloc_trim()
            rows.append({"trial": len(rows) + 1, "rss_mb": _rss_mb(), "peak_mb": _peak_mb(),
                         "seconds": time.perf_counter() - start})

    with tempfile.TemporaryDirectory() as tmp:
        keras.utils.set_random_seed(seed)
        generator, discriminator = architectures.small_mlp((2,), latent_dim=8)
        gan = GAN(generator, discriminator, latent_dim=8, seed=seed)
        rlhf = RLHF(max_trials=trials, epochs_per_trial=1, batch_size=2048, data="ring8",
                    directory=tmp, project_name="memory", seed=seed, verbose=0)
        rlhf.finetune(gan, callbacks=[Probe()])
    return rows


def keras_graph_leak(models: int = 5, release: bool = False) -> tuple[int, int]:
    """Train-step graphs still alive after fitting and dropping `models` plain Keras models.

    The cause of a search's memory growth, reproduced without the project: each `fit` traces
    `one_step_on_data`, whose `tf.custom_gradient` registers a gradient function holding the
    graph in TensorFlow's process-wide gradient registry, so the graph outlives its model even
    after `keras.backend.clear_session()` (which keras-tuner calls before every trial) and
    `gc.collect()`. With `release`, each fit runs inside
    `rlhf_keras.compat.released_gradient_functions` (what every trial does).

    Returns:
        `(models, graphs they left alive)`.
    """
    import keras
    from tensorflow.python.framework import func_graph

    from rlhf_keras.compat import released_gradient_functions

    def train_step_graphs() -> int:
        return sum(1 for o in gc.get_objects()
                   if isinstance(o, func_graph.FuncGraph) and o.name == "one_step_on_data")

    before = train_step_graphs()
    rng = np.random.default_rng(0)
    x, y = rng.random((256, 2), dtype=np.float32), rng.random((256, 1), dtype=np.float32)
    for _ in range(models):
        keras.backend.clear_session()
        scope = released_gradient_functions() if release else contextlib.nullcontext()
        with scope:
            model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(16),
                                      keras.layers.Dense(1)])
            model.compile("adam", "mse")
            model.fit(x, y, epochs=1, batch_size=64, verbose=0)
            del model
        gc.collect()
    return models, train_step_graphs() - before


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("oracle", "memory", "leak", "both"), default="both",
                        help="both = oracle + memory + leak")
    parser.add_argument("--n", type=int, default=1000, help="completed trials before timing")
    parser.add_argument("--trials", type=int, nargs="+", default=[10, 50],
                        help="trial counts at which the memory is read")
    parser.add_argument("--trim", choices=("no", "yes", "both"), default="both",
                        help="also run with glibc malloc_trim after every trial")
    args = parser.parse_args(argv)
    if args.n < 1 or sorted(args.trials) != args.trials or args.trials[0] < 1:
        parser.error("--n must be >= 1 and --trials positive and increasing, e.g. 10 50")
    if args.part in ("oracle", "both"):
        print(f"Oracle overhead after {args.n} completed trials (median of 30):\n")
        print("| variant | populate_space ms | update ms | oracle save ms | oracle.json KiB |")
        print("| --- | --- | --- | --- | --- |")
        for row in time_oracle(args.n):
            print(f"| {row['variant']} | {row['populate_ms']:.2f} | {row['update_ms']:.2f} | "
                  f"{row['save_ms']:.1f} | {row['oracle_json_kb']:.0f} |")
        print()
    if args.part in ("leak", "both"):
        models, alive = keras_graph_leak()
        print(f"Plain Keras, no project code: {alive} train-step FuncGraphs alive after fitting "
              f"and deleting {models} models (clear_session + gc.collect each time).")
        models, alive = keras_graph_leak(release=True)
        print(f"The same inside released_gradient_functions: {alive} train-step FuncGraphs "
              "alive (each new fit's graph is freed with its model).\n")
    if args.part in ("memory", "both"):
        print("Memory of a real RLHF search (ring8, small MLP, 1 epoch of 48 steps a trial),"
              " RSS at the end of trial N:\n")
        print("| allocator | " + " | ".join(f"trial {n}" for n in args.trials)
              + f" | growth {args.trials[0]} -> {args.trials[-1]} |")
        print("| --- |" + " --- |" * (len(args.trials) + 1))
        for trim in (False, True) if args.trim == "both" else (args.trim == "yes",):
            rows = measure_memory(args.trials[-1], trim=trim)
            rss = [rows[n - 1]["rss_mb"] for n in args.trials]
            label = "malloc_trim after each trial" if trim else "as is"
            print(f"| {label} | " + " | ".join(f"{r:.0f} MiB" for r in rss)
                  + f" | {100 * (rss[-1] / rss[0] - 1):+.1f}% |", flush=True)

if __name__ == "__main__":
    main()
