"""ReinforceOracle and its policy, driven by real keras-tuner machinery (no mocks)."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import helpers_search as hs
import keras_tuner
import numpy as np
import pytest

from rlhf_keras.oracle import ReinforceOracle
from rlhf_keras.policy import HyperparameterPolicy, centred_rank

HELPER = Path(hs.__file__).resolve()
REPO = HELPER.parents[1]


def _completed(project_dir: Path) -> int:
    """COMPLETED trials on disk, counted from their trial.json files."""
    statuses = [json.loads(p.read_text())["status"] for p in project_dir.glob("trial_*/trial.json")]
    return statuses.count("COMPLETED")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERASTUNER_")}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", PYTHONPATH=str(REPO), **extra)
    return env


def _wait(predicate, timeout: float, what: str, procs=()) -> None:
    """Poll until predicate() is true; fail with `what` (and any dead process's output)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        for proc in procs:
            if proc.poll() is not None and proc.returncode != 0:
                out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
                pytest.fail(f"{what}: a process exited with {proc.returncode}:\n{out[-3000:]}")
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


# ------------------------------------------------------------------------------ the policy
def test_gradients_match_finite_differences():
    space = hs.space()
    policy = HyperparameterPolicy()
    rng = np.random.default_rng(0)
    _, action = policy.sample(space, rng)
    for entry in policy.entries.values():  # move off the symmetric prior
        entry.params = entry.params + rng.normal(0, 0.1, entry.params.shape)
    grads = policy.grad_log_prob(action)
    for key, entry in policy.entries.items():
        for i in range(entry.params.size):
            saved = entry.params[i]
            entry.params[i] = saved + 1e-6
            up = policy.log_prob(action)
            entry.params[i] = saved - 1e-6
            down = policy.log_prob(action)
            entry.params[i] = saved
            assert grads[key][i] == pytest.approx((up - down) / 2e-6, abs=1e-5), (key, i)


def test_prior_conditions_fixed_and_grids():
    hp = keras_tuner.HyperParameters()
    hp.Fixed("seed", 7)
    hp.Boolean("bn")
    hp.Float("drop", 0.0, 0.5, step=0.125)  # 5 values: categorical
    hp.Float("lr", 1e-4, 1e-1, sampling="log", default=1e-2)  # Gaussian at the default
    hp.Int("width", 1, 1000)  # 1000 values: Gaussian
    model = hp.Choice("model", ["mlp", "cnn"])
    with hp.conditional_scope("model", ["mlp"]):
        hp.Int("layers", 1, 4)
    with hp.conditional_scope("model", ["cnn"]):
        hp.Choice("kernel", [3, 5])
    assert model == "mlp"
    policy = HyperparameterPolicy()
    rng = np.random.default_rng(1)
    seen = set()
    for _ in range(30):
        values, action = policy.sample(hp, rng)
        assert values["seed"] == 7 and "seed" not in action
        assert ("layers" in values) == (values["model"] == "mlp")
        assert ("kernel" in values) == (values["model"] == "cnn")
        assert values["drop"] in {0.0, 0.125, 0.25, 0.375, 0.5}
        assert 1e-4 <= values["lr"] <= 1e-1 and 1 <= values["width"] <= 1000
        assert isinstance(values["width"], int) and isinstance(values["bn"], bool)
        seen.add(values["model"])
    assert seen == {"mlp", "cnn"}
    summary = policy.summary()
    assert summary["bn"] == {True: 0.5, False: 0.5}
    assert list(summary["drop"]) == [0.0, 0.125, 0.25, 0.375, 0.5]
    assert summary["lr"]["mean"] == pytest.approx(1e-2)  # informed prior: the default
    assert summary["width"]["mean"] == pytest.approx(500, abs=1)  # no default: the middle
    assert "layers|model=['mlp']" in summary and "kernel|model=['cnn']" in summary


def test_centred_rank_puts_penalties_last():
    history = [(1, 0.5), (1, -3.0), (0, -1.0)]
    assert centred_rank((1, 1.0), history) == 1.0
    assert centred_rank((1, -5.0), history) == pytest.approx(-1 / 3)  # beats the penalty only
    assert centred_rank((0, 99.0), [(1, -5.0)]) == -1.0
    assert centred_rank((1, 0.0), []) == 0.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_trials": 0}, "max_trials must be a positive int"),
        ({"learning_rate": -1.0}, "learning_rate must be a finite number > 0"),
        ({"baseline_decay": 1.0}, r"baseline_decay must be in \[0, 1\)"),
        ({"entropy_coef": -0.1}, "entropy_coef must be a finite number >= 0"),
        ({"penalty": float("nan")}, "penalty must be a finite number or None"),
        ({"optimizer": "rmsprop"}, "optimizer must be one of"),
        ({"seed": 1.5}, "seed must be an int or None"),
        ({"max_consecutive_failed_trials": 0}, "or None to never stop"),
        ({"rungs": (3, 1)}, "strictly increasing positive ints"),
        ({"rungs": (3,)}, "at least two"),
        ({"rungs": "1,3"}, "rungs must be a sequence of ints"),
        ({"rungs": (1, 3), "reduction_factor": 1}, "reduction_factor must be an int >= 2"),
        ({"replay": -1}, "replay must be an int >= 0"),
        ({"replay": 4, "replay_clip": 0.0}, "replay_clip must be a finite number > 0"),
        ({"replay": 4, "replay_epochs": 0}, "replay_epochs must be a positive int"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ReinforceOracle(objective="score", **kwargs)


# ------------------------------------------------------------------------------ learning
@pytest.mark.parametrize("seed", range(5))
def test_policy_learns_the_best_choice(tmp_path, seed):
    tuner = hs.make_tuner(str(tmp_path), seed=seed, max_trials=100)
    tuner.search(verbose=0)
    oracle = tuner.oracle
    assert oracle.updates == 100 == _completed(tmp_path / "synthetic")
    probs = oracle.policy_summary()["opt"]
    assert probs[hs.BEST_CHOICE] >= 0.8, probs
    # The continuous ones move toward their optima (lr 1e-2, units 60) from the prior.
    summary = oracle.policy_summary()
    assert abs(math.log10(summary["lr"]["mean"]) + 2) < 1.0, summary["lr"]
    assert len(oracle.policy_history) == 100
    assert oracle.policy_history[-1]["policy"]["opt"][hs.BEST_CHOICE] == pytest.approx(
        probs[hs.BEST_CHOICE]
    )
    # The state is JSON-native and a fresh oracle restored from it continues identically.
    state = json.loads(json.dumps(oracle.get_state()))
    twin = ReinforceOracle(objective=keras_tuner.Objective("score", "max"), max_trials=200)
    twin.set_state(state)
    assert twin.policy_parameters() == oracle.policy_parameters()
    oracle.max_trials = 200
    following = oracle.populate_space("100")["values"]
    assert following is not None and twin.populate_space("100")["values"] == following


def test_drives_plain_keras_tuner_on_a_tiny_classifier(tmp_path, capsys):
    import keras

    def build_model(hp):
        model = keras.Sequential([
            keras.Input((8,)),
            keras.layers.Dense(hp.Int("units", 2, 8, step=2), activation="relu"),
            keras.layers.Dense(3, activation="softmax"),
        ])
        lr = hp.Float("lr", 1e-3, 1e-1, sampling="log")
        model.compile(optimizer=keras.optimizers.Adam(lr),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return model

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 8)).astype("float32"), rng.integers(0, 3, 64)
    oracle = ReinforceOracle(objective="val_accuracy", max_trials=3, seed=1)
    tuner = keras_tuner.Tuner(
        oracle=oracle, hypermodel=build_model, directory=str(tmp_path), project_name="clf"
    )
    tuner.search(x, y, epochs=1, batch_size=32, validation_data=(x, y), verbose=0)
    assert _completed(tmp_path / "clf") == 3 and oracle.updates == 3
    tuner.results_summary()
    assert "Score:" in capsys.readouterr().out
    best = tuner.get_best_models(1)[0]
    assert best.predict(x[:5], verbose=0).shape == (5, 3)
    assert set(oracle.policy_summary()) == {"units", "lr"}


class _FlakyTuner(keras_tuner.engine.base_tuner.BaseTuner):
    """Opt "a" raises, "b" returns NaN, "d" inf (diverged), "c" scores; space grows lazily."""

    def run_trial(self, trial, *args, **kwargs):
        opt = trial.hyperparameters.Choice("opt", ["c", "a", "b", "d"])
        x = trial.hyperparameters.Float("x", 0.0, 1.0)
        if opt == "a":
            raise ValueError("this configuration crashes")
        score = {"b": float("nan"), "d": float("inf")}.get(opt, 1.0 + x)
        return {"loss": score}


def test_failed_and_nan_trials_are_penalised_and_the_search_goes_on(tmp_path):
    oracle = ReinforceOracle(objective="loss", max_trials=30, seed=3)
    tuner = _FlakyTuner(oracle=oracle, directory=str(tmp_path), project_name="flaky")
    tuner.search(verbose=0)
    statuses = [oracle.trials[t].status for t in oracle.end_order]
    assert len(statuses) == 30 and oracle.updates == 30
    assert statuses.count("FAILED") >= 3 and statuses.count("COMPLETED") >= 3
    penalised = [r["reward"] for r in oracle.rewards.values() if r["penalised"]]
    real = [r["reward"] for r in oracle.rewards.values() if not r["penalised"]]
    assert len(penalised) == statuses.count("FAILED")
    assert all(math.isfinite(p) for p in penalised)
    assert max(penalised) < min(real)
    # Every penalty was below every reward seen before it, and the policy left the bad values.
    probs = oracle.policy_summary()["opt"]
    assert probs["c"] > max(probs["a"], probs["b"], probs["d"]), probs
    json.dumps(oracle.get_state())


def test_divergence_never_stops_the_search_but_a_crash_streak_does(tmp_path):
    class Diverging(keras_tuner.engine.base_tuner.BaseTuner):
        def run_trial(self, trial, *args, **kwargs):
            trial.hyperparameters.Float("x", 0.0, 1.0)
            return {"loss": float("nan")}

    class Crashing(keras_tuner.engine.base_tuner.BaseTuner):
        def run_trial(self, trial, *args, **kwargs):
            trial.hyperparameters.Float("x", 0.0, 1.0)
            raise ValueError("broken model code")

    oracle = ReinforceOracle(objective="loss", max_trials=6, seed=0)
    Diverging(oracle=oracle, directory=str(tmp_path), project_name="div").search(verbose=0)
    assert [oracle.trials[t].status for t in oracle.end_order] == ["FAILED"] * 6
    assert oracle.updates == 6
    oracle = ReinforceOracle(objective="loss", max_trials=6, seed=0)
    crashing = Crashing(oracle=oracle, directory=str(tmp_path), project_name="crash")
    with pytest.raises(RuntimeError, match=r"(?s)3 consecutive trials raised.*broken model code"):
        crashing.search(verbose=0)


# ------------------------------------------------------------------------------ resume
def test_resume_after_sigkill_reissues_the_pending_action(tmp_path):
    seed, max_trials, stall_at = 4, 12, 5
    run_dir, marker, out = tmp_path / "run", tmp_path / "stalled.txt", tmp_path / "out.json"
    cmd = [sys.executable, str(HELPER), "--dir", str(run_dir), "--seed", str(seed),
           "--max-trials", str(max_trials), "--out", str(out)]
    first = subprocess.Popen(cmd + ["--stall-at", str(stall_at), "--marker", str(marker)],
                             env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait(marker.exists, 120, "the search to reach the stalling trial", [first])
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(30)
    project = run_dir / "synthetic"
    assert _completed(project) == stall_at and not out.exists()
    resumed = subprocess.run(cmd + ["--stall-at", str(stall_at), "--marker", str(marker)],
                             env=_env(), capture_output=True, timeout=180)
    assert resumed.returncode == 0, resumed.stdout.decode()[-3000:] + resumed.stderr.decode()
    assert _completed(project) == max_trials
    result = json.loads(out.read_text())
    assert result["updates"] == max_trials and len(result["end_order"]) == max_trials

    # The same seeded search, uninterrupted (in this process: same code, same floats).
    tuner = hs.make_tuner(str(tmp_path / "straight"), seed=seed, max_trials=max_trials)
    tuner.search(verbose=0)
    trials = tuner.oracle.trials
    assert result["values"] == {t: tr.hyperparameters.values for t, tr in trials.items()}
    straight = tuner.oracle.policy_parameters()
    assert result["parameters"].keys() == straight.keys()
    for key, params in straight.items():
        np.testing.assert_allclose(result["parameters"][key], params, rtol=0, atol=1e-9)


# ------------------------------------------------------------------------------ distributed
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("population", [0, 2], ids=["oneshot", "trajectory"])
def test_distributed_chief_and_two_workers(tmp_path, population):
    max_trials, out = 10, tmp_path / "chief.json"
    port = str(_free_port())
    # Both workers' first trials wait for each other, so neither can miss the whole search.
    # The trajectory search (2 members x 5 segments): a worker waits (IDLE) for the other
    # member to finish its segment before the next generation starts.
    base = [sys.executable, str(HELPER), "--dir", str(tmp_path / "dist"), "--seed", "2",
            "--max-trials", str(max_trials), "--rendezvous", str(tmp_path / "started"),
            "--tuners", "2", "--population", str(population)]
    procs = []
    try:
        for tuner_id in ("chief", "tuner0", "tuner1"):
            env = _env(KERASTUNER_TUNER_ID=tuner_id, KERASTUNER_ORACLE_IP="127.0.0.1",
                       KERASTUNER_ORACLE_PORT=port)
            extra = ["--out", str(out)] if tuner_id == "chief" else []
            procs.append(subprocess.Popen(base + extra, env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT))
        _wait(lambda: all(p.poll() is not None for p in procs), 150,
              "the chief and both workers to finish", procs)
        for proc in procs:
            assert proc.returncode == 0, proc.stdout.read().decode(errors="replace")[-3000:]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)
    result = json.loads(out.read_text())
    # The trajectory policy updates once per generation after the births.
    updates = max_trials // population - 1 if population else max_trials
    assert result["updates"] == updates and _completed(tmp_path / "dist" / "synthetic") == 10
    assert sorted(result["end_order"]) == [f"{i:02d}" for i in range(max_trials)]  # each once
    assert set(result["statuses"].values()) == {"COMPLETED"}
    assert sorted(p.name for p in (tmp_path / "started").iterdir()) == ["tuner0", "tuner1"]


# ------------------------------------------------------------------------------ replay
def test_replay_step_is_reinforce_on_policy_and_clips_off_policy():
    space = hs.space()
    plain, batched = HyperparameterPolicy(entropy_coef=0.0), HyperparameterPolicy(entropy_coef=0.0)
    _, action = plain.sample(space, np.random.default_rng(0))
    batched.sample(space, np.random.default_rng(0))
    # One on-policy action (ratio 1), baseline 0: the same step as REINFORCE.
    plain.reinforce(action, 0.7)
    batched.reinforce_batch([(action, batched.log_prob(action), 0.7)], clip=0.2)
    for key, params in plain.parameters().items():
        np.testing.assert_allclose(batched.parameters()[key], params, rtol=0, atol=1e-12)
    # Drawn when the action was 10x less likely than now: its ratio is clipped, no step.
    before = batched.parameters()
    info = batched.reinforce_batch([(action, batched.log_prob(action) - math.log(10), 1.0)])
    assert info == {"clipped": 1.0, "n": 1} and batched.parameters() == before
    # A negative advantage on a still-likely action is not clipped: it moves away.
    p_before = batched.probabilities()["opt"][action["opt"]["index"]]
    batched.reinforce_batch([(action, batched.log_prob(action), -1.0)])
    assert batched.probabilities()["opt"][action["opt"]["index"]] < p_before


def _drive(oracle: ReinforceOracle, n: int, tmp_path: Path) -> None:
    """Run `n` evaluations through the Oracle API; the score grows with tuner/epochs."""
    oracle.verbose = 0
    oracle._set_project_dir(str(tmp_path), "api")
    for _ in range(n):
        trial = oracle.create_trial("tester")
        values = trial.hyperparameters.values
        score = hs.synthetic_score(values, trial.trial_id, 0) + values.get("tuner/epochs", 0)
        oracle.update_trial(trial.trial_id, {"score": score})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)


