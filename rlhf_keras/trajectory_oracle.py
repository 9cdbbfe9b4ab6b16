"""`TrajectoryOracle`: a policy that steers training as it goes, as a keras-tuner Oracle.

The search room's default strategy. A population of `population_size` members trains side by
side, each for `segments` segments. Every trial is one segment of one member and continues its
parent trial's model, with keras-tuner's Hyperband keys (`tuner/trial_id`, `tuner/epochs`,
`tuner/initial_epoch`; one "epoch" is one segment), so any Tuner that honours them (`rlhf_keras.
ContinuingTuner`, keras-tuner's Hyperband tuners) continues training instead of restarting.

Generation by generation (all members train segment t before any trains t + 1):

1. **Birth** (segment 0): each member's hyperparameters, widths included, are drawn from a
   state-less policy (`HyperparameterPolicy`), stratified across the population (a Latin
   hypercube), so 4 members cover the quartiles of every birth distribution.
2. **Exploit**: after a segment, the worst `exploit_fraction` of the members take over the model
   (weights and optimizer state) of the best ones, as in population based training. With
   `final_population`, the population is cut to its best members once half of the budget is
   spent (as successive halving does), so the lineages that remain train longer.
3. **Act**: before each later segment, pi_theta(a | s) (`SchedulePolicy`) chooses how every
   member goes on (learning rates up/keep/down, choices such as beta_1) from its state s:
   progress, rank, trend, discriminator statistics.
4. **Learn**: once a generation has ended, each segment's reward is the quality it added (its
   score minus its parent's, signed by the objective's direction); the policy takes one
   REINFORCE step with the population's mean reward as baseline, or with `baseline="running"`
   a running mean of earlier generations' rewards (`rlhf_keras.reinforce`).

Every action is drawn from the current policy and learned from before the policy changes again,
so every update is on-policy. The best segment of any trajectory is the search's best trial
(keras-tuner's `get_best_trials`), so a run that degrades late keeps its best point.

All state lives in Oracle methods keyed by trial id and is saved in `oracle.json`, so a killed
search resumes with the same policy, and distributed workers (one member each) share it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import keras_tuner
import numpy as np
from keras_tuner.engine import trial as trial_module

from rlhf_keras import reinforce
from rlhf_keras.policy import HyperparameterPolicy, centred_rank, latin_hypercube
from rlhf_keras.schedule_policy import STATE_FEATURES, SchedulePolicy

TrialStatus = trial_module.TrialStatus
STATE_KEY = "trajectory"
BASELINES = ("population", "running", "median", "floor")
BASELINE_DECAY = 0.5  # weight of the older generations in the running baseline
REWARDS = ("difference", "log_ratio", "capped")


class TrajectoryOracle(keras_tuner.Oracle):
    """Population-based training whose schedule is a REINFORCE policy over training states.

    Args:
        objective: As for `keras_tuner.Oracle`.
        population_size: Members training side by side (>= 2 for the exploit step).
        segments: Segments per member at full population; the budget, counted in segments,
            is `max_trials = population_size * segments`.
        final_population: Members kept once half of the budget is spent (the best ones; the
            others stop). The budget is unchanged, so each remaining member trains for more
            segments. None keeps `population_size` throughout.
        birth_population: Members born in the first generation, when more than
            `population_size`: after their first segment only the best `population_size` go
            on, as in a successive-halving rung, so a birth that draws a poor combination costs
            one segment. Their segments come out of the same budget. None: `population_size`.
        hyperparameters: The search space (`keras_tuner.HyperParameters`).
        birth_only: Names of hyperparameters fixed at birth (they change the model's shape,
            e.g. widths); all others may change before every segment.
        exploit_fraction: Share of members that take over a better member's model after each
            segment (the bottom ones copy the top ones), in [0, 0.5].
        elitist: If True, the first member to be taken over copies the best segment of the
            whole search so far when it is better than this generation's best: a population
            whose members have all just got worse goes back to its best model.
        plateau_decay: With `elitist`, a factor in (0, 1) applied to every log-scaled
            continuous hyperparameter (the learning rates) of a member that goes back to the
            best segment, once per time that segment has been gone back to (k-th return:
            factor**k), before the schedule policy acts: Keras's `ReduceLROnPlateau` for a
            population whose best point training at its own rates could not improve on.
            The change is the search's, not the policy's: the policy's action starts from
            the reduced values. None: no change (the default).
        birth_at_defaults: If True, the first member born takes the space's default values
            (what training without a search would use), so the search starts where its user
            would have. Those values are not drawn, so the birth policy does not learn from
            that member; the schedule policy steers it like any other.
        baseline: The schedule policy's reward baseline b. `"population"`: the mean reward of
            the generation being learned from (advantages sum to zero). `"running"`: a running
            mean of earlier generations' mean rewards (decay `BASELINE_DECAY`), so when every
            member of a generation got worse than those before, every move made is
            discouraged (with two members the population baseline always makes one +1).
            `"median"`: the median of the last `population_size` segment rewards of earlier
            generations: as `"running"`, but one diverged segment (a reward 20-50 times a
            typical one) does not drag b down so far that the next generations' setbacks
            read as gains.
            `"floor"`: this generation's mean reward, but never below zero: members that
            improved are compared with each other, and in a generation that lost quality on
            average every move that lost quality is discouraged. Unlike the baselines of
            earlier generations, it does not lag behind the shrinking gains of a training
            curve (with those, every move of a still-improving lineage reads as a setback).
        reward: How a segment's quality added is measured. `"difference"`: its score minus
            its parent's. `"log_ratio"`: the log of their ratio, for objectives whose values
            are positive (FID, a loss, a mode count): a segment taking FID from 40 to 20
            earns what one from 400 to 200 does, so the rewards of late segments are not
            dwarfed by early ones (a birth's reward, the quality reached, is then the
            log of its score). A non-positive score counts as a failed segment.
            `"capped"`: the difference, but no segment loses more than its parent's whole
            score (its magnitude), for objectives whose values keep one sign: a segment
            that takes FID from 24 to 670 loses 24 points, as one that doubles it does, so
            one diverged segment does not drag a running baseline so far down that the
            next generations' setbacks read as gains. Gains are untouched.
        learning_rate: Step size alpha of both policies.
        entropy_coef: Entropy bonus beta.
        init_std: The birth policy's initial std of a continuous hyperparameter, on its unit
            scale (0.25 of the default space's 1e-5..1e-2 learning-rate range is 0.75 of a
            decade either side of its default).
        step: How far one move shifts a continuous hyperparameter on its unit scale (0.05:
            x1.41 on a 1e-5..1e-2 log range; 0.1, the default before session 19: x2).
        stickiness: Initial preference of the schedule policy for keeping a value.
        balance: None (off), or each moving head of the schedule policy also sees how far
            its value sits above the other moving values (for a GAN: g_lr against d_lr on
            their log scales), starting with this weight towards them (0: none), so it can
            learn to move towards a balance of the two or away from it.
        idle_wait: Seconds a worker waits before asking again while a generation finishes.
        seed: Seed of every draw. None picks one (saved with the state).
        max_retries_per_trial, max_consecutive_failed_trials, tune_new_entries,
        allow_new_entries: As for `keras_tuner.Oracle`.
    """

    def __init__(
        self,
        objective: Any = None,
        population_size: int = 4,
        segments: int = 8,
        final_population: int | None = None,
        birth_population: int | None = None,
        hyperparameters: keras_tuner.HyperParameters | None = None,
        birth_only: Sequence[str] = (),
        exploit_fraction: float = 0.25,
        elitist: bool = False,
        plateau_decay: float | None = None,
        birth_at_defaults: bool = False,
        baseline: str = "population",
        reward: str = "difference",
        learning_rate: float = 0.5,
        entropy_coef: float = 0.1,
        init_std: float = 0.25,
        step: float = 0.05,
        stickiness: float = 0.5,
        balance: float | None = None,
        idle_wait: float = 0.2,
        seed: int | None = None,
        max_retries_per_trial: int = 0,
        max_consecutive_failed_trials: int | None = 3,
        tune_new_entries: bool = True,
        allow_new_entries: bool = True,
    ) -> None:
        for name, value, low in (("population_size", population_size, 1),
                                 ("segments", segments, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}.")
        check_final_population(final_population, population_size)
        check_birth_population(birth_population, population_size, segments)
        if not (isinstance(exploit_fraction, (int, float)) and 0 <= exploit_fraction <= 0.5):
            raise ValueError(f"exploit_fraction must be in [0, 0.5], got {exploit_fraction!r}.")
        if baseline not in BASELINES:
            raise ValueError(f"baseline must be one of {BASELINES}, got {baseline!r}: "
                             "'population' (this generation's mean reward), 'running' (a "
                             "running mean of earlier generations'), 'median' (the median "
                             "of the last population_size earlier segment rewards) or 'floor' "
                             "(this generation's mean reward, not below zero).")
        if reward not in REWARDS:
            raise ValueError(f"reward must be one of {REWARDS}, got {reward!r}: 'difference' "
                             "(score minus the parent's), 'log_ratio' (the log of their "
                             "ratio, for positive objectives such as FID) or 'capped' (the "
                             "difference, no loss larger than the parent's score).")
        check_plateau_decay(plateau_decay, elitist)
        check_birth_only(birth_only)  # names only: a space may grow as trials build models
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed must be an int or None, got {seed!r}.")
        # Built first: they validate learning_rate & co. before keras-tuner does any work.
        self.birth_policy = HyperparameterPolicy(learning_rate=learning_rate,
                                                 entropy_coef=entropy_coef, init_std=init_std)
        self.policy = SchedulePolicy(step=step, stickiness=stickiness, balance=balance)
        super().__init__(
            objective=objective,
            max_trials=population_size * segments,
            hyperparameters=hyperparameters,
            tune_new_entries=tune_new_entries,
            allow_new_entries=allow_new_entries,
            seed=seed,
            max_retries_per_trial=max_retries_per_trial,
            max_consecutive_failed_trials=max_consecutive_failed_trials,
        )
        if seed is not None:
            self.seed = seed  # the base class turns seed=0 into a random one
        self.population_size = population_size
        self.segments = segments
        self.final_population = population_size if final_population is None else final_population
        self.birth_population = population_size if birth_population is None else birth_population
        self.generation_sizes = generation_sizes(population_size, segments,
                                                 self.final_population, self.birth_population)
        self.birth_only = [str(name) for name in birth_only]
        self.exploit_fraction = float(exploit_fraction)
        self.elitist = bool(elitist)
        self.plateau_decay = None if plateau_decay is None else float(plateau_decay)
        self.birth_at_defaults = bool(birth_at_defaults)
        self.baseline = baseline
        self.reward_baseline: float | None = None  # running mean of segment rewards
        self.reward = reward
        self.learning_rate = float(learning_rate)
        self.entropy_coef = float(entropy_coef)
        self.idle_wait = float(idle_wait)
        self._rng = np.random.default_rng(self.seed)
        self.generations: list[list[str]] = []  # trial ids, by generation then member
        self.decisions: dict[str, dict[str, Any]] = {}  # trial_id -> how it was chosen
        self.plan: list[dict[str, Any]] = []  # the current generation's parents
        self.birth_uniforms: list[dict[str, float]] = []  # stratified draws of the births
        self.learned: list[int] = []  # generations already learned from
        self.history: list[dict[str, Any]] = []  # one record per learned generation

    # ------------------------------------------------------------------ scheduling
    def create_trial(self, tuner_id: str) -> trial_module.Trial:
        """As keras-tuner's; a worker told to wait (IDLE) waits a moment, outside the lock."""
        trial = super().create_trial(tuner_id)
        if trial.status == TrialStatus.IDLE and self.idle_wait:
            time.sleep(self.idle_wait)
        return trial

    def populate_space(self, trial_id: str) -> dict[str, Any]:
        """The next member's segment: born, or continued from its (or a better) parent."""
        if trial_id in self.decisions:  # asked again for the same trial: the same values
            return {"status": TrialStatus.RUNNING,
                    "values": dict(self.decisions[trial_id]["values"])}
        current = self.generations[-1] if self.generations else None
        if current is None or len(current) == self.generation_sizes[len(self.generations) - 1]:
            if current is not None and not self._ended(current):
                return {"status": TrialStatus.IDLE, "values": None}
            if len(self.generations) == len(self.generation_sizes):
                return {"status": TrialStatus.STOPPED, "values": None}
            if current is not None and len(self.generations) - 1 not in self.learned:
                self._learn(len(self.generations) - 1)  # normally done in end_trial
            self.plan = self._exploit(current) if current is not None else []
            if not any(entry["parent"] for entry in self.plan):  # a generation of births
                names = [hp.name for hp in self.hyperparameters.space]
                self.birth_uniforms = latin_hypercube(
                    names, self.generation_sizes[len(self.generations)], self._rng)
            self.generations.append([])
            current = self.generations[-1]
        generation, member = len(self.generations) - 1, len(current)
        decision = self._decide(generation, member)
        self.decisions[trial_id] = decision
        current.append(trial_id)
        return {"status": TrialStatus.RUNNING, "values": dict(decision["values"])}

    def _decide(self, generation: int, member: int) -> dict[str, Any]:
        """Draws a member's hyperparameters for one segment (birth or policy action)."""
        parent = self.plan[member]["parent"] if self.plan else None
        fidelity = {"tuner/epochs": generation + 1, "tuner/initial_epoch": generation,
                    "tuner/bracket": 0, "tuner/round": generation, "tuner/member": member}
        if parent is None:
            uniforms = (self.birth_uniforms[member] if member < len(self.birth_uniforms)
                        else None)
            values, action = self.birth_policy.sample(self.hyperparameters, self._rng, uniforms)
            if self.birth_at_defaults and generation == 0 and member == 0:
                # The draw above is discarded, not skipped, so the other births are the ones
                # the same seed gives without this option; an empty action keeps these values
                # (not drawn) out of the birth policy's update.
                values, action = self._defaults(), {}
            return {"kind": "birth", "generation": generation, "member": member,
                    "parent": None, "copied_from": None, "action": action,
                    "values": {**values, **fidelity}}
        start = self._choices(self.trials[parent])
        returns = self.plan[member].get("returns", 0)
        if returns and self.plateau_decay is not None:
            start = self._decayed(start, self.plateau_decay ** returns)
        state = self._state(parent, generation)
        names = [n for n in self._mutable(start)]
        values, action = self.policy.sample(state, start, names, self._rng)
        return {"kind": "segment", "generation": generation, "member": member,
                "parent": parent, "copied_from": self.plan[member]["copied_from"],
                "returns": returns,
                "state": state.tolist(), "start": start, "action": action,
                "values": {**values, **fidelity, "tuner/trial_id": parent}}

    def _decayed(self, values: dict[str, Any], factor: float) -> dict[str, Any]:
        """`values` with every log-scaled continuous hyperparameter times `factor` (not
        below its minimum)."""
        out = dict(values)
        for hp in self.hyperparameters.space:
            if (isinstance(hp, keras_tuner.engine.hyperparameters.Float)
                    and hp.sampling == "log" and hp.name in out):
                out[hp.name] = max(float(out[hp.name]) * factor, hp.min_value)
        return out

    def _defaults(self) -> dict[str, Any]:
        """The space's default value of every active hyperparameter."""
        defaults = keras_tuner.HyperParameters()
        for hp in self.hyperparameters.space:
            defaults.merge([hp])
        return {name: value for name, value in defaults.values.items()
                if defaults.is_active(name)}

    def _mutable(self, values: dict[str, Any]) -> list[str]:
        """Active, non-fixed hyperparameters that may change mid-training."""
        names = []
        for hp in self.hyperparameters.space:
            if hp.name in self.birth_only or hp.name not in values:
                continue
            if isinstance(hp, keras_tuner.engine.hyperparameters.Fixed):
                continue
            self.policy.ensure(hp)
            names.append(hp.name)
        return names

    @staticmethod
    def _choices(trial: trial_module.Trial) -> dict[str, Any]:
        return {k: v for k, v in trial.hyperparameters.values.items() if not k.startswith("tuner/")}

    def _ended(self, trial_ids: list[str]) -> bool:
        ended = set(self.end_order)
        return all(trial_id in ended for trial_id in trial_ids)

    # ------------------------------------------------------------------ state and rewards
    def quality(self, trial_id: str) -> float | None:
        """The trial's score signed so that higher is better, or None if it failed."""
        trial = self.trials[trial_id]
        if trial.status != TrialStatus.COMPLETED or trial.score is None:
            return None
        if not math.isfinite(trial.score):
            return None
        return float(trial.score) if self.objective.direction == "max" else -float(trial.score)

    def _state(self, parent: str, generation: int) -> np.ndarray:
        """s: what the policy sees before a segment that continues `parent`."""
        peers = self.generations[generation - 1]
        mine = self.quality(parent)
        others = [(1, q) for p in peers if p != parent and (q := self.quality(p)) is not None]
        rank = centred_rank((1, mine), others) if mine is not None and others else 0.0
        trend = self._trend(parent)
        metrics = self.trials[parent].metrics
        d_real = _last(metrics, "d_real")
        d_fake = _last(metrics, "d_fake")
        features = {
            "bias": 1.0,
            # The share of the budget spent before this segment.
            "progress": sum(self.generation_sizes[:generation]) / sum(self.generation_sizes),
            "rank": rank,
            "trend": trend,
            "d_gap": (d_real - d_fake) if d_real is not None and d_fake is not None else 0.0,
            "d_fake": d_fake if d_fake is not None else 0.0,
        }
        return np.array([float(np.clip(features[name], -1.0, 1.0)) for name in STATE_FEATURES])

    def _trend(self, trial_id: str) -> float:
        """Is the member's progress speeding up or slowing down? Its last reward minus the one
        before, over the spread of its generation's rewards, squashed into [-1, 1]."""
        decision = self.decisions[trial_id]
        grand = decision["parent"]
        if grand is None or "reward" not in decision or "reward" not in self.decisions[grand]:
            return 0.0
        peers = [self.decisions[t].get("reward", 0.0)
                 for t in self.generations[decision["generation"]]]
        return float(np.tanh((decision["reward"] - self.decisions[grand]["reward"])
                             / reinforce.spread(peers)))

    def _reward_quality(self, trial_id: str) -> float | None:
        """What rewards are differences of: `quality`, or for `"log_ratio"` the log of the
        score signed alike (None where the score is not positive: no log)."""
        quality = self.quality(trial_id)
        if self.reward != "log_ratio" or quality is None:
            return quality
        score = float(self.trials[trial_id].score)
        if score <= 0.0:
            return None
        return math.log(score) if self.objective.direction == "max" else -math.log(score)

    def _rewards(self, trial_ids: list[str]) -> list[float]:
        """r_i: the quality each segment added (a birth: the quality it reached)."""
        raw: list[float] = []
        for trial_id in trial_ids:
            quality = self._reward_quality(trial_id)
            parent = self.decisions[trial_id]["parent"]
            base = self._reward_quality(parent) if parent is not None else 0.0
            added = math.nan if quality is None or base is None else quality - base
            if self.reward == "capped" and parent is not None and math.isfinite(added):
                added = max(added, -abs(base))  # r >= -|q_parent|: FID at most doubled
            raw.append(added)
        penalty = reinforce.failure_reward(raw)
        return [r if math.isfinite(r) else penalty for r in raw]

    # ------------------------------------------------------------------ learning
    def end_trial(self, trial: trial_module.Trial) -> None:
        """Ends a trial as keras-tuner does; the last of a generation triggers the update."""
        super().end_trial(trial)
        self._maybe_learn()

    @keras_tuner.synchronized
    def _maybe_learn(self) -> None:
        if not self.generations:
            return
        generation = len(self.generations) - 1
        current = self.generations[generation]
        if (generation not in self.learned and len(current) == self.generation_sizes[generation]
                and self._ended(current)):
            self._learn(generation)
            self.save()

    def _learn(self, generation: int) -> None:
        """One REINFORCE step per policy on the segments of a finished generation."""
        trial_ids = self.generations[generation]
        rewards = self._rewards(trial_ids)
        advantages = self._advantages(generation, rewards)
        births, segments = [], []
        for trial_id, reward, advantage in zip(trial_ids, rewards, advantages, strict=True):
            decision = self.decisions[trial_id]
            decision["reward"], decision["advantage"] = float(reward), float(advantage)
            (births if decision["kind"] == "birth" else segments).append(decision)
        if segments:
            self._schedule_step(segments)
        if births:
            # theta <- theta + alpha * sum_i A_i grad log pi(a_i) / sqrt(n) (+ entropy)
            batch = [(d["action"], self.birth_policy.log_prob(d["action"]), d["advantage"])
                     for d in births if d["action"]]
            self.birth_policy.reinforce_batch(batch, clip=math.inf)
            self.birth_policy.updates += 1
        self.learned.append(generation)
        self.history.append({
            "generation": generation,
            "trial_ids": list(trial_ids),
            "rewards": [float(r) for r in rewards],
            "advantages": [float(a) for a in advantages],
            "policy": self.policy_summary(),
        })

    def _advantages(self, generation: int, rewards: list[float]) -> np.ndarray:
        """A_i for a generation's rewards under the chosen baseline (births: the population's).

        A birth's reward is the quality reached, a segment's the quality added, so only the
        segments' rewards feed the running baseline, updated after it has been used."""
        births = self.decisions[self.generations[generation][0]]["kind"] == "birth"
        if births or self.baseline == "population":
            return reinforce.population_advantages(rewards)
        if self.baseline == "floor":
            # b = max(mean_i r_i, 0): where the mean lost, only moves that gained are reinforced.
            return reinforce.running_advantages(rewards, max(float(np.mean(rewards)), 0.0))
        if self.baseline == "median":
            earlier = [self.decisions[t]["reward"] for g in range(generation)
                       for t in self.generations[g]
                       if self.decisions[t]["kind"] == "segment" and "reward" in self.decisions[t]]
            if not earlier:  # the first generation of segments: its own mean
                return reinforce.population_advantages(rewards)
            # b: a median of earlier rewards, robust to the heavy tail of diverged segments.
            return reinforce.running_advantages(
                rewards, float(np.median(earlier[-self.population_size:])))
        if self.reward_baseline is None:  # the first generation of segments sets b
            advantages = reinforce.population_advantages(rewards)
        else:
            advantages = reinforce.running_advantages(rewards, self.reward_baseline)
        mean = float(np.mean(rewards))
        # b <- d b + (1 - d) mean(r): earlier generations' rewards, the recent ones weighing more.
        self.reward_baseline = mean if self.reward_baseline is None else (
            BASELINE_DECAY * self.reward_baseline + (1.0 - BASELINE_DECAY) * mean)
        return advantages

    def _schedule_step(self, decisions: list[dict[str, Any]]) -> None:
        """theta <- theta + alpha * [ (1/N) sum_i A_i grad log pi(a_i | s_i) + beta grad H ]."""
        states = [np.asarray(d["state"]) for d in decisions]
        grad_log_probs = [self.policy.grad_log_prob(s, d["start"], d["action"])
                          for s, d in zip(states, decisions, strict=True)]
        gradient = reinforce.policy_gradient(grad_log_probs, [d["advantage"] for d in decisions])
        entropy = reinforce.policy_gradient(
            [self.policy.grad_entropy(s, d["start"], list(d["action"]))
             for s, d in zip(states, decisions, strict=True)],
            [1.0] * len(decisions),
        )
        new = reinforce.ascent_step(self.policy.parameters(), gradient, entropy,
                                    self.learning_rate, self.entropy_coef)
        self.policy.set_parameters(new)
        self.policy.updates += 1

    def _exploit(self, previous: list[str]) -> list[dict[str, Any]]:
        """Parents for the next generation: the bottom members take over the top ones.

        Where the next generation is smaller, its members are the best of this one, each going
        on with its own model (the cut is the exploitation step)."""
        size = self.generation_sizes[len(self.generations)]
        scored = [(q, m) for m, trial_id in enumerate(previous)
                  if (q := self.quality(trial_id)) is not None]
        if not scored:
            return [{"parent": None, "copied_from": None} for _ in range(size)]  # reborn
        ranked = [m for _, m in sorted(scored, key=lambda item: (-item[0], item[1]))]
        if size < len(previous):
            kept = sorted(ranked[:size])
            plan = [{"parent": previous[m], "copied_from": None} for m in kept]
            for i in range(size - len(kept)):  # fewer scored members than places: copies
                source = ranked[i % len(ranked)]
                plan.append({"parent": previous[source], "copied_from": source})
            return plan
        plan = [{"parent": trial_id, "copied_from": None} for trial_id in previous]
        failed = [m for m, trial_id in enumerate(previous) if self.quality(trial_id) is None]
        n_swap = 0
        if self.exploit_fraction > 0 and len(ranked) >= 2:
            n_swap = max(1, round(self.exploit_fraction * len(previous)))
            n_swap = min(n_swap, len(ranked) // 2)
        top = ranked[:max(n_swap, 1)]
        bottom = ranked[len(ranked) - n_swap:] if n_swap else []
        losers = failed + bottom  # a diverged member always restarts from a good one
        for i, member in enumerate(losers):
            source = top[i % len(top)]
            plan[member] = {"parent": previous[source], "copied_from": source}
        elite = self._best_so_far() if self.elitist and losers else None
        if elite is not None and elite not in previous and (
                self.quality(elite) > self.quality(previous[ranked[0]])):
            # The how-many-th return to this segment (for plateau_decay).
            returns = 1 + sum(1 for d in self.decisions.values()
                              if d["parent"] == elite and d.get("returns", 0))
            plan[losers[0]] = {"parent": elite, "copied_from": self.decisions[elite]["member"],
                               "returns": returns}
        return plan

    def _best_so_far(self) -> str | None:
        """The best completed segment of every generation so far."""
        scored = [(q, trial_id) for generation in self.generations for trial_id in generation
                  if (q := self.quality(trial_id)) is not None]
        return max(scored)[1] if scored else None

    # ------------------------------------------------------------------ reading
    @property
    def updates(self) -> int:
        return self.policy.updates

    def policy_summary(self) -> dict[str, dict[str, float]]:
        """The schedule policy's action probabilities at mid-training, for a median member,
        from the space's defaults."""
        state = np.zeros(len(STATE_FEATURES))
        state[STATE_FEATURES.index("bias")] = 1.0
        state[STATE_FEATURES.index("progress")] = 0.5
        defaults = {hp.name: hp.default for hp in self.hyperparameters.space}
        return self.policy.summary(state, defaults)

    def lineage(self) -> list[dict[str, Any]]:
        """A row per segment: trial, generation, member, parent trial, copied-from member."""
        return [{"trial_id": trial_id, "generation": d["generation"], "member": d["member"],
                 "parent": d["parent"], "copied_from": d["copied_from"],
                 "quality": self.quality(trial_id) if trial_id in self.trials else None,
                 "values": {k: v for k, v in d["values"].items() if not k.startswith("tuner/")}}
                for trial_id, d in self.decisions.items()]

    def schedule_of(self, trial_id: str) -> list[dict[str, Any]]:
        """The hyperparameters of every segment on the path from a birth to `trial_id`."""
        path = []
        while trial_id is not None:
            decision = self.decisions[trial_id]
            path.append({"trial_id": trial_id, "generation": decision["generation"],
                         **{k: v for k, v in decision["values"].items()
                            if not k.startswith("tuner/")}})
            trial_id = decision["parent"]
        return path[::-1]

    # ------------------------------------------------------------------ state
    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        state[STATE_KEY] = {
            "population_size": self.population_size,
            "segments": self.segments,
            "final_population": self.final_population,
            "birth_population": self.birth_population,
            "birth_only": self.birth_only,
            "exploit_fraction": self.exploit_fraction,
            "elitist": self.elitist,
            "plateau_decay": self.plateau_decay,
            "birth_at_defaults": self.birth_at_defaults,
            "baseline": self.baseline,
            "reward_baseline": self.reward_baseline,
            "reward": self.reward,
            "learning_rate": self.learning_rate,
            "entropy_coef": self.entropy_coef,
            "birth_policy": self.birth_policy.get_state(),
            "policy": self.policy.get_state(),
            "generations": self.generations,
            "decisions": self.decisions,
            "plan": self.plan,
            "birth_uniforms": self.birth_uniforms,
            "learned": self.learned,
            "history": self.history,
            "rng": self._rng.bit_generator.state,
        }
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        ours = state[STATE_KEY]
        self.population_size = int(ours["population_size"])
        self.segments = int(ours["segments"])
        # Older state files: no cut, no screened births.
        self.final_population = int(ours.get("final_population", self.population_size))
        self.birth_population = int(ours.get("birth_population", self.population_size))
        self.generation_sizes = generation_sizes(self.population_size, self.segments,
                                                 self.final_population, self.birth_population)
        self.birth_only = list(ours["birth_only"])
        self.exploit_fraction = float(ours["exploit_fraction"])
        self.elitist = bool(ours.get("elitist", False))  # older state files: not elitist
        self.plateau_decay = ours.get("plateau_decay")
        self.birth_at_defaults = bool(ours.get("birth_at_defaults", False))
        self.baseline = ours.get("baseline", "population")  # older state files: population
        self.reward_baseline = ours.get("reward_baseline")
        self.reward = ours.get("reward", "difference")  # older state files: differences
        self.learning_rate = float(ours["learning_rate"])
        self.entropy_coef = float(ours["entropy_coef"])
        self.birth_policy = HyperparameterPolicy.from_state(ours["birth_policy"])
        self.policy = SchedulePolicy.from_state(ours["policy"])
        self.generations = [list(g) for g in ours["generations"]]
        self.decisions = ours["decisions"]
        self.plan = ours["plan"]
        self.birth_uniforms = ours.get("birth_uniforms", [])  # older state files: i.i.d. births
        self.learned = [int(g) for g in ours["learned"]]
        self.history = ours["history"]
        self._rng = np.random.default_rng()
        self._rng.bit_generator.state = ours["rng"]

    def reload(self) -> None:
        """Reloads as keras-tuner does, then learns from a generation that ended unlearned."""
        super().reload()
        self._maybe_learn()


def check_final_population(final_population: Any, population_size: int) -> None:
    """Raises ValueError unless `final_population` is None or an int in [1, population_size]."""
    if final_population is not None and (
            isinstance(final_population, bool) or not isinstance(final_population, int)
            or not 1 <= final_population <= population_size):
        raise ValueError(f"final_population must be None or an int in [1, population_size="
                         f"{population_size}], got {final_population!r}.")


def check_birth_only(birth_only: Any,
                     hyperparameters: keras_tuner.HyperParameters | None = None) -> None:
    """Raises ValueError unless `birth_only` is a list of names (of `hyperparameters` when
    given and not empty)."""
    if (isinstance(birth_only, str) or not isinstance(birth_only, Sequence)
            or not all(isinstance(name, str) for name in birth_only)):
        raise ValueError(f"birth_only must be a list of hyperparameter names, got "
                         f"{birth_only!r}.")
    known = [hp.name for hp in hyperparameters.space] if hyperparameters is not None else []
    unknown = [name for name in birth_only if known and name not in known]
    if unknown:
        raise ValueError(f"birth_only names {unknown}, not in the search space "
                         f"({', '.join(known)}); name only hyperparameters of the space.")


def check_plateau_decay(plateau_decay: Any, elitist: bool) -> None:
    """Raises ValueError unless `plateau_decay` is None or a number in (0, 1) with `elitist`."""
    if plateau_decay is None:
        return
    if isinstance(plateau_decay, bool) or not (
            isinstance(plateau_decay, (int, float)) and 0 < plateau_decay < 1):
        raise ValueError(f"plateau_decay must be a number in (0, 1) (0.5 halves the learning "
                         f"rates at each return to the best segment) or None, got "
                         f"{plateau_decay!r}.")
    if not elitist:
        raise ValueError("plateau_decay acts on returns to the best segment, which only "
                         "elitist=True makes; pass elitist=True or drop plateau_decay.")


def check_birth_population(birth_population: Any, population_size: int, segments: int) -> None:
    """Raises ValueError unless `birth_population` is None or an int in
    [population_size, population_size * (segments - 1)] (births leave room for a later segment)."""
    top = max(population_size * (segments - 1), population_size)
    if birth_population is not None and (
            isinstance(birth_population, bool) or not isinstance(birth_population, int)
            or not population_size <= birth_population <= top):
        raise ValueError(f"birth_population must be None or an int in [population_size="
                         f"{population_size}, {top}] (population_size x (segments - 1)), got "
                         f"{birth_population!r}.")


def generation_sizes(population_size: int, segments: int, final_population: int | None = None,
                     birth_population: int | None = None) -> list[int]:
    """Members per generation: `birth_population` born, then `population_size` until half of
    the budget of `population_size * segments` segments is spent, then `final_population`
    (the last generation takes what is left). None: no cut, or as many born as go on.

    >>> generation_sizes(4, 8, 2)
    [4, 4, 4, 4, 2, 2, 2, 2, 2, 2, 2, 2]
    >>> generation_sizes(4, 8, 4, birth_population=8)
    [8, 4, 4, 4, 4, 4, 4]
    """
    budget = population_size * segments
    sizes: list[int] = [min(birth_population or population_size, budget)]
    while sum(sizes) < budget:
        size = population_size if 2 * sum(sizes) < budget else final_population or population_size
        sizes.append(min(size, budget - sum(sizes)))
    return sizes


def _last(metrics: Any, name: str) -> float | None:
    if not metrics.exists(name):
        return None
    value = metrics.get_last_value(name)
    return float(value) if value is not None and math.isfinite(value) else None
