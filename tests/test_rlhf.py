"""RLHF end to end: results on disk, resume, divergence, widths, weight averages, bad input."""

from __future__ import annotations

import json

import keras
import keras_tuner
import numpy as np
import pytest

from rlhf_keras import GAN, RLHF, architectures, default_search_space
from rlhf_keras.hypermodel import GANHyperModel
from rlhf_keras.trajectory_oracle import TrajectoryOracle


def small_space() -> keras_tuner.HyperParameters:
    hp = keras_tuner.HyperParameters()
    hp.Float("g_lr", 1e-4, 3e-3, sampling="log", default=1e-3)
    hp.Float("d_lr", 1e-4, 3e-3, sampling="log", default=1e-3)
    hp.Choice("g_width", [0.5, 1.0])
    return hp


def ring_gan() -> GAN:
    return GAN(*architectures.small_mlp(data_shape=(2,), latent_dim=8), seed=0)


@pytest.fixture(scope="module")
def ring_search(tmp_path_factory):
    directory = tmp_path_factory.mktemp("runs")
    rlhf = RLHF(search_space=small_space(), strategy="oneshot",
                max_trials=3, epochs_per_trial=1, batch_size=256,
                data="ring8", directory=directory, seed=0, verbose=1)
    graphs_before = _train_step_graphs()
    best = rlhf.finetune(ring_gan())
    rlhf.graphs_left = _train_step_graphs() - graphs_before  # read by the release test
    return rlhf, best, directory


def _train_step_graphs() -> int:
    import gc

    from tensorflow.python.framework import func_graph

    gc.collect()
    return sum(1 for o in gc.get_objects()
               if isinstance(o, func_graph.FuncGraph) and o.name == "one_step_on_data")


def test_finetune_returns_the_best_trained_gan_and_records_every_trial(ring_search, capsys):
    rlhf, best, _ = ring_search
    rows = rlhf.results
    assert [row["trial_id"] for row in rows] == ["0", "1", "2"]
    assert all(row["status"] == "COMPLETED" and row["seconds"] > 0 for row in rows)
    for row in rows:
        assert set(row["values"]) == {"g_lr", "d_lr", "g_width"}
        assert {"modes", "high_quality", "reverse_kl", "score", "r_g", "r_d"} <= set(row["metrics"])
        assert row["score"] == pytest.approx(row["metrics"]["score"])
    best_row = max(rows, key=lambda row: row["score"])
    assert rlhf.best_hyperparameters.values == best_row["values"]
    # The returned GAN is the best trial's: scoring it again gives that trial's score.
    from rlhf_keras import quality

    assert quality(best, "ring8", seed=0)["score"] == pytest.approx(best_row["score"], rel=1e-5)
    assert rlhf.oracle.updates == 3
    rlhf.results_summary(1)
    assert "Objective(name=\"score\", direction=\"max\")" in capsys.readouterr().out


def test_best_model_is_replaced_only_by_a_better_trial_whatever_order_they_end_in(tmp_path):
    """Distributed workers end trials in any order and the oracle hears of each only after
    its run_trial: the best model is decided against best_model.json, under its lock."""
    rlhf = RLHF(search_space=small_space(), strategy="oneshot", max_trials=1,
                epochs_per_trial=1, batch_size=256, data="ring8", directory=tmp_path, seed=0,
                verbose=0)
    rlhf.finetune(ring_gan())
    tuner, project = rlhf.tuner, rlhf.project_dir
    name = tuner.oracle.objective.name  # "score": maximised
    held = json.loads((project / "best_model.json").read_text())["score"]
    worse, better = ring_gan(), ring_gan()
    # Another worker's trial 5 saved itself as best; the oracle has not heard of it yet.
    tuner._save_if_best("5", {name: held + 2.0}, better)
    assert json.loads((project / "best_model.json").read_text())["trial_id"] == "5"
    tuner._save_if_best("7", {name: held + 1.0}, worse)  # beats the oracle's best, not trial 5
    tuner._save_if_best("8", {name: float("nan")}, worse)  # diverged
    tuner._save_if_best("9", {name: held + 2.0}, worse)  # a tie keeps the first
    assert json.loads((project / "best_model.json").read_text()) == {"trial_id": "5",
                                                                     "score": held + 2.0}
    saved = keras.models.load_model(project / "best_model.keras")
    np.testing.assert_allclose(saved.generator.get_weights()[0],
                               better.generator.get_weights()[0])


