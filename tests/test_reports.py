"""Plots and the run report, made from a real (tiny) search's directory."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from rlhf_keras import GAN, RLHF, architectures, reports

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A real 3-trial search on ring8 (about 10 s): results.json, oracle.json, best model."""
    keras.utils.set_random_seed(0)
    generator, discriminator = architectures.small_mlp((2,), latent_dim=4, hidden=16)
    rlhf = RLHF(strategy="oneshot", max_trials=3, epochs_per_trial=1, batch_size=512, data="ring8",
                directory=tmp_path_factory.mktemp("runs"), seed=0, verbose=0)
    rlhf.finetune(GAN(generator, discriminator, seed=0))
    return rlhf.project_dir


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype="float64")


def test_best_so_far_is_a_running_maximum_that_ignores_nan():
    np.testing.assert_array_equal(reports.best_so_far([1.0, 0.5, float("nan"), 3.0, 2.0]),
                                  [1.0, 1.0, 1.0, 3.0, 3.0])
    assert reports.best_so_far([]).size == 0


def test_write_report_makes_pictures_table_and_best_values(run_dir):
    path = reports.write_report(run_dir)
    assert path == run_dir / "report.md"
    sizes = {reports.REWARDS_PNG: reports.REWARDS_SIZE, reports.POLICY_PNG: reports.POLICY_SIZE,
             reports.SAMPLES_PNG: (400, 400)}
    for name, size in sizes.items():
        image = Image.open(run_dir / name)
        assert image.size == size, name
        assert _pixels(run_dir / name).var() > 100, f"{name} is blank"

    text = path.read_text()
    rows = json.loads((run_dir / "results.json").read_text())
    assert len(rows) == 3
    for row in rows:  # a table line per trial, with its hyperparameters
        line = next(t for t in text.splitlines() if t.startswith(f"| {row['trial_id']} |"))
        assert "COMPLETED" in line or "FAILED" in line
        assert reports._fmt(row["values"]["g_lr"]) in line
    for name in (reports.SAMPLES_PNG, reports.REWARDS_PNG, reports.POLICY_PNG):
        assert f"]({name})" in text
    best = max((r for r in rows if r["score"] is not None), key=lambda r: r["score"])
    assert f"Trial {best['trial_id']}: score = {reports._fmt(best['score'])}" in text
    best_block = text.split("## Best trial")[1].split("## Pictures")[0]
    for name, value in best["values"].items():
        assert f"| {name} | {reports._fmt(value)} |" in best_block
    assert "objective `score` (maximise)" in text
    search = json.loads((run_dir / "search.json").read_text())
    assert text.splitlines()[0] == (f"# One-shot search of {', '.join(search['search_space'])} "
                                    f"on ring8 ({run_dir.name})")
    assert reports.FID_REFERENCE not in text  # FID's reference point only where FID is scored
    assert f"tensorboard --logdir {run_dir / 'logs'}" in text


def test_policy_matrix_matches_the_oracle_history(run_dir):
    run = reports.read_run(run_dir)
    history = run["policy_history"]
    assert [s["trial_id"] for s in history] == ["0", "1", "2"]
    labels, probs, gaussians = reports.policy_matrix(history)
    assert labels[:3] == ["g_width=0.5", "g_width=1.0", "g_width=2.0"]
    assert probs.shape == (8, 3)  # 3 + 3 + 2 choices, 3 updates
    np.testing.assert_allclose(probs[:3].sum(axis=0), 1.0)
    assert probs[labels.index("beta_1=0.5"), 1] == pytest.approx(
        history[1]["policy"]["beta_1"]["0.5"])
    assert sorted(gaussians) == ["d_lr", "g_lr"]
    assert gaussians["g_lr"].shape == (3, 2)
    assert gaussians["g_lr"][2, 0] == pytest.approx(history[2]["policy"]["g_lr"]["mean"])


def test_plot_rewards_marks_failures_and_keeps_its_size(tmp_path):
    rows = [
        {"trial_id": "0", "status": "COMPLETED", "score": -80.0, "reward": -80.0},
        {"trial_id": "1", "status": "FAILED", "score": None, "reward": -120.0},
        {"trial_id": "2", "status": "COMPLETED", "score": -60.0, "reward": -60.0},
    ]
    path = reports.plot_rewards(rows, tmp_path / "r.png", objective="fid")
    assert Image.open(path).size == reports.REWARDS_SIZE
    pixels = _pixels(path)
    red = (pixels[..., 0] > 180) & (pixels[..., 1] < 80) & (pixels[..., 2] < 80)
    assert red.sum() > 10  # the failed trial's red cross is drawn
    with pytest.raises(ValueError, match="No trial has a reward yet"):
        reports.plot_rewards([{"trial_id": "0", "status": "RUNNING"}], tmp_path / "x.png")
    with pytest.raises(ValueError, match="policy history is empty"):
        reports.plot_policy([], tmp_path / "p.png")
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "p.png").exists()


def test_report_of_a_run_without_finished_trials_says_why(tmp_path):
    (tmp_path / "results.json").write_text("[]")
    text = reports.write_report(tmp_path).read_text()
    assert "No trial has completed" in text
    assert "Samples of the best model: not available (no best_model.keras yet)" in text
    assert "Policy over the search: not available" in text


