"""The trajectory search: update rules term by term, the schedule policy, the oracle.

The learning tests use a synthetic training run whose best learning rate changes halfway
(1e-2.5 early, 1e-3.7 late), so no fixed configuration can be best throughout; a segment is
instant, so hundreds of them run in seconds through a real keras-tuner Tuner and Oracle.
"""

from __future__ import annotations

import gc
import math

import keras
import keras_tuner
import numpy as np
import pytest

from rlhf_keras import reinforce
from rlhf_keras.policy import HyperparameterPolicy, latin_hypercube
from rlhf_keras.schedule_policy import STATE_FEATURES, SchedulePolicy
from rlhf_keras.trajectory_oracle import TrajectoryOracle
from rlhf_keras.tuner import ContinuingTuner

SEGMENTS = 20
EARLY, LATE, WIDTH = -2.5, -3.7, 0.5  # best log10(lr) before / after halfway; bump width


def best_log_lr(segment: int) -> float:
    return EARLY if segment < SEGMENTS // 2 else LATE


def gain(lr: float, segment: int) -> float:
    """What one segment adds: 1 at the segment's best learning rate, falling off around it."""
    return math.exp(-((math.log10(lr) - best_log_lr(segment)) ** 2) / (2 * WIDTH**2))


def lr_space() -> keras_tuner.HyperParameters:
    hp = keras_tuner.HyperParameters()
    hp.Float("lr", 1e-5, 1e-1, sampling="log", default=1e-3)
    return hp


