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

Multi-fidelity (`rungs=`, off by default). Trials are scored at increasing budgets (epochs)
and only the best continue, as in asynchronous successive halving: a new trial runs to the
first rung; whenever a finished evaluation is in the top `1 / reduction_factor` of its rung
and not yet promoted, the next trial continues it to the next rung. The values follow
keras-tuner's Hyperband convention (`tuner/epochs`, `tuner/initial_epoch`, `tuner/trial_id`,
`tuner/bracket`, `tuner/round`), so a Tuner that honours them (keras-tuner's `Hyperband`
tuners, or any `run_trial` that reloads `tuner/trial_id`'s checkpoint and trains from
`tuner/initial_epoch` to `tuner/epochs`) continues the model instead of retraining it. The
policy learns from every evaluation, its reward ranked only among evaluations of the same rung
(partial rewards are comparable with each other, not with full ones).

Replay (`replay=`, off by default). Each update reuses the last `replay` evaluations with
PPO-style clipped importance weights (`HyperparameterPolicy.reinforce_batch`), their
advantages being centred ranks within that window, instead of one REINFORCE step on the newest
trial alone.

Resuming. keras-tuner saves the oracle right after `populate_space`, and on reload re-queues
the trial that was running (with the values saved in its `trial.json`). The pending action is
stored under that trial id, so the rerun trial updates the policy with exactly the action it
ran, and a resumed search ends with the same policy as an uninterrupted one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
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
        rungs: Multi-fidelity budgets, e.g. `(1, 3)`: strictly increasing positive ints
            (epochs, or whatever unit the Tuner reads from `tuner/epochs`); the last is a
            full trial. None (default): every trial is a full trial.
        reduction_factor: With `rungs`: the top `1 / reduction_factor` of each rung continues.
        replay: Reuse the last `replay` evaluations in every update (0: plain REINFORCE on the
            newest trial, the default).
        replay_clip: PPO clipping range of the importance ratios, with `replay`.
        replay_epochs: Gradient steps per update on the replayed window, with `replay`.

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
        rungs: Sequence[int] | None = None,
        reduction_factor: int = 3,
        replay: int = 0,
        replay_clip: float = 0.2,
        replay_epochs: int = 1,
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
        rungs = _check_fidelity(rungs, reduction_factor, replay, replay_clip, replay_epochs)
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
        self.rungs = rungs
        self.reduction_factor = int(reduction_factor)
        self.replay = int(replay)
        self.replay_clip = float(replay_clip)
        self.replay_epochs = int(replay_epochs)
        self._rng = np.random.default_rng(self.seed)
        # trial_id -> {"values": ..., "action": ...}: sampled, not yet learned from.
        self._pending: dict[str, dict[str, Any]] = {}
        # trial_id -> what the trial taught: reward, penalised, utility, advantage...
        self.rewards: dict[str, dict[str, Any]] = {}
        # [ok, signed score, rung] per learned evaluation, in learning order (the ranking
        # reference: an evaluation is ranked among those of its rung).
        self._reward_history: list[list] = []
        # trial_id -> {"action", "log_prob" (when drawn), "ok", "reward", "rung"}, learning
        # order: what replay reuses and what a promotion continues.
        self._experience: dict[str, dict[str, Any]] = {}
        self._promoted: list[str] = []  # evaluations already continued to the next rung
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
        if self.rungs is not None:
            promotion = self._promotion()
            if promotion is not None:
                parent, rung = promotion
                self._promoted.append(parent)
                past = self._experience[parent]
                values = {k: v for k, v in self.trials[parent].hyperparameters.values.items()
                          if not k.startswith("tuner/")}
                values.update(self._fidelity_values(rung, parent))
                self._pending[trial_id] = {"values": values, "action": past["action"],
                                           "log_prob": past["log_prob"], "rung": rung}
                return {"status": TrialStatus.RUNNING, "values": dict(values)}
        for _ in range(self._max_collisions + 1):
            values, action = self.policy.sample(self.hyperparameters, self._rng)
            if self.rungs is not None:
                values.update(self._fidelity_values(0, None))
            if not self._duplicate(values):
                break
        self._pending[trial_id] = {"values": values, "action": action,
                                   "log_prob": self.policy.log_prob(action), "rung": 0}
        return {"status": TrialStatus.RUNNING, "values": dict(values)}

    def _fidelity_values(self, rung: int, parent: str | None) -> dict[str, Any]:
        """keras-tuner's Hyperband keys for an evaluation at `rung` (continuing `parent`)."""
        values: dict[str, Any] = {
            "tuner/epochs": self.rungs[rung],
            "tuner/initial_epoch": self.rungs[rung - 1] if rung else 0,
            "tuner/bracket": 0,
            "tuner/round": rung,
        }
        if parent is not None:
            values["tuner/trial_id"] = parent
        return values

    def _promotion(self) -> tuple[str, int] | None:
        """The best not-yet-promoted evaluation in the top 1/eta of its rung, highest rung first.

        Returns:
            `(trial_id, next_rung)`, or None when nothing qualifies (then a new trial starts).
        """
        promoted = set(self._promoted)
        for rung in reversed(range(len(self.rungs) - 1)):
            ended = [(tid, e) for tid, e in self._experience.items() if e["rung"] == rung]
            quota = len(ended) // self.reduction_factor
            ranked = sorted((e["reward"], tid) for tid, e in ended if e["ok"])[::-1][:quota]
            for _, tid in ranked:
                if tid not in promoted and tid in self.trials:
                    return tid, rung + 1
        return None

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
        pending = self._pending.pop(trial_id)
        action, rung = pending["action"], int(pending.get("rung", 0))
        ok = trial.status == TrialStatus.COMPLETED and trial.score is not None
        ok = ok and math.isfinite(trial.score)
        if ok:
            score = float(trial.score)
            reward = score if self.objective.direction == "max" else -score
        else:
            reward = self._penalty()
        entry = [int(ok), reward, rung]
        peers = [h for h in self._reward_history if _rung(h) == rung]
        utility = centred_rank(entry, peers) if self.rank_rewards else _standardised(reward, peers)
        self._reward_history.append(entry)
        log_prob = pending.get("log_prob")
        if log_prob is None:  # saved by an earlier version: the action's current probability
            log_prob = self.policy.log_prob(action) if action else 0.0
        self._experience[trial_id] = {"action": action, "log_prob": float(log_prob),
                                      "ok": int(ok), "reward": reward, "rung": rung}
        if self.replay:
            info = self._replay_step(utility)
        elif rung > 0:
            # A promotion re-scores an action drawn from an older policy: an importance-
            # weighted, clipped step (rho = pi(a) / mu(a)), never an on-policy one.
            advantage = utility - self.policy.baseline
            self.policy.reinforce_batch([(action, float(log_prob), advantage)],
                                        clip=self.replay_clip)
            info = {"advantage": advantage, "baseline": self.policy.baseline}
            self.policy.baseline = (self.policy.baseline_decay * self.policy.baseline
                                    + (1 - self.policy.baseline_decay) * utility)
            self.policy.updates += 1
        else:
            # An empty action (a space still unknown at the first trial) only moves the
            # baseline.
            info = self.policy.reinforce(action, utility)
        record = {
            "trial_id": trial_id,
            "reward": reward,
            "penalised": not ok,
            "utility": float(utility),
            "advantage": info["advantage"],
            "baseline": info["baseline"],
            "rung": rung,
            "update": self.policy.updates,
        }
        self.rewards[trial_id] = record
        self.policy_history.append({**record, "policy": _jsonable(self.policy.summary())})
        del self.policy_history[:-_HISTORY_LIMIT]

    def _replay_step(self, utility: float) -> dict[str, float]:
        """A clipped off-policy step on the last `replay` evaluations (ranked within them)."""
        window = list(self._experience.values())[-self.replay:]
        keys = [(e["ok"], e["reward"]) for e in window]
        batch = []
        for i, item in enumerate(window):
            if not item["action"]:
                continue
            peers = [k for j, k in enumerate(keys) if j != i and window[j]["rung"] == item["rung"]]
            if self.rank_rewards:  # a centred rank: the window's mean rank is the baseline
                advantage = centred_rank(keys[i], peers)
            else:  # A = (r - mean r) / std r over the window's evaluations of this rung
                advantage = _standardised(item["reward"], peers)
            batch.append((item["action"], item["log_prob"], advantage))
        self.policy.reinforce_batch(batch, clip=self.replay_clip, epochs=self.replay_epochs)
        used = self.policy.baseline
        self.policy.baseline = (self.policy.baseline_decay * used
                                + (1 - self.policy.baseline_decay) * utility)
        self.policy.updates += 1
        newest = batch[-1][2] if batch and window[-1]["action"] else 0.0
        return {"advantage": float(newest), "baseline": float(used)}

    def _penalty(self) -> float:
        """A finite reward worse than every reward seen so far."""
        if self.penalty is not None:
            return self.penalty
        seen = [entry[1] for entry in self._reward_history if entry[0]]
        if not seen:
            # Nothing to compare with: -1 below the worst penalty so far (or -1).
            earlier = [entry[1] for entry in self._reward_history]
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
            "experience": self._experience,
            "promoted": self._promoted,
            "rungs": self.rungs,
            "reduction_factor": self.reduction_factor,
            "replay": self.replay,
            "replay_clip": self.replay_clip,
            "replay_epochs": self.replay_epochs,
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
        # States saved before multi-fidelity and replay existed lack these keys.
        self._experience = ours.get("experience", {})
        self._promoted = ours.get("promoted", [])
        rungs = ours.get("rungs")
        self.rungs = None if rungs is None else [int(r) for r in rungs]
        self.reduction_factor = int(ours.get("reduction_factor", 3))
        self.replay = int(ours.get("replay", 0))
        self.replay_clip = float(ours.get("replay_clip", 0.2))
        self.replay_epochs = int(ours.get("replay_epochs", 1))
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