def test_replay_oracle_learns_and_resumes(tmp_path):
    oracle = ReinforceOracle(objective=keras_tuner.Objective("score", "max"), max_trials=61,
                             hyperparameters=hs.space(), seed=0, replay=16)
    _drive(oracle, 60, tmp_path)
    probs = oracle.policy_summary()["opt"]
    assert oracle.updates == 60 and max(probs, key=probs.get) == hs.BEST_CHOICE, probs
    state = json.loads(json.dumps(oracle.get_state()))
    twin = ReinforceOracle(objective=keras_tuner.Objective("score", "max"), max_trials=61)
    twin.set_state(state)
    assert twin.replay == 16 and twin.policy_parameters() == oracle.policy_parameters()
    assert twin.populate_space("60") == oracle.populate_space("60")


# ------------------------------------------------------------------------------ rungs
def test_rungs_promote_the_top_third_and_learn_per_rung(tmp_path):
    oracle = ReinforceOracle(objective=keras_tuner.Objective("score", "max"), max_trials=41,
                             hyperparameters=hs.space(), seed=5, rungs=(1, 3))
    _drive(oracle, 40, tmp_path)
    trials = [oracle.trials[t] for t in oracle.end_order]
    assert oracle.updates == 40 and all(t.status == "COMPLETED" for t in trials)
    promoted = [t for t in trials if "tuner/trial_id" in t.hyperparameters.values]
    assert len(promoted) >= 8, len(promoted)
    parents = [t.hyperparameters.values["tuner/trial_id"] for t in promoted]
    assert len(set(parents)) == len(parents)  # each evaluation continued at most once
    for trial in trials:
        values = trial.hyperparameters.values
        if trial in promoted:
            parent = oracle.trials[values["tuner/trial_id"]]
            assert (values["tuner/epochs"], values["tuner/initial_epoch"]) == (3, 1)
            assert {k: v for k, v in values.items() if not k.startswith("tuner/")} == {
                k: v for k, v in parent.hyperparameters.values.items()
                if not k.startswith("tuner/")}
            # The parent was in the top third of the rung-0 evaluations ended before.
            earlier = [t.score for t in trials if int(t.trial_id) < int(trial.trial_id)
                       and t.hyperparameters.values["tuner/epochs"] == 1]
            assert sorted(earlier, reverse=True).index(parent.score) < len(earlier) // 3
            assert oracle.rewards[trial.trial_id]["rung"] == 1
        else:
            assert (values["tuner/epochs"], values["tuner/initial_epoch"]) == (1, 0)
    # Ranked within its rung: a promoted evaluation (+3) is not automatically the best.
    assert min(oracle.rewards[t.trial_id]["utility"] for t in promoted) < 0
    state = json.loads(json.dumps(oracle.get_state()))
    twin = ReinforceOracle(objective=keras_tuner.Objective("score", "max"), max_trials=41)
    twin.set_state(state)
    twin.trials = oracle.trials  # keras-tuner restores these from trial.json files
    assert twin.populate_space("40") == oracle.populate_space("40")