def test_bad_run_directories_fail_clearly_without_touching_results(tmp_path, run_dir, capsys):
    with pytest.raises(ValueError, match="is not a run directory.*rlhf_runs/rlhf"):
        reports.write_report(tmp_path / "nothing")
    parent = tmp_path / "runs"
    shutil.copytree(run_dir, parent / "rlhf")
    with pytest.raises(ValueError, match=r"It holds the run\(s\) rlhf: pass .*runs/rlhf"):
        reports.write_report(parent)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "results.json").write_text("{not json")
    with pytest.raises(ValueError, match="results.json is not valid JSON"):
        reports.write_report(broken)
    assert (broken / "results.json").read_text() == "{not json"
    assert not (broken / "report.md").exists()

    assert reports.main([str(tmp_path / "nothing")]) == 2
    assert "is not a run directory" in capsys.readouterr().err
    assert reports.main([str(parent / "rlhf"), "--samples", "16"]) == 0
    assert (parent / "rlhf" / "report.md").exists()


def test_save_samples_still_draws_grids_and_points(tmp_path):
    rng = np.random.default_rng(0)
    grid = reports.save_samples(rng.uniform(-1, 1, (16, 784)), tmp_path / "grid.png")
    points = reports.save_samples(rng.normal(size=(100, 2)), tmp_path / "points.png",
                                  real=rng.normal(size=(100, 2)))
    assert Image.open(grid).size == (640, 160)  # 8 x 2 images of 1 inch at 80 dpi
    assert Image.open(points).size == (400, 400)
    assert _pixels(grid).var() > 100 and _pixels(points).var() > 100


def test_log_run_writes_hparams_sessions_and_the_policy_from_the_directory(run_dir, tmp_path):
    import tensorflow as tf
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.plugins.hparams import metadata as hp_metadata

    from rlhf_keras import board

    copy = tmp_path / "rlhf"
    shutil.copytree(run_dir, copy)
    shutil.rmtree(copy / "logs")  # a run whose TensorBoard logs were lost or never written
    logs = board.log_run(copy)
    assert logs == copy / "logs"

    def events(folder):
        acc = event_accumulator.EventAccumulator(str(folder), size_guidance={"tensors": 0})
        acc.Reload()
        return acc

    experiment = hp_metadata.parse_experiment_plugin_data(
        events(logs).SummaryMetadata(hp_metadata.EXPERIMENT_TAG).plugin_data.content)
    assert {i.name for i in experiment.hparam_infos} == {"g_lr", "d_lr", "g_width", "d_width",
                                                        "beta_1", "g_ema"}
    assert [m.name.tag for m in experiment.metric_infos][:2] == ["reward", "score"]
    rows = json.loads((copy / "results.json").read_text())
    runs = {str(p.parent.relative_to(logs)) for p in logs.rglob("events.out.tfevents.*")}
    assert runs == {".", "policy"} | {f"{row['trial_id']}/execution0" for row in rows}
    for row in rows:  # keras-tuner's run of the trial, as a live search writes it
        acc = events(logs / row["trial_id"] / "execution0")
        start = hp_metadata.parse_session_start_info_plugin_data(
            acc.SummaryMetadata(hp_metadata.SESSION_START_INFO_TAG).plugin_data.content)
        assert start.hparams["g_width"].number_value == row["values"]["g_width"]
        reward = tf.make_ndarray(acc.Tensors("reward")[0].tensor_proto)
        assert float(reward) == pytest.approx(row["reward"], rel=1e-6)
        score = tf.make_ndarray(acc.Tensors("score")[0].tensor_proto)  # 2-D: modes + hq/100
        assert float(score) == pytest.approx(row["score"], rel=1e-6)
    policy = events(logs / "policy")
    history = reports.read_run(copy)["policy_history"]
    steps = [e.step for e in policy.Tensors("g_width/p=1.0")]
    assert steps == [s["update"] for s in history] == [1, 2, 3]
    last = float(tf.make_ndarray(policy.Tensors("beta_1/p=0.0")[-1].tensor_proto))
    assert last == pytest.approx(history[-1]["policy"]["beta_1"]["0.0"], rel=1e-6)


def test_report_title_names_the_strategy_space_data_and_budget(tmp_path):
    search = {"strategy": "trajectory", "search_space": ["g_lr", "beta_1"], "data": "mnist",
              "budget_steps": 20000}
    assert reports.report_title(search, tmp_path / "rlhf") == (
        "Trajectory search of g_lr, beta_1 on mnist, 20,000 training steps (rlhf)")
    assert reports.report_title({}, tmp_path / "old") == "Search report: old"


def test_the_schedule_leaves_out_what_never_changed_and_says_so(tmp_path):
    decisions = {
        "0": {"values": {"g_lr": 1e-3, "beta_1": 0.0, "g_ema": 0.999, "tuner/epochs": 1}},
        "1": {"values": {"g_lr": 5e-4, "beta_1": 0.0, "g_ema": 0.999, "tuner/epochs": 2}},
        "2": {"values": {"g_lr": 1e-3, "beta_1": 0.5, "g_ema": 0.999, "tuner/epochs": 2}},
    }
    fixed = reports.fixed_values({"decisions": decisions})
    assert fixed == {"g_ema": 0.999}  # beta_1 took two values, g_lr three: both drawn
    schedule = [{"trial_id": "0", "generation": 0, "g_lr": 1e-3, "g_ema": 0.999},
                {"trial_id": "1", "generation": 1, "g_lr": 5e-4, "g_ema": 0.999}]
    one = reports.plot_schedule(schedule, tmp_path / "one.png", fixed=fixed)
    two = reports.plot_schedule(schedule, tmp_path / "two.png")
    assert Image.open(one).size[1] < Image.open(two).size[1]  # one panel instead of two
    with pytest.raises(ValueError, match="every hyperparameter was fixed"):
        reports.plot_schedule(schedule, tmp_path / "none.png", fixed={"g_lr": 1, "g_ema": 1})
