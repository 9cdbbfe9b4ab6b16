"""`ReinforceOracle`: a keras-tuner Oracle whose suggestions come from a REINFORCE policy.

The search room of the project. It works with any keras-tuner `Tuner` and `HyperModel`:
`populate_space` samples an action from the policy (`rlhf_keras.policy`), `end_trial` turns
the trial's score into a reward and takes one policy-gradient step. All logic lives in Oracle
methods, keyed by trial id, so keras-tuner's distributed mode (a chief oracle serving worker
tuners over gRPC) works unchanged: the policy lives on the chief.

Failures. keras-tuner marks a trial whose objective is NaN `INVALID` (then `FAILED` once its
retries are spent), and a trial that raised `INVALID`/`FAILED` with the traceback as message;
on its own it aborts the whole search after `max_consecutive_failed_trials` consecutive
`FAILED` trials. Here:

* every failed trial (NaN/inf objective, or raised) teaches the policy with a finite penalty
  reward, worse than every reward seen so far, so the policy moves away from it;
* a *diverged* trial (it ran, but its objective is NaN or infinite) is an outcome of its
  hyperparameters, not a crash: it never counts toward `max_consecutive_failed_trials`, so a
  run of diverging GANs cannot stop the search;
* a trial that *raised* still counts, as in keras-tuner: a streak of crashes usually means a
  bug, and stopping early saves the budget. Pass `max_consecutive_failed_trials=None` to never
  stop.

Resuming. keras-tuner saves the oracle right after `populate_space`, and on reload re-queues
the trial that was running (with the values saved in its `trial.json`). The pending action is
stored under that trial id, so the rerun trial updates the policy with exactly the action it
ran, and a resumed search ends with the same policy as an uninterrupted one.
"""

from __future__ import annotations

import math
from typing import Any

import keras_tuner
import numpy as np
from keras_tuner.engine import trial as trial_module

from rlhf_keras.policy import HyperparameterPolicy, centred_rank

TrialStatus = trial_module.TrialStatus

_HISTORY_LIMIT = 10_000  # policy_history snapshots kept (each is a few numbers per hp)