class ScheduleTask(keras_tuner.engine.base_tuner.BaseTuner):
    """Each trial is a training segment continuing its parent: quality += gain(lr, segment)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.quality: dict[str, float] = {}

    def run_trial(self, trial, *args, **kwargs):
        values = trial.hyperparameters.values
        parent = values.get("tuner/trial_id")
        start = self.quality[parent] if parent is not None else 0.0
        self.quality[trial.trial_id] = start + gain(values["lr"], values["tuner/round"])
        return {"score": self.quality[trial.trial_id]}


def run_search(tmp_path, seed: int, population: int = 8, **kwargs) -> TrajectoryOracle:
    oracle = TrajectoryOracle(objective=keras_tuner.Objective("score", "max"),
                              population_size=population, segments=SEGMENTS,
                              hyperparameters=lr_space(), seed=seed, **kwargs)
    tuner = ScheduleTask(oracle=oracle, directory=str(tmp_path), project_name=f"s{seed}")
    tuner.search(verbose=0)
    return tuner.oracle


def best_fixed_total() -> float:
    grid = np.logspace(-5, -1, 401)
    return max(sum(gain(lr, t) for t in range(SEGMENTS)) for lr in grid)


# ---------------------------------------------------------------------------- update rules

def test_population_baseline_centres_and_removes_a_common_shift():
    rewards = [3.0, 5.0, 10.0, 2.0]
    advantages = reinforce.population_advantages(rewards)
    assert abs(advantages.sum()) < 1e-12
    # What every member gained alike (training longer) teaches nothing: a frozen baseline
    # would turn a common +100 into +100 for everyone.
    np.testing.assert_allclose(reinforce.population_advantages([r + 100 for r in rewards]),
                               advantages)
    # Scale-free: an FID-sized reward moves the policy as far as a loss-sized one.
    np.testing.assert_allclose(reinforce.population_advantages([r * 1000 for r in rewards]),
                               advantages)
    assert np.argmax(advantages) == 2 and np.argmin(advantages) == 3


def test_running_baseline_lets_a_whole_generation_be_discouraged():
    """Two members that both got worse than the generations before them: the population
    baseline still calls one of them good (+1), a running baseline calls both bad."""
    rewards, earlier = [-5.0, -60.0], 2.0
    np.testing.assert_allclose(reinforce.population_advantages(rewards), [1.0, -1.0])
    advantages = reinforce.running_advantages(rewards, earlier)
    assert (advantages < 0).all() and advantages[0] > advantages[1]
    # Relative to b, not to each other: a baseline frozen at 0 would rank -5 above b = -10.
    assert (reinforce.running_advantages([-5.0, -6.0], -10.0) > 0).all()
    # Shift- and scale-free, as the population's.
    np.testing.assert_allclose(reinforce.running_advantages([r + 100 for r in rewards], 102.0),
                               advantages)
    np.testing.assert_allclose(reinforce.running_advantages([r * 1000 for r in rewards], 2000.0),
                               advantages)


def test_failure_reward_is_below_every_finite_reward():
    assert reinforce.failure_reward([1.0, 4.0, math.nan]) < 1.0
    assert reinforce.failure_reward([math.nan]) == -1.0


def test_policy_gradient_step_makes_a_rewarded_action_more_likely():
    policy = SchedulePolicy(stickiness=0.0)
    hp = lr_space().space[0]
    policy.ensure(hp)
    state = np.array([1.0, 0.5, 0.0, 0.0, 0.0, 0.0])
    values = {"lr": 1e-3}
    up, down = {"lr": 2}, {"lr": 0}
    grads = [policy.grad_log_prob(state, values, up), policy.grad_log_prob(state, values, down)]
    gradient = reinforce.policy_gradient(grads, [1.0, -1.0])
    before = policy.log_prob(state, values, up)
    policy.set_parameters(reinforce.ascent_step(policy.parameters(), gradient, {}, 0.5, 0.0))
    assert policy.log_prob(state, values, up) > before + 0.1
    assert policy.log_prob(state, values, down) < before - 0.1


def test_entropy_bonus_spreads_a_peaked_policy():
    policy = SchedulePolicy(stickiness=3.0)  # "keep" dominates
    hp = lr_space().space[0]
    policy.ensure(hp)
    state = np.array([1.0, 0.5, 0.0, 0.0, 0.0, 0.0])

    def entropy() -> float:
        p = policy.heads["lr"].probabilities(state, 1e-3)
        return float(-(p * np.log(p)).sum())

    before = entropy()
    bonus = policy.grad_entropy(state, {"lr": 1e-3}, ["lr"])
    policy.set_parameters(reinforce.ascent_step(policy.parameters(), {}, bonus, 0.5, 1.0))
    assert entropy() > before + 0.01


@pytest.mark.parametrize("balance", [None, 0.0, 2.0])
def test_schedule_policy_gradients_match_finite_differences(balance):
    rng = np.random.default_rng(0)
    policy = SchedulePolicy(balance=balance)
    space = lr_space()
    space.Float("d_lr", 1e-5, 1e-1, sampling="log", default=1e-3)
    space.Choice("beta_1", [0.0, 0.5, 0.9], default=0.5)
    for hp in space.space:
        policy.ensure(hp)
    for head in policy.heads.values():
        head.weights = rng.normal(size=head.weights.shape)
    state = rng.uniform(-1, 1, len(STATE_FEATURES))
    values = {"lr": 3e-4, "d_lr": 2e-2, "beta_1": 0.5}
    action = {"lr": 0, "d_lr": 1, "beta_1": 2}
    analytic = policy.grad_log_prob(state, values, action)
    params = policy.parameters()
    for key, value in params.items():
        numeric = np.zeros_like(value, dtype=float)
        for index in np.ndindex(value.shape):
            for sign in (1, -1):
                shifted = {k: np.array(v, dtype=float) for k, v in params.items()}
                shifted[key][index] += sign * 1e-6
                policy.set_parameters(shifted)
                numeric[index] += sign * policy.log_prob(state, values, action) / 2e-6
        policy.set_parameters(params)
        np.testing.assert_allclose(analytic[key], numeric, atol=1e-5)


def test_balance_lets_the_policy_learn_to_move_one_rate_towards_another():
    """Rewarded for moving lr towards d_lr, where d_lr is anywhere: a head that sees only its
    own value cannot tell which way is right; with `balance` it learns it."""
    space = lr_space()
    space.Float("d_lr", 1e-5, 1e-1, sampling="log", default=1e-3)
    lr_hp, d_lr_hp = space.space

    def train_and_score(balance: bool) -> float:
        rng = np.random.default_rng(0)
        policy = SchedulePolicy(stickiness=0.0, balance=0.0 if balance else None)
        for hp in space.space:
            policy.ensure(hp)
        state = np.array([1.0, 0.5, 0.0, 0.0, 0.0, 0.0])

        def episode() -> tuple[dict, dict, float]:
            # d_lr a little above or below lr at random: lr's own position says nothing.
            start = rng.uniform(0.2, 0.8)
            units = (start, start + rng.choice([-0.15, 0.15]))
            values = {"lr": lr_hp.prob_to_value(units[0]), "d_lr": d_lr_hp.prob_to_value(units[1])}
            new, action = policy.sample(state, values, ["lr"], rng)
            towards = abs(lr_hp.value_to_prob(new["lr"]) - units[1]) < abs(units[0] - units[1])
            return values, action, 1.0 if towards else -1.0

        for _ in range(300):
            batch = [episode() for _ in range(8)]
            gradient = reinforce.policy_gradient(
                [policy.grad_log_prob(state, v, a) for v, a, _ in batch],
                [r - np.mean([b[2] for b in batch]) for _, _, r in batch])
            policy.set_parameters(reinforce.ascent_step(policy.parameters(), gradient, {},
                                                        2.0, 0.0))
        return float(np.mean([episode()[2] > 0 for _ in range(400)]))

    with_balance, without = train_and_score(True), train_and_score(False)
    assert with_balance > 0.8, with_balance
    assert without < 0.6, without


def test_balance_starts_pulling_each_rate_towards_the_other_and_is_kept_with_the_policy():
    state = np.array([1.0, 0.5, 0.0, 0.0, 0.0, 0.0])
    space = lr_space()
    space.Float("d_lr", 1e-5, 1e-1, sampling="log", default=1e-3)
    pulled = SchedulePolicy(balance=5.0)
    for hp in space.space:
        pulled.ensure(hp)
    above = pulled.summary(state, {"lr": 1e-2, "d_lr": 1e-4})  # lr 2 decades above d_lr
    assert above["lr"]["down"] > 0.6 > 0.1 > above["lr"]["up"]
    assert above["d_lr"]["up"] > 0.6 > 0.1 > above["d_lr"]["down"]
    level = pulled.summary(state, {"lr": 1e-3, "d_lr": 1e-3})
    assert level["lr"]["up"] == pytest.approx(level["lr"]["down"])  # no pull at the balance
    for bad in (True, -1.0, math.inf, "5"):
        with pytest.raises(ValueError, match=r"balance must be None \(off\) or a number >= 0"):
            SchedulePolicy(balance=bad)

    policy = SchedulePolicy(balance=0.0)
    space = lr_space()
    space.Float("d_lr", 1e-5, 1e-1, sampling="log", default=1e-3)
    for hp in space.space:
        policy.ensure(hp)
    policy.heads["lr"].weights[2, -2] = 6.0  # "up" when lr sits above d_lr (the balance input)
    state = np.array([1.0, 0.5, 0.0, 0.0, 0.0, 0.0])
    values = {"lr": 1e-2, "d_lr": 1e-4}
    restored = SchedulePolicy.from_state(policy.get_state())
    assert restored.balance == 0.0
    probs = restored.summary(state, values)["lr"]
    assert probs == policy.summary(state, values)["lr"]
    assert probs["up"] > 0.8  # the balance input reached the head


# ---------------------------------------------------------------------------- the oracle

def test_trajectory_search_beats_the_best_fixed_learning_rate(tmp_path):
    """Learning, not luck: on every seed the schedule found beats the best constant rate, and
    the policy learned to lower the learning rate late in training rather than early."""
    fixed = best_fixed_total()
    for seed in (0, 1, 2):
        oracle = run_search(tmp_path, seed)
        best = oracle.get_best_trials(1)[0]
        assert best.score > fixed + 1.0, (seed, best.score, fixed)
        schedule = [row["lr"] for row in oracle.schedule_of(best.trial_id)]
        assert len(schedule) == SEGMENTS
        assert schedule[-1] < schedule[SEGMENTS // 2 - 1]  # lowered after the change


def test_exploit_copies_the_best_member_and_every_action_is_learned_once(tmp_path):
    oracle = run_search(tmp_path, seed=0, population=4)
    assert len(oracle.trials) == 4 * SEGMENTS
    assert oracle.learned == list(range(SEGMENTS))
    assert oracle.policy.updates == SEGMENTS - 1  # generation 0 is births
    copies = [row for row in oracle.lineage() if row["copied_from"] is not None]
    assert len(copies) == SEGMENTS - 1  # one member of four taken over per generation
    for row in copies:
        parent = oracle.decisions[row["parent"]]
        generation = oracle.generations[parent["generation"]]
        scores = [oracle.quality(t) for t in generation]
        assert oracle.quality(row["parent"]) == max(scores)
        assert parent["member"] == row["copied_from"] != row["member"]


def test_a_cut_population_keeps_the_best_and_trains_them_for_the_rest_of_the_budget(tmp_path):
    oracle = run_search(tmp_path, seed=0, population=4, final_population=2)
    half = SEGMENTS // 2  # generations of 4 until half of the 4 x SEGMENTS segments is spent
    assert [len(g) for g in oracle.generations] == [4] * half + [2] * (2 * half)
    assert len(oracle.trials) == 4 * SEGMENTS  # the same budget
    assert oracle.learned == list(range(3 * half))
    before, after = oracle.generations[half - 1], oracle.generations[half]
    kept = sorted(before, key=lambda t: -oracle.quality(t))[:2]
    cut = [oracle.decisions[t] for t in after]
    assert sorted(d["parent"] for d in cut) == sorted(kept)  # the best two go on ...
    assert all(d["copied_from"] is None for d in cut)  # ... each with its own model
    best = oracle.get_best_trials(1)[0]
    assert len(oracle.schedule_of(best.trial_id)) == 3 * half  # a lineage 1.5x as long
    state = oracle._state(after[0], half + 1)  # noqa: SLF001
    assert state[STATE_FEATURES.index("progress")] == pytest.approx((4 * half + 2) / (4 * SEGMENTS))


def test_screened_births_keep_the_best_and_spend_the_same_budget(tmp_path):
    """birth_population=8 of 4: eight births spread over the octiles of the birth policy,
    then the best four go on, each with its own model, inside the same 4 x SEGMENTS budget."""
    oracle = run_search(tmp_path, seed=3, population=4, birth_population=8)
    sizes = [len(g) for g in oracle.generations]
    assert sizes == [8] + [4] * (SEGMENTS - 2)
    assert len(oracle.trials) == 4 * SEGMENTS
    births = oracle.generations[0]
    assert len(oracle.birth_uniforms) == 8
    octiles = sorted(int(8 * u["lr"]) for u in oracle.birth_uniforms)
    assert octiles == list(range(8))
    best_four = sorted(births, key=lambda t: -oracle.quality(t))[:4]
    after = [oracle.decisions[t] for t in oracle.generations[1]]
    assert sorted(d["parent"] for d in after) == sorted(best_four)
    assert all(d["copied_from"] is None for d in after)
    restarted = TrajectoryOracle(objective=keras_tuner.Objective("score", "max"),
                                 population_size=4, segments=SEGMENTS, hyperparameters=lr_space())
    restarted.set_state(oracle.get_state())  # as a resumed search reads oracle.json
    assert restarted.generation_sizes == sizes and restarted.birth_population == 8
    best = oracle.get_best_trials(1)[0]
    assert len(oracle.schedule_of(best.trial_id)) == SEGMENTS - 1


def test_a_birth_at_the_defaults_starts_where_training_without_a_search_would(tmp_path):
    """birth_at_defaults: the first member born takes the space's defaults (lr 1e-3 here), is
    kept out of the birth policy's update (its values were not drawn), and every other birth
    is the one the same seed draws without it."""
    plain = run_search(tmp_path / "plain", seed=4, population=4, birth_population=8)
    oracle = run_search(tmp_path / "defaults", seed=4, population=4, birth_population=8,
                        birth_at_defaults=True)
    first, *others = [oracle.decisions[t] for t in oracle.generations[0]]
    assert first["values"]["lr"] == 1e-3 and first["action"] == {}
    assert plain.decisions[plain.generations[0][0]]["values"]["lr"] != 1e-3
    assert [d["values"] for d in others] == [
        plain.decisions[t]["values"] for t in plain.generations[0][1:]]
    # Had the defaults been learned from as a drawn action, the birth policy would differ.
    learned_from = [(d["action"], d["advantage"]) for d in others]
    policy = type(oracle.birth_policy)(learning_rate=oracle.learning_rate,
                                       entropy_coef=oracle.entropy_coef)
    policy.ensure(lr_space().space[0])
    policy.reinforce_batch([(a, policy.log_prob(a), adv) for a, adv in learned_from],
                           clip=math.inf)
    np.testing.assert_allclose(policy.entries["lr"].params,
                               oracle.birth_policy.entries["lr"].params)
    restarted = TrajectoryOracle(objective=keras_tuner.Objective("score", "max"),
                                 population_size=4, segments=SEGMENTS, hyperparameters=lr_space())
    restarted.set_state(oracle.get_state())
    assert restarted.birth_at_defaults is True


class SetbackTask(ScheduleTask):
    """As ScheduleTask, but every member's segment 3 loses more than it can gain."""

    def run_trial(self, trial, *args, **kwargs):
        super().run_trial(trial, *args, **kwargs)
        if trial.hyperparameters.values["tuner/round"] == 3:
            self.quality[trial.trial_id] -= 10.0
        return {"score": self.quality[trial.trial_id]}