def test_state_saved_before_rungs_and_replay_still_loads(tmp_path):
    oracle = ReinforceOracle(objective=keras_tuner.Objective("score", "max"), max_trials=9,
                             hyperparameters=hs.space(), seed=1)
    _drive(oracle, 4, tmp_path)
    state = json.loads(json.dumps(oracle.get_state()))
    ours = state["reinforce"]
    for key in ("experience", "promoted", "rungs", "reduction_factor", "replay", "replay_clip",
                "replay_epochs"):
        del ours[key]
    ours["reward_history"] = [entry[:2] for entry in ours["reward_history"]]
    for pending in ours["pending"].values():
        pending.pop("log_prob", None)
        pending.pop("rung", None)
    old = ReinforceOracle(objective=keras_tuner.Objective("score", "max"), max_trials=9)
    old.set_state(state)
    assert old.rungs is None and old.replay == 0
    old._set_project_dir(str(tmp_path), "old")
    old.trials = oracle.trials
    old._tried_so_far = set(oracle._tried_so_far)
    _drive(old, 3, tmp_path / "more")
    assert old.updates == 7


# ------------------------------------------------------------------------------ each term
def _categorical_entropy(policy: HyperparameterPolicy, key: str) -> float:
    p = policy.probabilities()[key]
    return float(-(p * np.log(p)).sum())