def _standardised(reward: float, history: list) -> float:
    """(r - mean) / std of earlier rewards, clipped to [-3, 3]: raw rewards without their
    scale, so one FID-sized reward cannot take the policy with it (0 with no history)."""
    values = [float(h[1]) for h in history]
    if len(values) < 2:
        return 0.0
    spread = float(np.std(values))
    if spread == 0.0:
        return 0.0
    return float(np.clip((reward - float(np.mean(values))) / spread, -3.0, 3.0))


def _rung(entry: list) -> int:
    """The rung of a reward-history entry (entries saved before rungs existed have none)."""
    return int(entry[2]) if len(entry) > 2 else 0


def _check_fidelity(rungs: Any, reduction_factor: Any, replay: Any, replay_clip: Any,
                    replay_epochs: Any) -> list[int] | None:
    """Validate the multi-fidelity and replay arguments; returns `rungs` as a list or None."""
    def positive_int(value: Any) -> bool:
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0

    if rungs is not None:
        if isinstance(rungs, (str, bytes)) or not hasattr(rungs, "__iter__"):
            raise ValueError(f"rungs must be a sequence of ints such as (1, 3), got {rungs!r}.")
        rungs = list(rungs)
        if len(rungs) < 2 or not all(positive_int(r) for r in rungs) or any(
            b <= a for a, b in zip(rungs, rungs[1:], strict=False)
        ):
            raise ValueError(
                "rungs must be at least two strictly increasing positive ints (epochs; the "
                f"last is a full trial), e.g. (1, 3) or (1, 3, 9); got {rungs!r}. Pass None "
                "for single-fidelity trials."
            )
        rungs = [int(r) for r in rungs]
    if not positive_int(reduction_factor) or reduction_factor < 2:
        raise ValueError(f"reduction_factor must be an int >= 2, got {reduction_factor!r}.")
    if isinstance(replay, bool) or not isinstance(replay, (int, np.integer)) or replay < 0:
        raise ValueError(
            f"replay must be an int >= 0 (evaluations reused per update; 0 disables), "
            f"got {replay!r}."
        )
    if not (isinstance(replay_clip, (int, float)) and 0 < replay_clip < math.inf):
        raise ValueError(f"replay_clip must be a finite number > 0, got {replay_clip!r}.")
    if not positive_int(replay_epochs):
        raise ValueError(f"replay_epochs must be a positive int, got {replay_epochs!r}.")
    return rungs


def _jsonable(summary: dict[str, dict[Any, float]]) -> dict[str, dict[str, float]]:
    """A policy summary with string keys, so it survives JSON unchanged."""
    return {key: {str(k): float(v) for k, v in dist.items()} for key, dist in summary.items()}