def run_setback(tmp_path, **kwargs) -> TrajectoryOracle:
    """A 4 x 6 search of SetbackTask (every member loses 10 in generation 3)."""
    oracle = TrajectoryOracle(objective=keras_tuner.Objective("score", "max"),
                              population_size=4, segments=6, hyperparameters=lr_space(), seed=0,
                              **kwargs)
    tuner = SetbackTask(oracle=oracle, directory=str(tmp_path), project_name="setback")
    tuner.search(verbose=0)
    return tuner.oracle


@pytest.mark.parametrize("elitist", [False, True])
def test_an_elitist_population_goes_back_to_its_best_model_after_a_setback(tmp_path, elitist):
    oracle = run_setback(tmp_path, elitist=elitist)
    copies = [oracle.decisions[t] for t in oracle.generations[4]
              if oracle.decisions[t]["copied_from"] is not None]
    assert len(copies) == 1
    parent = oracle.decisions[copies[0]["parent"]]
    best_before = max(oracle.generations[2], key=oracle.quality)
    if elitist:  # back to the best segment before the setback (or one as good: a tie)
        assert parent["generation"] == 2
        assert oracle.quality(copies[0]["parent"]) == oracle.quality(best_before)
        assert copies[0]["copied_from"] == parent["member"]
    else:  # the best of the setback generation
        assert parent["generation"] == 3
    assert oracle.get_state()["trajectory"]["elitist"] is elitist