class ReinforceOracle(keras_tuner.Oracle):
    """Suggest hyperparameters with a policy trained by REINFORCE on the trials' scores.

    Rewards are the objective signed by its direction (`max` -> +score, `min` -> -score),
    turned into a centred rank among earlier rewards (in [-1, 1]: invariant to the objective's
    scale and to outliers) when `rank_rewards` is true. Advantage = rank - baseline, the
    baseline an exponential moving average.

    Args:
        objective: As for `keras_tuner.Oracle` (a name, an `Objective`, or a list).
        max_trials: Total number of trials, a positive int.
        hyperparameters: Optional `HyperParameters` to register the space in advance.
        learning_rate: Policy step size `alpha`.
        entropy_coef: Entropy bonus weight `beta`.
        baseline_decay: Decay of the moving-average baseline, in [0, 1).
        penalty: Reward given to failed trials. None (default): `min_seen - max(1, spread)`,
            below every reward seen so far. A finite float: that reward, in signed-objective
            units.
        seed: Seed of every draw the oracle makes. None picks one (saved with the state).
        tune_new_entries: As for `keras_tuner.Oracle`.
        allow_new_entries: As for `keras_tuner.Oracle`.
        max_retries_per_trial: As for `keras_tuner.Oracle`.
        max_consecutive_failed_trials: Stop after this many consecutive trials that raised
            (diverged trials do not count); None never stops.
        optimizer: `"sgd"` (natural gradient for the Gaussians; default) or `"adam"`.
        init_std: Initial unit-scale std of continuous hyperparameters.
        rank_rewards: Use centred ranks (default) instead of raw signed scores as rewards.

    Raises:
        ValueError: If an argument is invalid; the message says what to pass instead.
    """

    def __init__(
        self,
        objective: Any = None,
        max_trials: int = 10,
        hyperparameters: keras_tuner.HyperParameters | None = None,
        learning_rate: float = 0.5,
        entropy_coef: float = 0.01,
        baseline_decay: float = 0.9,
        penalty: float | None = None,
        seed: int | None = None,
        tune_new_entries: bool = True,
        allow_new_entries: bool = True,
        max_retries_per_trial: int = 0,
        max_consecutive_failed_trials: int | None = 3,
        optimizer: str = "sgd",
        init_std: float = 0.25,
        rank_rewards: bool = True,
    ):
        if isinstance(max_trials, bool) or not isinstance(max_trials, int) or max_trials < 1:
            raise ValueError(f"max_trials must be a positive int, got {max_trials!r}.")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed must be an int or None, got {seed!r}.")
        if penalty is not None and not (
            isinstance(penalty, (int, float)) and math.isfinite(penalty)
        ):
            raise ValueError(
                f"penalty must be a finite number or None (adaptive), got {penalty!r}."
            )
        if max_consecutive_failed_trials is not None and (
            not isinstance(max_consecutive_failed_trials, int) or max_consecutive_failed_trials < 1
        ):
            raise ValueError(
                "max_consecutive_failed_trials must be a positive int, or None to never stop, "
                f"got {max_consecutive_failed_trials!r}."
            )
        # Built first: it validates learning_rate & co. before keras-tuner does any work.
        self.policy = HyperparameterPolicy(
            learning_rate=learning_rate,
            entropy_coef=entropy_coef,
            baseline_decay=baseline_decay,
            optimizer=optimizer,
            init_std=init_std,
        )
        super().__init__(
            objective=objective,
            max_trials=max_trials,
            hyperparameters=hyperparameters,
            tune_new_entries=tune_new_entries,
            allow_new_entries=allow_new_entries,
            seed=seed,
            max_retries_per_trial=max_retries_per_trial,
            max_consecutive_failed_trials=max_consecutive_failed_trials,
        )
        if seed is not None:
            self.seed = seed  # the base class turns seed=0 into a random one
        self.penalty = None if penalty is None else float(penalty)
        self.rank_rewards = bool(rank_rewards)
        self._rng = np.random.default_rng(self.seed)
        # trial_id -> {"values": ..., "action": ...}: sampled, not yet learned from.
        self._pending: dict[str, dict[str, Any]] = {}
        # trial_id -> what the trial taught: reward, penalised, utility, advantage...
        self.rewards: dict[str, dict[str, Any]] = {}
        # [ok, signed score] per learned trial, in learning order (the ranking reference).
        self._reward_history: list[list] = []
        self.policy_history: list[dict[str, Any]] = []

    # ------------------------------------------------------------------------- suggesting
    def populate_space(self, trial_id: str) -> dict[str, Any]:
        """Sample the next trial's hyperparameters from the policy.

        Exact duplicates of earlier trials are redrawn up to `_max_collisions` times (as
        keras-tuner does); after that the duplicate is kept, since re-running a good
        configuration of a noisy objective is informative and a small discrete space must not
        end the search early.

        Args:
            trial_id: The id keras-tuner gives the new trial.

        Returns:
            `{"status": RUNNING, "values": {...}}`, or `{"status": STOPPED}` once
            `max_trials` trials exist.
        """
        if trial_id in self._pending:  # asked again for the same trial: same action
            values = dict(self._pending[trial_id]["values"])
            return {"status": TrialStatus.RUNNING, "values": values}
        if self.max_trials and len(self.trials) >= self.max_trials:
            return {"status": TrialStatus.STOPPED, "values": None}
        for _ in range(self._max_collisions + 1):
            values, action = self.policy.sample(self.hyperparameters, self._rng)
            if not self._duplicate(values):
                break
        self._pending[trial_id] = {"values": values, "action": action}
        return {"status": TrialStatus.RUNNING, "values": dict(values)}

    # ------------------------------------------------------------------------- learning
    def score_trial(self, trial: trial_module.Trial) -> None:
        """keras-tuner's score, with an infinite one treated like NaN (a diverged trial)."""
        super().score_trial(trial)
        if trial.score is not None and not math.isfinite(trial.score):
            trial.score = float("nan")  # the base class then marks the trial INVALID

    @keras_tuner.synchronized
    def end_trial(self, trial: trial_module.Trial) -> None:
        """End a trial as keras-tuner does, then learn from it and save again.

        A trial sent for retry teaches nothing yet (its action stays pending until its final
        status is known).

        Args:
            trial: The finished trial (`COMPLETED`, `INVALID` or `FAILED`).
        """
        super().end_trial(trial)
        self._learn(trial.trial_id)
        self.save()  # the base class saved before the update; this save includes it

    def _learn(self, trial_id: str) -> None:
        """Turn an ended trial into a reward and take the policy step."""
        trial = self.trials[trial_id]
        if trial_id not in self._pending or trial.status not in (
            TrialStatus.COMPLETED,
            TrialStatus.FAILED,
        ):
            return
        action = self._pending.pop(trial_id)["action"]
        ok = trial.status == TrialStatus.COMPLETED and trial.score is not None
        ok = ok and math.isfinite(trial.score)
        if ok:
            score = float(trial.score)
            reward = score if self.objective.direction == "max" else -score
        else:
            reward = self._penalty()
        entry = [int(ok), reward]
        utility = centred_rank(entry, self._reward_history) if self.rank_rewards else reward
        self._reward_history.append(entry)
        # An empty action (a space still unknown at the first trial) only moves the baseline.
        info = self.policy.reinforce(action, utility)
        record = {
            "trial_id": trial_id,
            "reward": reward,
            "penalised": not ok,
            "utility": float(utility),
            "advantage": info["advantage"],
            "baseline": info["baseline"],
            "update": self.policy.updates,
        }
        self.rewards[trial_id] = record
        self.policy_history.append({**record, "policy": _jsonable(self.policy.summary())})
        del self.policy_history[:-_HISTORY_LIMIT]

    def _penalty(self) -> float:
        """A finite reward worse than every reward seen so far."""
        if self.penalty is not None:
            return self.penalty
        seen = [r for ok, r in self._reward_history if ok]
        if not seen:
            # Nothing to compare with: -1 below the worst penalty so far (or -1).
            earlier = [r for _, r in self._reward_history]
            return min(earlier, default=0.0) - 1.0
        low, high = min(seen), max(seen)
        return low - max(1.0, high - low)

    def _check_consecutive_failures(self) -> None:
        """Stop after too many consecutive trials that raised; diverged ones do not count."""
        if self.max_consecutive_failed_trials is None:
            return
        streak = 0
        for trial_id in self.end_order:
            trial = self.trials[trial_id]
            # keras-tuner sets a message (the traceback) only when run_trial raised.
            crashed = trial.status == TrialStatus.FAILED and bool(trial.message)
            diverged = trial.status == TrialStatus.FAILED and not trial.message
            if diverged:
                continue  # an outcome the policy learns from, neither a crash nor a success
            streak = streak + 1 if crashed else 0
            if streak >= self.max_consecutive_failed_trials:
                raise RuntimeError(
                    f"{streak} consecutive trials raised an error (the limit is "
                    f"max_consecutive_failed_trials={self.max_consecutive_failed_trials}); "
                    "fix the error below or pass max_consecutive_failed_trials=None.\n"
                    + (trial.message or "")
                )

    # ------------------------------------------------------------------------- reading
    @property
    def updates(self) -> int:
        """How many trials the policy has learned from."""
        return self.policy.updates

    def policy_summary(self) -> dict[str, dict[Any, float]]:
        """Per hyperparameter: `{value: probability}` or `{"mean": v, "std": s}` (value units)."""
        return self.policy.summary()

    def policy_parameters(self) -> dict[str, list[float]]:
        """Raw policy parameters per hyperparameter: logits or `[unit_mean, log_std]`."""
        return self.policy.parameters()

    # ------------------------------------------------------------------------- state
    def get_state(self) -> dict[str, Any]:
        """keras-tuner's state plus the policy, baseline, moments, pending actions and RNG."""
        state = super().get_state()
        state["reinforce"] = {
            "policy": self.policy.get_state(),
            "pending": self._pending,
            "rewards": self.rewards,
            "reward_history": self._reward_history,
            "policy_history": self.policy_history,
            "penalty": self.penalty,
            "rank_rewards": self.rank_rewards,
            "rng": self._rng.bit_generator.state,
        }
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore a state from `get_state` (as read back from JSON)."""
        super().set_state(state)
        ours = state["reinforce"]
        self.policy = HyperparameterPolicy.from_state(ours["policy"])
        self._pending = ours["pending"]
        self.rewards = ours["rewards"]
        self._reward_history = ours["reward_history"]
        self.policy_history = ours["policy_history"]
        self.penalty = ours["penalty"]
        self.rank_rewards = ours["rank_rewards"]
        self._rng = np.random.default_rng()
        self._rng.bit_generator.state = ours["rng"]

    def reload(self) -> None:
        """Reload as keras-tuner does, then learn from any trial that ended unlearned.

        A process killed between keras-tuner's save in `end_trial` and ours leaves an ended
        trial with a pending action; it is learned from here, and not re-run.
        """
        super().reload()
        for trial_id in list(self.end_order):
            if trial_id in self._pending:
                self._learn(trial_id)
                if trial_id in self._retry_queue:
                    self._retry_queue.remove(trial_id)


def _jsonable(summary: dict[str, dict[Any, float]]) -> dict[str, dict[str, float]]:
    """A policy summary with string keys, so it survives JSON unchanged."""
    return {key: {str(k): float(v) for k, v in dist.items()} for key, dist in summary.items()}
