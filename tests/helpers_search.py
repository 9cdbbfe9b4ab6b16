"""A synthetic search for the oracle tests, importable and runnable as a script.

`SyntheticTuner.run_trial` trains nothing: it returns a noisy function of three
hyperparameters with a known best `Choice` (`"c"`), a log-scale `Float` peaking at 1e-2 and an
`Int` peaking at 60. The noise is seeded by the trial id, so a trial run twice (a resumed
search) scores the same.

As a script it runs one search and writes the oracle's outcome to `--out` (JSON):

    python tests/helpers_search.py --dir DIR --seed 3 --max-trials 12 --out result.json \
        [--stall-at 5 --marker stalled.txt]

`--stall-at K` makes the trial with id K write `--marker` and sleep (so a test can kill the
process mid-trial), unless the marker already exists. `--rendezvous DIR --tuners N` makes each
tuner's first trial wait until N tuners have started one: keras-tuner's chief exits as soon as
every tuner it has *heard of* is done, so a worker that starts after the others have run the
whole search would otherwise find no chief. In keras-tuner's distributed mode (the
KERASTUNER_* environment variables) the chief serves the oracle and writes `--out` when all
trials are done; workers only run trials.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import keras_tuner
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, as a script

from rlhf_keras.oracle import ReinforceOracle  # noqa: E402
from rlhf_keras.trajectory_oracle import TrajectoryOracle  # noqa: E402

CHOICE_SCORES = {"a": 0.0, "b": 0.45, "c": 1.0, "d": 0.6}
BEST_CHOICE = "c"
NOISE = 0.15


def space() -> keras_tuner.HyperParameters:
    """The synthetic search space."""
    hp = keras_tuner.HyperParameters()
    hp.Choice("opt", list(CHOICE_SCORES))
    hp.Float("lr", 1e-4, 1e-1, sampling="log", default=1e-3)
    hp.Int("units", 1, 100)
    return hp


def synthetic_score(values: dict, trial_id: str, seed: int) -> float:
    """The noisy objective (to maximise); noise depends only on (seed, trial_id)."""
    noise = np.random.default_rng([seed, int(trial_id)]).normal(0.0, NOISE)
    score = CHOICE_SCORES[values["opt"]]
    score -= 0.15 * (math.log10(values["lr"]) + 2.0) ** 2
    score -= 0.004 * abs(values["units"] - 60)
    return float(score + noise)


class SyntheticTuner(keras_tuner.engine.base_tuner.BaseTuner):
    """A tuner whose trials are a synthetic function of their hyperparameters.

    Args:
        noise_seed: Seed of the objective's noise.
        stall_at: Trial id (int) that stalls (writes `marker`, then sleeps) unless `marker`
            exists.
        marker: Path of the stall marker.
        **kwargs: Passed to `BaseTuner` (oracle, directory, project_name, overwrite).
    """

    def __init__(self, noise_seed: int = 0, stall_at: int | None = None,
                 marker: str | None = None, rendezvous: str | None = None,
                 tuners: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.noise_seed = noise_seed
        self.stall_at = stall_at
        self.marker = marker
        self.rendezvous = rendezvous
        self.tuners = tuners

    def _meet_the_other_tuners(self, timeout: float = 240.0) -> None:
        """Wait until `tuners` tuners have each started a trial (files in `rendezvous`)."""
        folder = Path(self.rendezvous)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / str(self.tuner_id)).touch()
        deadline = time.monotonic() + timeout
        while len(list(folder.iterdir())) < self.tuners:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {sorted(p.name for p in folder.iterdir())} of "
                                   f"{self.tuners} tuners started within {timeout:.0f} s")
            time.sleep(0.1)

    def run_trial(self, trial, *args, **kwargs):
        hp = trial.hyperparameters
        values = {
            "opt": hp.Choice("opt", list(CHOICE_SCORES)),
            "lr": hp.Float("lr", 1e-4, 1e-1, sampling="log", default=1e-3),
            "units": hp.Int("units", 1, 100),
        }
        if self.rendezvous is not None:
            self._meet_the_other_tuners()
        if self.stall_at is not None and int(trial.trial_id) == self.stall_at:
            if not os.path.exists(self.marker):
                Path(self.marker).write_text(trial.trial_id)
                time.sleep(600)  # killed by the test long before this ends
        return {"score": synthetic_score(values, trial.trial_id, self.noise_seed)}


def make_tuner(directory: str, seed: int, max_trials: int, population: int = 0,
               **kwargs) -> SyntheticTuner:
    """A `SyntheticTuner` driven by a seeded `ReinforceOracle` over `space()`, or with
    `population` a `TrajectoryOracle` of `max_trials / population` segments."""
    if population:
        oracle = TrajectoryOracle(
            objective=keras_tuner.Objective("score", "max"),
            population_size=population,
            segments=max_trials // population,
            hyperparameters=space(),
            birth_only=["units"],
            seed=seed,
        )
    else:
        oracle = ReinforceOracle(
            objective=keras_tuner.Objective("score", "max"),
            max_trials=max_trials,
            hyperparameters=space(),
            seed=seed,
        )
    return SyntheticTuner(
        oracle=oracle, directory=directory, project_name="synthetic", noise_seed=seed, **kwargs
    )


def outcome(oracle: ReinforceOracle | TrajectoryOracle) -> dict:
    """What the tests compare: parameters, update count, trial statuses."""
    if isinstance(oracle, TrajectoryOracle):
        parameters = {k: v.tolist() for k, v in oracle.policy.parameters().items()}
    else:
        parameters = oracle.policy_parameters()
    return {
        "parameters": parameters,
        "updates": oracle.updates,
        "end_order": list(oracle.end_order),
        "statuses": {tid: t.status for tid, t in oracle.trials.items()},
        "values": {tid: t.hyperparameters.values for tid, t in oracle.trials.items()},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-trials", type=int, default=10)
    parser.add_argument("--out", default=None)
    parser.add_argument("--stall-at", type=int, default=None)
    parser.add_argument("--marker", default=None)
    parser.add_argument("--rendezvous", default=None)
    parser.add_argument("--tuners", type=int, default=1)
    parser.add_argument("--population", type=int, default=0,
                        help="Use the trajectory search with this many members.")
    args = parser.parse_args(argv)
    tuner = make_tuner(args.dir, args.seed, args.max_trials, population=args.population,
                       stall_at=args.stall_at,
                       marker=args.marker, rendezvous=args.rendezvous, tuners=args.tuners)
    tuner.search(verbose=0)
    # Workers hold an OracleClient; only the chief (or a lone tuner) has the real oracle.
    if args.out and isinstance(tuner.oracle, (ReinforceOracle, TrajectoryOracle)):
        Path(args.out).write_text(json.dumps(outcome(tuner.oracle)))


if __name__ == "__main__":
    main()