class PlateauTask(ScheduleTask):
    """As ScheduleTask, but every segment after round 1 loses more than it can gain: the
    best segment stays in generation 1, and an elitist population goes back to it each time."""

    def run_trial(self, trial, *args, **kwargs):
        super().run_trial(trial, *args, **kwargs)
        if trial.hyperparameters.values["tuner/round"] >= 2:
            self.quality[trial.trial_id] -= 10.0
        return {"score": self.quality[trial.trial_id]}


@pytest.mark.parametrize("plateau_decay", [None, 0.5])
def test_each_return_to_the_best_segment_reduces_the_learning_rates_once_more(tmp_path,
                                                                             plateau_decay):
    oracle = TrajectoryOracle(objective=keras_tuner.Objective("score", "max"),
                              population_size=2, segments=6, hyperparameters=lr_space(),
                              seed=0, elitist=True, plateau_decay=plateau_decay)
    tuner = PlateauTask(oracle=oracle, directory=str(tmp_path), project_name="plateau")
    tuner.search(verbose=0)
    oracle = tuner.oracle
    elite = max(oracle.generations[1], key=oracle.quality)
    returns = [oracle.decisions[t] for g in oracle.generations[3:] for t in g
               if oracle.decisions[t].get("returns")]
    # Generations 3, 4, 5 each go back to generation 1's best: the 1st, 2nd, 3rd return.
    assert [d["generation"] for d in returns] == [3, 4, 5]
    assert [d["parent"] for d in returns] == [elite] * 3
    assert [d["returns"] for d in returns] == [1, 2, 3]
    elite_lr = oracle.decisions[elite]["values"]["lr"]
    factor = 1.0 if plateau_decay is None else plateau_decay
    for decision in returns:  # the policy acts from the reduced rate
        expected = max(elite_lr * factor ** decision["returns"], 1e-5)
        assert decision["start"]["lr"] == pytest.approx(expected)
    assert oracle.get_state()["trajectory"]["plateau_decay"] == plateau_decay
    reloaded = TrajectoryOracle(objective=keras_tuner.Objective("score", "max"),
                                hyperparameters=lr_space())
    reloaded.set_state(oracle.get_state())
    assert reloaded.plateau_decay == plateau_decay