def test_the_entropy_bonus_raises_entropy():
    policy = HyperparameterPolicy(entropy_coef=1.0)
    _, action = policy.sample(hs.space(), np.random.default_rng(0))
    policy.entries["opt"].params[:] = np.linspace(2.0, -1.0, len(policy.entries["opt"].params))
    before = _categorical_entropy(policy, "opt")
    policy.baseline = 0.3
    policy.reinforce(action, 0.3)  # zero advantage: only the entropy term moves the policy
    assert _categorical_entropy(policy, "opt") > before + 1e-3


def test_the_baseline_tracks_rewards_and_is_subtracted():
    policy = HyperparameterPolicy(entropy_coef=0.0, baseline_decay=0.5)
    _, action = policy.sample(hs.space(), np.random.default_rng(0))
    info = policy.reinforce(action, 1.0)
    assert info["advantage"] == 1.0 and policy.baseline == 0.5
    before = policy.log_prob(action)
    info = policy.reinforce(action, 0.5)  # as good as the baseline: no push either way
    assert info["advantage"] == 0.0
    assert policy.log_prob(action) == pytest.approx(before, abs=1e-12)


def test_replay_weights_an_off_policy_action_by_its_importance_ratio():
    space = hs.space()
    on, off = HyperparameterPolicy(entropy_coef=0.0), HyperparameterPolicy(entropy_coef=0.0)
    _, action = on.sample(space, np.random.default_rng(0))
    off.sample(space, np.random.default_rng(0))
    start = {k: v.copy() for k, v in ((k, e.params) for k, e in on.entries.items())}
    on.reinforce_batch([(action, on.log_prob(action), 1.0)], clip=math.inf)
    # Drawn when twice less likely than now: rho = 2, so the step is twice as long.
    off.reinforce_batch([(action, off.log_prob(action) - math.log(2), 1.0)], clip=math.inf)
    for key, params in start.items():
        np.testing.assert_allclose(off.entries[key].params - params,
                                   2 * (on.entries[key].params - params), atol=1e-12)


def test_raw_rewards_of_any_scale_do_not_collapse_the_policy(tmp_path):
    """rank_rewards=False: the first FID-sized reward must not throw every probability onto
    one choice (raw rewards are standardised against the ones seen before)."""
    oracle = ReinforceOracle(objective=keras_tuner.Objective("score", "max"), max_trials=6,
                             hyperparameters=hs.space(), seed=0, rank_rewards=False)
    oracle.verbose = 0
    oracle._set_project_dir(str(tmp_path), "raw")
    for i in range(6):
        trial = oracle.create_trial("tester")
        oracle.update_trial(trial.trial_id, {"score": 300.0 + 50 * i})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
    assert max(oracle.policy.probabilities()["opt"]) < 0.9