def test_calling_again_resumes_without_rerunning_trials(ring_search):
    rlhf, _, directory = ring_search
    before = rlhf.oracle.policy_parameters()
    finished = rlhf.results
    again = RLHF(search_space=small_space(), strategy="oneshot",
                 max_trials=4, epochs_per_trial=1, batch_size=256,
                 data="ring8", directory=directory, seed=0, verbose=0)
    again.finetune(ring_gan())
    rows = again.results
    assert [row["trial_id"] for row in rows] == ["0", "1", "2", "3"]
    assert rows[:3] == finished  # same values, scores and timings: not run again
    assert again.oracle.updates == 4
    assert again.oracle.policy_parameters() != before  # the fourth trial taught the policy


def test_a_different_search_in_the_same_folder_is_refused(ring_search):
    _, _, directory = ring_search
    listing = sorted(p.name for p in (directory / "rlhf").iterdir())
    other = RLHF(strategy="oneshot",
                 max_trials=2, epochs_per_trial=1, data="ring8", directory=directory, verbose=0)
    with pytest.raises(ValueError, match=r"holds a different search.*search_space.*overwrite=True"):
        other.finetune(ring_gan())
    assert sorted(p.name for p in (directory / "rlhf").iterdir()) == listing


def test_finished_trials_release_their_train_step_graphs(ring_search):
    # Without the release, TensorFlow's gradient registry keeps each trial's traced train step.
    rlhf, _, _ = ring_search
    assert rlhf.graphs_left == 0  # after its 3 trials


def test_a_diverging_trial_is_penalised_and_the_search_completes(tmp_path):
    hp = keras_tuner.HyperParameters()
    hp.Choice("g_lr", [1e-3, 1e10])  # 1e10 blows the generator up at once
    hp.Fixed("d_lr", 1e10)
    rlhf = RLHF(search_space=hp, strategy="oneshot",
                max_trials=2, epochs_per_trial=3, batch_size=256, data="ring8",
                directory=tmp_path, seed=1, verbose=0)
    with pytest.raises(RuntimeError, match="No trial finished with a finite score"):
        rlhf.finetune(ring_gan())
    rows = rlhf.results
    assert len(rows) == 2
    assert all(row["status"] == "FAILED" for row in rows)
    assert all(row["metrics"]["epochs_trained"] == 1 for row in rows)  # stopped at once
    rewards = [rlhf.oracle.rewards[row["trial_id"]]["reward"] for row in rows]
    assert all(np.isfinite(rewards))


def test_trials_at_width_one_start_from_trained_weights():
    generator, discriminator = architectures.small_mlp(data_shape=(2,), latent_dim=4)
    hypermodel = GANHyperModel(generator, discriminator, latent_dim=4, pretrained=True,
                               data="ring8", batch_size=64, epochs=1, seed=0)
    hp = keras_tuner.HyperParameters()
    hp.Fixed("g_width", 1.0)
    hp.Fixed("d_width", 2.0)
    gan = hypermodel.build(hp)
    for a, b in zip(generator.get_weights(), gan.generator.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert gan.discriminator.layers[0].units == 2 * discriminator.layers[0].units


def test_g_ema_gives_every_segment_an_average_of_its_generator():
    generator, discriminator = architectures.small_mlp(data_shape=(2,), latent_dim=4)
    hypermodel = GANHyperModel(generator, discriminator, latent_dim=4, pretrained=False,
                               data="ring8", batch_size=64, epochs=1, seed=0)
    assert hypermodel.build(keras_tuner.HyperParameters()).average_generator is None
    for ema in (0.0, 0.999):
        hp = keras_tuner.HyperParameters()
        hp.Fixed("g_ema", ema)
        gan = hypermodel.build(hp)
        assert gan.average_generator is not None and gan.ema_momentum == ema


@pytest.mark.parametrize("values", [[0.0, 1.0], [-0.5]])
def test_a_g_ema_outside_zero_to_one_is_refused_with_the_fix(values, tmp_path):
    hp = default_search_space(g_ema=None)
    hp.Choice("g_ema", values)
    with pytest.raises(ValueError, match=r"g_ema value\(s\) \[.*\] .* not in \[0, 1\)"):
        RLHF(search_space=hp, directory=tmp_path)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match=r"g_ema value\(s\) \[1.0\] .* not in \[0, 1\)"):
        default_search_space(g_ema=1.0)