@pytest.mark.parametrize("value", [0, 1, 1.5, -0.5, True, "0.5"])
def test_a_plateau_decay_outside_0_1_is_refused(value):
    with pytest.raises(ValueError, match="plateau_decay must be a number in \\(0, 1\\)"):
        TrajectoryOracle(objective="score", hyperparameters=lr_space(), elitist=True,
                         plateau_decay=value)
    with pytest.raises(ValueError, match="pass elitist=True"):
        TrajectoryOracle(objective="score", hyperparameters=lr_space(), plateau_decay=0.5)


@pytest.mark.parametrize("baseline", ["population", "running"])
def test_a_running_baseline_discourages_every_move_of_a_setback_generation(tmp_path, baseline):
    oracle = run_setback(tmp_path, baseline=baseline)
    history = {h["generation"]: h for h in oracle.history}
    setback = np.array(history[3]["advantages"])  # every member lost 10 in generation 3
    if baseline == "running":
        assert (setback < 0).all()
        # b: the running mean of the segment generations before (1 and 2), decay 0.5 ...
        means = [float(np.mean(history[g]["rewards"])) for g in sorted(history) if g > 0]
        np.testing.assert_allclose(
            setback, reinforce.running_advantages(history[3]["rewards"],
                                                  0.5 * means[0] + 0.5 * means[1]))
        # ... and so on to the end, saved with the oracle's state.
        b = means[0]
        for mean in means[1:]:
            b = 0.5 * b + 0.5 * mean
        assert oracle.get_state()["trajectory"]["reward_baseline"] == pytest.approx(b)
    else:
        assert abs(setback.sum()) < 1e-9 and (setback > 0).any()


class DivergeTask(ScheduleTask):
    """As ScheduleTask, but in segment 2 member 0 diverges (-1000), and in segment 3 every
    member gets a little worse (-0.5): the pattern of a GAN whose learning rate broke it."""

    def run_trial(self, trial, *args, **kwargs):
        super().run_trial(trial, *args, **kwargs)
        values = trial.hyperparameters.values
        parent = values.get("tuner/trial_id")
        if values["tuner/round"] == 2 and values["tuner/member"] == 0:
            self.quality[trial.trial_id] = self.quality[parent] - 1000.0
        if values["tuner/round"] == 3:
            self.quality[trial.trial_id] = self.quality[parent] - 0.5
        return {"score": self.quality[trial.trial_id]}


@pytest.mark.parametrize("baseline", ["running", "median"])
def test_a_median_baseline_is_not_dragged_down_by_one_diverged_segment(tmp_path, baseline):
    oracle = TrajectoryOracle(objective=keras_tuner.Objective("score", "max"),
                              population_size=4, segments=6, hyperparameters=lr_space(), seed=0,
                              baseline=baseline)
    DivergeTask(oracle=oracle, directory=str(tmp_path), project_name="d").search(verbose=0)
    history = {h["generation"]: h for h in oracle.history}
    assert min(history[2]["rewards"]) == pytest.approx(-1000.0)
    worse = np.array(history[3]["advantages"])  # every member lost 0.5 in generation 3
    if baseline == "median":  # b: the median of generation 2's rewards, three of them gains
        b = float(np.median(history[2]["rewards"]))
        assert b > 0 and (worse < 0).all()
        np.testing.assert_allclose(worse, reinforce.running_advantages(history[3]["rewards"], b))
    else:  # the running mean sank by ~250 with the one diverged segment: losses read as gains
        assert (worse > 0).all()


class DiminishingTask(ScheduleTask):
    """Every segment gains, each round a tenth of the round before (a training curve), until
    round 4, where every member loses: a lineage still improving, then a setback."""

    def run_trial(self, trial, *args, **kwargs):
        values = trial.hyperparameters.values
        parent = values.get("tuner/trial_id")
        start = self.quality[parent] if parent is not None else 0.0
        step = values["tuner/round"]
        added = 1000.0 * 0.1**step * gain(values["lr"], step) if step < 4 else -1.0 - values["lr"]
        self.quality[trial.trial_id] = start + added
        return {"score": self.quality[trial.trial_id]}


@pytest.mark.parametrize("baseline", ["running", "floor"])
def test_a_floor_baseline_judges_shrinking_gains_against_each_other_and_setbacks_as_losses(
        tmp_path, baseline):
    oracle = TrajectoryOracle(objective=keras_tuner.Objective("score", "max"),
                              population_size=2, segments=5, hyperparameters=lr_space(), seed=0,
                              baseline=baseline)
    DiminishingTask(oracle=oracle, directory=str(tmp_path), project_name="f").search(verbose=0)
    history = {h["generation"]: h for h in oracle.history}
    for generation in (2, 3):  # every member gained, less than the generation before
        rewards, advantages = np.array(history[generation]["rewards"]), np.array(
            history[generation]["advantages"])
        assert (rewards > 0).all() and rewards.max() < min(history[generation - 1]["rewards"])
        if baseline == "floor":  # the member that gained more is reinforced
            b = float(np.mean(rewards))
            np.testing.assert_allclose(advantages, reinforce.running_advantages(rewards, b))
            assert abs(advantages.sum()) < 1e-9 and not (advantages < 0).all()
        else:  # b still remembers the earlier, larger gains: every gain reads as a setback
            assert (advantages < 0).all()
    setback = np.array(history[4]["advantages"])  # every member lost quality
    assert (np.array(history[4]["rewards"]) < 0).all() and (setback < 0).all()
    if baseline == "floor":  # b = 0: each move is discouraged by what it lost
        np.testing.assert_allclose(
            setback, reinforce.running_advantages(history[4]["rewards"], 0.0))


@pytest.mark.parametrize("value", ["mean", "Floor", None])
def test_an_unknown_baseline_is_refused_with_the_choices(value):
    with pytest.raises(ValueError, match="baseline must be one of .*'floor'"):
        TrajectoryOracle(objective="score", hyperparameters=lr_space(), baseline=value)


@pytest.mark.parametrize("reward", ["difference", "capped"])
def test_capped_rewards_keep_one_diverged_segment_from_dragging_the_running_baseline(tmp_path,
                                                                                    reward):
    oracle = TrajectoryOracle(objective=keras_tuner.Objective("score", "max"),
                              population_size=4, segments=6, hyperparameters=lr_space(), seed=0,
                              baseline="running", reward=reward)
    DivergeTask(oracle=oracle, directory=str(tmp_path), project_name="c").search(verbose=0)
    history = {h["generation"]: h for h in oracle.history}
    diverged = min(oracle.generations[2], key=oracle.quality)
    parent = oracle.decisions[diverged]["parent"]
    worse = np.array(history[3]["advantages"])  # every member lost 0.5 in generation 3
    if reward == "capped":  # it lost its parent's whole score, not 1000
        assert 0.5 < abs(oracle.trials[parent].score) < 100
        assert oracle.decisions[diverged]["reward"] == pytest.approx(
            -abs(oracle.trials[parent].score))
        assert (worse < 0).all()
        gains = [oracle.decisions[t]["reward"] for t in oracle.generations[2] if t != diverged]
        for trial_id in oracle.generations[2]:  # gains are the plain differences
            if trial_id != diverged:
                p = oracle.decisions[trial_id]["parent"]
                assert oracle.decisions[trial_id]["reward"] == pytest.approx(
                    oracle.trials[trial_id].score - oracle.trials[p].score)
        assert len(gains) == 3
    else:
        assert oracle.decisions[diverged]["reward"] < -999.0
        assert (worse > 0).all()


@pytest.mark.parametrize("direction", ["max", "min"])
def test_log_ratio_rewards_are_the_log_of_each_segments_score_ratio(tmp_path, direction):
    oracle = TrajectoryOracle(objective=keras_tuner.Objective("score", direction),
                              population_size=4, segments=4, hyperparameters=lr_space(), seed=0,
                              reward="log_ratio")
    ScheduleTask(oracle=oracle, directory=str(tmp_path), project_name="l").search(verbose=0)
    sign = 1.0 if direction == "max" else -1.0
    segments = 0
    for trial_id, decision in oracle.decisions.items():
        score = oracle.trials[trial_id].score
        if decision["parent"] is None:  # a birth: the log of the score it reached
            assert decision["reward"] == pytest.approx(sign * math.log(score))
            continue
        parent = oracle.trials[decision["parent"]].score
        assert decision["reward"] == pytest.approx(sign * math.log(score / parent))
        segments += 1
    assert segments == 12
    restarted = TrajectoryOracle(objective=keras_tuner.Objective("score", direction),
                                 population_size=4, segments=4, hyperparameters=lr_space())
    restarted.set_state(oracle.get_state())
    assert restarted.reward == "log_ratio"
    older = oracle.get_state()
    del older["trajectory"]["reward"]
    restarted.set_state(older)
    assert restarted.reward == "difference"


def test_log_ratio_rewards_count_a_non_positive_score_as_a_failed_segment(tmp_path):
    oracle = run_setback(tmp_path, reward="log_ratio")  # segment 3 takes every score below 0
    history = {h["generation"]: h for h in oracle.history}
    assert all(oracle.trials[t].score < 0 for t in oracle.generations[3])
    assert history[3]["rewards"] == [reinforce.failure_reward([math.nan] * 4)] * 4
    assert all(math.isfinite(r) for h in oracle.history for r in h["rewards"])