def test_d_lr_ratio_sets_the_discriminators_rate_as_a_multiple_of_the_generators(tmp_path):
    generator, discriminator = architectures.small_mlp(data_shape=(2,), latent_dim=4)
    hypermodel = GANHyperModel(generator, discriminator, latent_dim=4, pretrained=False,
                               data="ring8", batch_size=64, epochs=1, seed=0)
    hp = keras_tuner.HyperParameters()
    hp.Fixed("g_lr", 1e-3)
    hp.Fixed("d_lr_ratio", 0.2)
    gan = hypermodel.build(hp)
    assert float(gan.g_optimizer.learning_rate) == pytest.approx(1e-3)
    assert float(gan.d_optimizer.learning_rate) == pytest.approx(2e-4)
    space = default_search_space(d_lr_ratio=True)
    assert [e.name for e in space.space][:2] == ["g_lr", "d_lr_ratio"]
    assert space.values["d_lr_ratio"] == 1.0  # the prior: the articles' equal rates
    assert float(hypermodel.build(space).d_optimizer.learning_rate) == pytest.approx(2e-4)
    both = default_search_space()
    both.Float("d_lr_ratio", 0.05, 20, sampling="log")
    with pytest.raises(ValueError, match="both d_lr and d_lr_ratio; keep one"):
        RLHF(search_space=both, directory=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_the_default_space_averages_the_generator_unless_asked_not_to():
    assert default_search_space().values["g_ema"] == 0.999
    assert "g_ema" not in default_search_space(g_ema=None).values
    generator, discriminator = architectures.small_mlp(data_shape=(2,), latent_dim=4)
    hypermodel = GANHyperModel(generator, discriminator, latent_dim=4, pretrained=False,
                               data="ring8", batch_size=64, epochs=1, seed=0)
    assert hypermodel.build(default_search_space()).ema_momentum == 0.999
    assert hypermodel.build(default_search_space(g_ema=None)).average_generator is None


def test_segments_too_short_to_repay_a_compile_train_the_article_mlp_without_xla():
    """XLA's compile is paid once per segment; below XLA_MIN_SEGMENT_STEPS steps it is off,
    at or above it the GAN's own choice (on, for the article's MLP) stands."""
    from rlhf_keras.hypermodel import XLA_MIN_SEGMENT_STEPS

    generator, discriminator = architectures.seed_mlp(data_shape=(784,), latent_dim=100)
    segment = keras_tuner.HyperParameters()
    segment.Fixed("tuner/epochs", 1)

    def built(steps, hp):
        return GANHyperModel(generator, discriminator, latent_dim=100, pretrained=False,
                             data="digits", batch_size=64, epochs=1, seed=0,
                             steps_per_segment=steps).build(hp)

    assert built(XLA_MIN_SEGMENT_STEPS - 1, segment).jit_compile is False
    assert built(XLA_MIN_SEGMENT_STEPS, segment).jit_compile is True
    # Not a segment (a trial trained for its epochs): the GAN's own choice too.
    assert built(XLA_MIN_SEGMENT_STEPS - 1, keras_tuner.HyperParameters()).jit_compile is True



class SeenAtEpochEnd(keras.callbacks.Callback):
    """Records the generator optimizer's step count when the epoch ends."""

    def __init__(self, seen: list[int]) -> None:
        super().__init__()
        self.seen = seen

    def on_epoch_end(self, epoch, logs=None):
        self.seen.append(int(self.model.g_optimizer.iterations.numpy()))


def test_a_segment_ends_at_its_best_scored_point_with_that_points_optimizer_state():
    """Scored at 4 points of a 200-step segment, the GAN is put back to the best of them:
    the model then scores what that point scored, and its optimizers' step counters read the
    steps trained up to it. With direction "min" the best point of a GAN trained from scratch
    is an early one, so the way back is exercised."""
    from rlhf_keras import metrics

    generator, discriminator = architectures.small_mlp(data_shape=(2,), latent_dim=8)
    segment = default_search_space()
    segment.Fixed("tuner/epochs", 1)
    for direction in ("min", "max"):
        objective = keras_tuner.Objective("score", direction)
        hypermodel = GANHyperModel(generator, discriminator, latent_dim=8, pretrained=False,
                                   data="ring8", batch_size=64, epochs=1, seed=0,
                                   steps_per_segment=200, evaluations_per_segment=4,
                                   objective=objective)
        gan = hypermodel.build(segment)
        seen = []
        result = hypermodel.fit(segment, gan, callbacks=[SeenAtEpochEnd(seen)], verbose=0)
        scores = hypermodel.last_best_point.scores
        assert [batches for batches, _ in scores] == [50, 100, 150, 200]
        pick = min if direction == "min" else max
        best_batches, best_score = pick(scores, key=lambda point: point[1])
        assert result["score"] == best_score
        assert metrics.quality(gan, "ring8", seed=0)["score"] == pytest.approx(best_score)
        assert int(gan.g_optimizer.iterations.numpy()) == best_batches
        assert int(gan.d_optimizer.iterations.numpy()) == best_batches
        # Callbacks after it (keras-tuner's checkpoint) see the point put back.
        assert seen == [best_batches]
        if direction == "min":
            assert best_batches < 200


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_trials": 0}, "max_trials must be a positive integer"),
        ({"epochs_per_trial": -1}, "epochs_per_trial must be a positive integer"),
        ({"search_space": keras_tuner.HyperParameters()}, "The search space is empty"),
        ({"search_space": "lr"}, "must be a keras_tuner.HyperParameters"),
        ({"evaluations_per_segment": 0}, "evaluations_per_segment must be a positive integer"),
        ({"evaluations_per_segment": 2, "strategy": "oneshot"},
         r"evaluations_per_segment=2 needs strategy='trajectory'"),
        ({"evaluations_per_segment": 20, "budget_steps": 64, "population_size": 2,
          "segments": 2}, "segments of at least as many steps; they have 16"),
    ],
)
def test_bad_arguments_fail_at_construction(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        RLHF(**kwargs)


def test_the_default_search_screens_three_times_its_population_at_birth_and_moves_by_x1_41(
        tmp_path):
    """The defaults measured in benchmarks/RESULTS.md (sessions 19, 37-38): twelve born, the
    best four go on; no more births than leave each a later segment; moves of 0.05."""
    assert RLHF(directory=tmp_path).birth_population == 12
    assert RLHF(population_size=3, segments=5, directory=tmp_path).birth_population == 9
    assert RLHF(population_size=3, segments=3, directory=tmp_path).birth_population == 6
    assert RLHF(population_size=2, segments=2, directory=tmp_path).birth_population == 2
    assert RLHF(birth_population=4, directory=tmp_path).birth_population == 4  # screening off
    assert RLHF(strategy="oneshot", directory=tmp_path).birth_population is None
    assert list(tmp_path.iterdir()) == []  # constructing writes nothing
    assert TrajectoryOracle(objective=keras_tuner.Objective("fid", "min")).policy.step == 0.05


def test_the_default_search_cuts_to_two_lineages_with_a_way_back_and_a_running_baseline(
        tmp_path):
    """The defaults measured in benchmarks/RESULTS.md (sessions 23-24): a population of 4
    cut to its best 2 at half the budget, elitist, a running REINFORCE baseline, a first birth
    at the space's defaults, rewards with capped losses (session 33); all reach the oracle
    and each can be turned off."""
    objective = keras_tuner.Objective("fid", "min")
    oracle = RLHF(directory=tmp_path)._make_oracle(objective)
    assert oracle.generation_sizes == [12, 4, 2, 2, 2, 2, 2, 2, 2, 2]
    assert oracle.elitist is True and oracle.baseline == "running"
    assert oracle.birth_at_defaults is True and oracle.reward == "capped"
    assert RLHF(population_size=3, segments=3, directory=tmp_path).final_population == 3
    plain = RLHF(final_population=4, elitist=False, baseline="population",
                 birth_at_defaults=False, reward="difference",
                 directory=tmp_path)._make_oracle(objective)
    assert plain.generation_sizes == [12] + [4] * 5
    assert plain.elitist is False and plain.baseline == "population"
    assert plain.birth_at_defaults is False and plain.reward == "difference"
    assert RLHF(strategy="oneshot", directory=tmp_path).oracle_kwargs == {}
    assert list(tmp_path.iterdir()) == []  # constructing writes nothing


def test_unsupported_hyperparameter_is_named():
    hp = default_search_space()
    hp.Int("dropout_rate", 0, 5)
    with pytest.raises(ValueError, match=r"Unsupported hyperparameter\(s\) 'dropout_rate'.*g_lr"):
        RLHF(search_space=hp)


def test_data_the_generator_cannot_produce_fails_before_any_trial(tmp_path):
    gan = GAN(*architectures.seed_mlp(), seed=0)  # makes 784-pixel images
    rlhf = RLHF(strategy="oneshot", max_trials=1, data="ring8", directory=tmp_path, verbose=0)
    with pytest.raises(ValueError, match=r"\(2,\).*784"):
        rlhf.finetune(gan)
    assert list(tmp_path.iterdir()) == []


def test_rungs_continue_promising_trials_from_their_weights(tmp_path):
    """Multi-fidelity: rung-1 trials train 1 epoch; promoted ones continue to epochs_per_trial."""
    rlhf = RLHF(search_space=small_space(), strategy="oneshot",
                max_trials=5, epochs_per_trial=2, batch_size=512,
                data="ring8", directory=tmp_path, seed=0, verbose=0, rungs=(1, 2),
                reduction_factor=2)
    rlhf.finetune(ring_gan())
    trials = rlhf.oracle.trials
    continued = [t for t in trials.values() if "tuner/trial_id" in t.hyperparameters.values]
    assert continued, "no trial was promoted to the second rung"
    for trial in continued:
        parent = trials[trial.hyperparameters.values["tuner/trial_id"]]
        assert trial.hyperparameters.values["tuner/initial_epoch"] == 1
        assert trial.metrics.get_last_value("epochs_trained") == 1  # epoch 2 only
        shared = {k: v for k, v in parent.hyperparameters.values.items() if "/" not in k}
        assert {k: trial.hyperparameters.values[k] for k in shared} == shared
    rows = rlhf.results
    assert len(rows) == 5 and all(not any("/" in k for k in row["values"]) for row in rows)
    assert json.loads((tmp_path / "rlhf" / "search.json").read_text())["rungs"] == [1, 2]


def test_rungs_must_end_at_a_full_trial():
    with pytest.raises(ValueError, match=r"must end at epochs_per_trial=3.*rungs=\(1, 3\)"):
        RLHF(strategy="oneshot", epochs_per_trial=3, rungs=(1, 2))


@pytest.fixture(scope="module")
def trajectory_search(tmp_path_factory):
    """2 members x 3 segments of 100 steps on ring8; g_ema is searched too (0 or 0.9)."""
    space = small_space()
    space.Choice("g_ema", [0.0, 0.9])
    rlhf = RLHF(search_space=space, budget_steps=600, population_size=2, segments=3,
                birth_population=2,  # no screening: two lineages of three segments
                batch_size=256, data="ring8", directory=tmp_path_factory.mktemp("trajectory"),
                seed=0, verbose=0)
    return rlhf, rlhf.finetune(ring_gan())


def test_trajectory_search_spends_exactly_its_budget_and_continues_each_member(
        trajectory_search):
    rlhf, best = trajectory_search
    assert rlhf.strategy == "trajectory" and rlhf.steps_per_trial == 100
    rows = rlhf.results
    assert len(rows) == 6 and rlhf.total_steps == 600
    assert all(r["status"] == "COMPLETED" for r in rows)
    assert sorted((r["member"], r["segment"]) for r in rows) == [
        (m, s) for m in (0, 1) for s in (0, 1, 2)]
    by_id = {r["trial_id"]: r for r in rows}
    for row in rows:  # every later segment continues a segment of the generation before
        if row["segment"]:
            assert by_id[row["parent"]]["segment"] == row["segment"] - 1
    # The best GAN has trained for its whole lineage: (segment + 1) x 100 steps.
    best_row = min((r for r in rows if r["score"] is not None), key=lambda r: -r["score"])
    assert int(best.g_optimizer.iterations) == (best_row["segment"] + 1) * 100
    schedule = rlhf.best_schedule
    assert [s["generation"] for s in schedule] == list(range(best_row["segment"] + 1))
    assert schedule[-1]["trial_id"] == best_row["trial_id"]
    # Every reward is in the table once its generation has ended.
    assert all(r["reward"] is not None for r in rows)


def test_a_member_can_switch_its_weight_average_mid_training(trajectory_search):
    """g_ema changes no shape (momentum 0 keeps an average equal to the weights), so the
    schedule policy may change it before any segment, and a segment still loads its parent."""
    rlhf, best = trajectory_search
    rows = rlhf.results
    by_id = {r["trial_id"]: r for r in rows}
    births = sorted(r["values"]["g_ema"] for r in rows if r["segment"] == 0)
    assert births == [0.0, 0.9]  # stratified: one member each
    switched = [r for r in rows
                if r["segment"] and r["values"]["g_ema"] != by_id[r["parent"]]["values"]["g_ema"]]
    assert switched
    best_row = max(rows, key=lambda r: r["score"])
    assert best.ema_momentum == best_row["values"]["g_ema"]


def test_every_segment_is_saved_and_scored_at_its_best_point(tmp_path):
    """With evaluations_per_segment, keras-tuner's checkpoint of each segment is its best
    point: reloaded, every trial scores what results.json says it scored, and the next
    segment continues from there."""
    from rlhf_keras import metrics

    rlhf = RLHF(search_space=small_space(), budget_steps=400, population_size=2, segments=2,
                birth_population=2, evaluations_per_segment=4, batch_size=256, data="ring8",
                directory=tmp_path, seed=0, verbose=0)
    rlhf.finetune(ring_gan())
    rows = {r["trial_id"]: r for r in rlhf.results}
    assert len(rows) == 4
    for trial in rlhf.tuner.oracle.trials.values():
        model = rlhf.tuner.load_model(trial)
        assert metrics.quality(model, "ring8", seed=0)["score"] == pytest.approx(
            rows[trial.trial_id]["score"])
        # Steps trained up to its best point: on a point of this segment, after the parent's.
        steps = int(model.g_optimizer.iterations)
        assert steps % 25 == 0 and 0 < steps <= (rows[trial.trial_id]["segment"] + 1) * 100
    fingerprint = json.loads((tmp_path / "rlhf" / "search.json").read_text())
    assert fingerprint["evaluations_per_segment"] == 4


def test_points_of_a_segment_are_compared_by_a_measured_objective_only(tmp_path):
    rlhf = RLHF(search_space=small_space(), budget_steps=400, population_size=2, segments=2,
                evaluations_per_segment=2, objective="r_g", data="ring8",
                directory=tmp_path / "runs")
    with pytest.raises(ValueError, match=r"must be 'fid' or 'score'.*not 'r_g'"):
        rlhf.finetune(ring_gan())
    assert not (tmp_path / "runs").exists()


def test_a_cut_population_spends_the_same_budget_on_longer_lineages(tmp_path):
    rlhf = RLHF(search_space=small_space(), budget_steps=400, population_size=2, segments=2,
                final_population=1, batch_size=256, data="ring8", directory=tmp_path, seed=0,
                verbose=0)
    best = rlhf.finetune(ring_gan())
    rows = rlhf.results
    assert len(rows) == 4 and rlhf.total_steps == 400 and rlhf.steps_per_trial == 100
    # 2 members for half the budget, then the better one alone for two more segments.
    assert [r["segment"] for r in rows] == [0, 0, 1, 2]
    first = [r for r in rows if r["segment"] == 0]
    better = max(first, key=lambda r: r["score"])
    assert rows[2]["parent"] == better["trial_id"] and rows[3]["parent"] == rows[2]["trial_id"]
    best_row = max(rows, key=lambda r: r["score"])
    assert int(best.g_optimizer.iterations) == (best_row["segment"] + 1) * 100
    search = json.loads((tmp_path / "rlhf" / "search.json").read_text())
    assert search["final_population"] == 1


def test_birth_only_defaults_to_the_widths_and_can_be_extended(tmp_path):
    """`RLHF(birth_only=...)` reaches the trajectory oracle; without it the widths are fixed at
    birth, as they change the networks' shapes."""
    from rlhf_keras.finetune import BIRTH_ONLY

    objective = keras_tuner.Objective("fid", "min")
    assert RLHF(directory=tmp_path)._make_oracle(objective).birth_only == list(BIRTH_ONLY)
    names = ("g_width", "d_width", "beta_1")
    oracle = RLHF(directory=tmp_path, birth_only=names)._make_oracle(objective)
    assert oracle.birth_only == list(names)
    with pytest.raises(ValueError, match=r"birth_only names \['beta_2'\], not in the search"):
        RLHF(directory=tmp_path, birth_only=["beta_2"])
    for bad in ("beta_1", 3, ["beta_1", None]):
        with pytest.raises(ValueError, match="birth_only must be a list of hyperparameter names"):
            RLHF(directory=tmp_path, birth_only=bad)
    assert list(tmp_path.iterdir()) == []


def test_balance_reaches_the_schedule_policy_and_survives_a_resume(tmp_path):
    objective = keras_tuner.Objective("fid", "min")
    assert RLHF(directory=tmp_path)._make_oracle(objective).policy.balance is None
    oracle = RLHF(directory=tmp_path, balance=2.0)._make_oracle(objective)
    assert oracle.policy.balance == 2.0
    resumed = RLHF(directory=tmp_path)._make_oracle(objective)
    resumed.set_state(oracle.get_state())  # as a resumed search reads oracle.json
    assert resumed.policy.balance == 2.0


def test_balance_is_refused_with_a_d_lr_ratio_space_and_kept_with_d_lr(tmp_path):
    ratio_space = default_search_space(d_lr_ratio=True)
    with pytest.raises(ValueError, match="balance compares g_lr with d_lr, and this search "
                                         "space searches d_lr_ratio"):
        RLHF(search_space=ratio_space, directory=tmp_path, balance=0.0)
    assert RLHF(search_space=ratio_space, directory=tmp_path).oracle_kwargs.get("balance") is None
    assert RLHF(directory=tmp_path, balance=0.0).oracle_kwargs["balance"] == 0.0
    assert list(tmp_path.iterdir()) == []