def test_a_state_file_from_before_the_cut_loads_without_one(tmp_path):
    oracle = run_search(tmp_path, seed=1, population=2)
    state = oracle.get_state()
    del state["trajectory"]["final_population"]
    oracle.set_state(state)
    assert oracle.generation_sizes == [2] * SEGMENTS


@pytest.mark.parametrize(("final_population", "baseline", "reward"),
                         [(None, "population", "difference"), (2, "population", "difference"),
                          (2, "running", "difference"), (2, "median", "log_ratio")])
def test_resumed_search_ends_with_the_same_policy(tmp_path, final_population, baseline, reward):
    straight = run_search(tmp_path / "a", seed=4, population=4, final_population=final_population,
                          baseline=baseline, reward=reward)
    oracle = TrajectoryOracle(objective=keras_tuner.Objective("score", "max"),
                              population_size=4, segments=SEGMENTS,
                              final_population=final_population, baseline=baseline,
                              reward=reward, hyperparameters=lr_space(), seed=4)
    tuner = ScheduleTask(oracle=oracle, directory=str(tmp_path / "b"), project_name="s4")
    # Run a third of the search (with the cut: into its second half), then continue in a new
    # tuner as a restarted process would.
    for _ in range(27 if final_population is None else 45):
        trial = tuner.oracle.create_trial(tuner.tuner_id)
        tuner.on_trial_begin(trial)
        tuner._try_run_and_update_trial(trial)
        tuner.on_trial_end(trial)
    again = TrajectoryOracle(objective=keras_tuner.Objective("score", "max"),
                             population_size=4, segments=SEGMENTS,
                             final_population=final_population, baseline=baseline,
                             reward=reward, hyperparameters=lr_space(), seed=4)
    resumed = ScheduleTask(oracle=again, directory=str(tmp_path / "b"), project_name="s4")
    resumed.quality = dict(tuner.quality)
    resumed.search(verbose=0)
    assert resumed.oracle.policy.get_state() == straight.policy.get_state()
    assert resumed.oracle.get_best_trials(1)[0].score == straight.get_best_trials(1)[0].score


def birth_space() -> keras_tuner.HyperParameters:
    hp = keras_tuner.HyperParameters()
    hp.Choice("beta_1", [0.0, 0.5])
    hp.Float("lr", 1e-5, 1e-2, sampling="log", default=1e-3)
    return hp


def test_a_stratified_draw_still_follows_the_policy():
    """Inverse CDF at u: the categorical's bins have the policy's widths, the Gaussian's
    quantiles are its own, so log pi(a) of a stratified birth is the policy's."""
    hp = keras_tuner.HyperParameters()
    hp.Choice("c", ["a", "b", "c"])
    hp.Float("lr", 1e-5, 1e-2, sampling="log", default=1e-3)
    policy = HyperparameterPolicy()
    rng = np.random.default_rng(0)
    policy.sample(hp, rng)  # builds the entries
    policy.entries["c"].params = np.array([0.0, 1.0, 2.0])
    grid = (np.arange(3000) + 0.5) / 3000
    picks = [policy.sample(hp, rng, {"c": u, "lr": 0.5})[0]["c"] for u in grid]
    freq = [picks.count(v) / len(grid) for v in "abc"]
    np.testing.assert_allclose(freq, reinforce.softmax(np.array([0.0, 1.0, 2.0])), atol=1e-3)
    mean, log_std = policy.entries["lr"].params
    for u, z in ((0.5, 0.0), (0.8413447, 1.0), (0.0227501, -2.0)):
        _, action = policy.sample(hp, rng, {"c": 0.5, "lr": u})
        assert action["lr"]["x"] == pytest.approx(mean + math.exp(log_std) * z, abs=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_births_are_spread_over_every_distribution_and_survive_a_restart(tmp_path, seed):
    columns = latin_hypercube(["a", "b"], 5, np.random.default_rng(seed))
    for name in ("a", "b"):
        assert sorted(int(row[name] * 5) for row in columns) == [0, 1, 2, 3, 4]

    def oracle() -> TrajectoryOracle:
        made = TrajectoryOracle(objective=keras_tuner.Objective("score", "max"),
                                population_size=4, segments=2, hyperparameters=birth_space(),
                                seed=seed)
        made._set_project_dir(str(tmp_path), "births")  # noqa: SLF001  (as a Tuner does)
        return made

    first = oracle()
    made = {}
    for i in range(2):
        trial = first.create_trial(f"w{i}")
        made[trial.trial_id] = trial.hyperparameters.values
    again = oracle()
    again.reload()  # a restarted chief re-issues the two running births, then draws two more
    for i in range(2, 6):
        trial = again.create_trial(f"w{i}")
        assert made.setdefault(trial.trial_id, trial.hyperparameters.values) == (
            trial.hyperparameters.values)
    births = list(made.values())
    assert len(births) == 4
    assert sorted(b["beta_1"] for b in births) == [0.0, 0.0, 0.5, 0.5]
    mean, log_std = again.birth_policy.entries["lr"].params
    quartiles = []
    for birth in births:
        unit = birth_space()._hps["lr"][0].value_to_prob(birth["lr"])  # noqa: SLF001
        z = (unit - mean) / math.exp(log_std)
        quartiles.append(int(4 * 0.5 * (1 + math.erf(z / math.sqrt(2)))))
    assert sorted(quartiles) == [0, 1, 2, 3]


def test_init_std_sets_how_far_births_spread_from_the_default():
    def births(init_std: float) -> list[float]:
        oracle = TrajectoryOracle(objective=keras_tuner.Objective("score", "max"),
                                  population_size=8, segments=1, hyperparameters=birth_space(),
                                  init_std=init_std, seed=0)
        return [oracle.populate_space(str(i))["values"]["lr"] for i in range(8)]

    def spread(values: list[float]) -> float:  # in decades either side of the default
        return max(abs(math.log10(v / 1e-3)) for v in values)

    narrow, wide = births(0.1), births(0.4)
    assert spread(narrow) < spread(wide)
    assert spread(narrow) < 0.1 * 3 * 2.5  # 0.1 of a 3-decade range, within 2.5 sd
    for bad in (0.9, True, "0.1"):
        with pytest.raises(ValueError, match=r"init_std must be in \[0.02, 0.5\]"):
            TrajectoryOracle(objective="score", init_std=bad)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="population_size"):
        TrajectoryOracle(objective="score", population_size=0)
    with pytest.raises(ValueError, match="exploit_fraction"):
        TrajectoryOracle(objective="score", exploit_fraction=0.9)
    with pytest.raises(ValueError, match="birth_only"):
        TrajectoryOracle(objective="score", birth_only="units")
    for final in (0, 5, 2.0):
        with pytest.raises(ValueError, match=r"final_population .*population_size=4"):
            TrajectoryOracle(objective="score", population_size=4, final_population=final)
    for births in (3, 29, 8.0):  # below the population, or no segment left after the births
        with pytest.raises(ValueError, match=r"birth_population .*population_size=4, 28\]"):
            TrajectoryOracle(objective="score", population_size=4, segments=8,
                             birth_population=births)
    with pytest.raises(ValueError, match=r"baseline must be one of .*'median'.*'mean'"):
        TrajectoryOracle(objective="score", baseline="mean")
    with pytest.raises(ValueError, match=r"reward must be one of .*'log_ratio'.*'ratio'"):
        TrajectoryOracle(objective="score", reward="ratio")
    for step in (0, 0.6, True, "0.1"):
        with pytest.raises(ValueError, match=r"step must be a number in \(0, 0.5\]"):
            TrajectoryOracle(objective="score", step=step)


# ---------------------------------------------------------------------------- any Keras model

def build_regressor(hp: keras_tuner.HyperParameters) -> keras.Model:
    model = keras.Sequential([keras.Input((4,)),
                              keras.layers.Dense(hp.Choice("units", [8, 16]), "relu"),
                              keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(hp.Float("lr", 1e-3, 1e-1, sampling="log",
                                                          default=1e-2)), loss="mse")
    return model


def test_the_schedule_oracle_drives_keras_tuner_for_a_non_gan_model(tmp_path):
    """keras-tuner issue #410 asks for PBT: here it is for a plain Keras regression model."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 4)).astype("float32")
    y = (x @ np.array([1.0, -2.0, 0.5, 3.0], dtype="float32"))[:, None]
    oracle = TrajectoryOracle(objective="val_loss", population_size=2, segments=3,
                              birth_only=["units"], seed=0)
    tuner = ContinuingTuner(oracle=oracle, hypermodel=build_regressor,
                            directory=str(tmp_path), project_name="regression")
    frozen_during_trials = []  # keras-tuner's per-trial gc.collect skips the older objects
    watch = keras.callbacks.LambdaCallback(
        on_train_begin=lambda logs: frozen_during_trials.append(gc.get_freeze_count()))
    tuner.search(x, y, validation_data=(x, y), batch_size=32, verbose=0, callbacks=[watch])
    assert len(tuner.oracle.trials) == 6
    assert len(frozen_during_trials) == 6 and min(frozen_during_trials) > 1000
    assert gc.get_freeze_count() == 0  # ... and are collectable again after the search
    last = [t for t in tuner.oracle.trials.values() if t.hyperparameters.values["tuner/round"] == 2]
    for trial in last:
        model = tuner.load_model(trial)
        # Three segments of one epoch (8 batches) each: the optimizer state was carried on.
        assert int(model.optimizer.iterations) == 3 * 8
        # ... and the segment's own learning rate is in force, not its parent's.
        assert float(model.optimizer.learning_rate) == pytest.approx(
            trial.hyperparameters.values["lr"], rel=1e-6)
    first = min(t.score for t in tuner.oracle.trials.values()
                if t.hyperparameters.values["tuner/round"] == 0)
    assert tuner.oracle.get_best_trials(1)[0].score < first  # training went on
    # A plain keras_tuner.Tuner works with the oracle too (each segment then trains afresh).
    plain = keras_tuner.Tuner(oracle=TrajectoryOracle(objective="val_loss", population_size=2,
                                                      segments=2, seed=0),
                              hypermodel=build_regressor, directory=str(tmp_path),
                              project_name="plain")
    plain.search(x, y, validation_data=(x, y), batch_size=32, verbose=0)
    assert len(plain.oracle.trials) == 4
