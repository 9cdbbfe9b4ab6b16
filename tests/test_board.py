"""TensorBoard writers: sample pictures, HParams summaries and policy scalars, read back."""

from __future__ import annotations

import os
from pathlib import Path

import keras
import keras_tuner
import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.hparams import api_pb2
from tensorboard.plugins.hparams import metadata as hp_metadata

from rlhf_keras import GAN, RLHF, architectures, board, data
from rlhf_keras.policy import HyperparameterPolicy

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _events(folder: Path) -> event_accumulator.EventAccumulator:
    acc = event_accumulator.EventAccumulator(
        str(folder), size_guidance={event_accumulator.TENSORS: 0, event_accumulator.IMAGES: 0}
    )
    acc.Reload()
    return acc


def _scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Scalars written with tf.summary.scalar (TF2 stores them as tensors)."""
    acc = _events(folder)
    return {
        tag: [(e.step, float(tf.make_ndarray(e.tensor_proto))) for e in acc.Tensors(tag)]
        for tag in acc.Tags()["tensors"]
        if acc.SummaryMetadata(tag).plugin_data.plugin_name == "scalars"
    }


def _images(folder: Path, tag: str = "samples") -> list[tuple[int, np.ndarray]]:
    """Pictures written with tf.summary.image: tensors of [width, height, png bytes...]."""
    acc = _events(folder)
    assert tag in acc.Tags()["tensors"]
    assert acc.SummaryMetadata(tag).plugin_data.plugin_name == "images"
    out = []
    for event in acc.Tensors(tag):
        width, height, png = tf.make_ndarray(event.tensor_proto)[:3]
        picture = tf.io.decode_png(png).numpy()
        assert picture.shape[:2] == (int(height), int(width))
        out.append((event.step, picture))
    return out


def _trained_gan(x: np.ndarray, latent_dim: int, callbacks: list, epochs: int = 2) -> GAN:
    keras.utils.set_random_seed(0)
    generator, discriminator = architectures.small_mlp(x.shape[1:], latent_dim, hidden=16)
    gan = GAN(generator, discriminator, seed=0)
    gan.compile()
    dataset = tf.data.Dataset.from_tensor_slices(x).batch(64)
    gan.fit(dataset, epochs=epochs, verbose=0, callbacks=callbacks)
    return gan


def test_sample_grid_callback_writes_an_image_grid_per_epoch(tmp_path):
    x, _, _ = data.load_arrays("digits", shape=(784,))
    callback = board.SampleGridCallback(tmp_path / "trial_0", every=1, n=9, seed=3)
    _trained_gan(x[:256], 8, [callback, keras.callbacks.TensorBoard(str(tmp_path / "trial_0"))])

    pictures = _images(tmp_path / "trial_0" / "samples")
    assert [step for step, _ in pictures] == [0, 1]
    for _, picture in pictures:
        # 3 x 3 digits of 28 pixels with 2-pixel gaps and border: 3 * 30 + 2.
        assert picture.shape == (92, 92, 1)
        assert picture.std() > 5  # digits drawn, not a blank square
    # The Keras callback's losses sit beside the pictures, in train/.
    assert "epoch_d_loss" in _scalars(tmp_path / "trial_0" / "train")


def test_sample_grid_callback_draws_2d_points_every_other_epoch(tmp_path):
    x, _, _ = data.load_arrays("ring8", seed=0)
    callback = board.SampleGridCallback(tmp_path, every=2, n_points=200)
    _trained_gan(x[:512], 4, [callback], epochs=3)

    pictures = _images(tmp_path / "samples")
    assert [step for step, _ in pictures] == [1, 2]  # epoch 2 by `every`, epoch 3 as the last
    picture = pictures[0][1]
    assert picture.shape == (256, 256, 3)
    assert picture.std() > 5  # axes and points drawn


def test_sample_grid_callback_skips_samples_without_a_picture(tmp_path):
    generator, discriminator = architectures.small_mlp((5,), 4, hidden=8)
    callback = board.SampleGridCallback(tmp_path)
    callback.set_model(GAN(generator, discriminator, seed=0))
    with pytest.warns(UserWarning, match="neither images nor 2-D points"):
        callback.on_train_begin()
    callback.on_epoch_end(0)
    callback.on_train_end()
    assert not (tmp_path / "samples").exists()


def test_sample_grid_callback_rejects_bad_arguments_and_models(tmp_path):
    with pytest.raises(ValueError, match="every must be a positive int"):
        board.SampleGridCallback(tmp_path, every=0)
    callback = board.SampleGridCallback(tmp_path)
    callback.set_model(keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)]))
    with pytest.raises(TypeError, match="needs a rlhf_keras.GAN"):
        callback.on_train_begin()


def test_hparams_config_and_trials_are_readable_by_the_hparams_plugin(tmp_path):
    space = keras_tuner.HyperParameters()
    space.Float("g_lr", 1e-5, 1e-2, sampling="log")
    space.Choice("g_width", [0.5, 1.0, 2.0])
    space.Int("d_steps", 1, 3)
    space.Boolean("flag")
    board.log_hparams_config(tmp_path, space, ["reward", "fid", "train/epoch_d_loss"])
    board.log_trial_hparams(
        tmp_path / "trial_0",
        {"g_lr": np.float64(2e-4), "g_width": 1.0, "d_steps": 2, "flag": True},
        {"reward": -42.5, "fid": np.float32(42.5)},
    )
    board.log_trial_hparams(tmp_path / "trial_1", {"g_lr": 1e-3, "g_width": 0.5, "d_steps": 1},
                            {"reward": float("nan"), "fid": None}, step=3)

    content = _events(tmp_path).SummaryMetadata(hp_metadata.EXPERIMENT_TAG).plugin_data.content
    experiment = hp_metadata.parse_experiment_plugin_data(content)
    infos = {info.name: info for info in experiment.hparam_infos}
    assert list(infos) == ["g_lr", "g_width", "d_steps", "flag"]
    assert (infos["g_lr"].domain_interval.min_value,
            infos["g_lr"].domain_interval.max_value) == (1e-5, 1e-2)
    assert [v.number_value for v in infos["g_width"].domain_discrete.values] == [0.5, 1.0, 2.0]
    assert infos["d_steps"].type == api_pb2.DATA_TYPE_FLOAT64
    assert [v.bool_value for v in infos["flag"].domain_discrete.values] == [False, True]
    assert [(m.name.group, m.name.tag) for m in experiment.metric_infos] == [
        ("", "reward"), ("", "fid"), ("train", "epoch_d_loss")]

    acc = _events(tmp_path / "trial_0")
    start = hp_metadata.parse_session_start_info_plugin_data(
        acc.SummaryMetadata(hp_metadata.SESSION_START_INFO_TAG).plugin_data.content)
    assert start.group_name == "trial_0"
    assert start.hparams["g_lr"].number_value == pytest.approx(2e-4)
    assert start.hparams["flag"].bool_value is True
    assert _scalars(tmp_path / "trial_0") == {"reward": [(0, -42.5)], "fid": [(0, 42.5)]}
    second = _scalars(tmp_path / "trial_1")
    assert list(second) == ["reward"] and second["reward"][0][0] == 3
    assert np.isnan(second["reward"][0][1])  # a diverged trial stays visible as NaN


def test_hparams_writers_reject_bad_input_with_a_fix(tmp_path):
    with pytest.raises(TypeError, match="keras_tuner.HyperParameters"):
        board.log_hparams_config(tmp_path, {"g_lr": 1e-3}, ["reward"])
    with pytest.raises(ValueError, match="non-empty list"):
        board.log_hparams_config(tmp_path, keras_tuner.HyperParameters(), [])
    with pytest.raises(ValueError, match="bool, int, float or str"):
        board.log_trial_hparams(tmp_path, {"widths": [1, 2]}, {})
    with pytest.raises(ValueError, match="must be a number"):
        board.log_trial_hparams(tmp_path, {}, {"fid": "low"})
    assert not list(tmp_path.iterdir())  # nothing written before the error


def test_log_policy_writes_probabilities_and_gaussian_moments_per_update(tmp_path):
    space = keras_tuner.HyperParameters()
    space.Choice("g_width", [0.5, 1.0])
    space.Float("g_lr", 1e-5, 1e-2, sampling="log", default=2e-4)
    policy = HyperparameterPolicy()
    rng = np.random.default_rng(0)
    summaries = []
    for step in (1, 2, 3):
        _, action = policy.sample(space, rng)
        policy.reinforce(action, 1.0 if action["g_width"]["index"] == 1 else -1.0)
        summaries.append(policy.summary())
        board.log_policy(tmp_path, summaries[-1], step, extras={"reward": step / 10})

    scalars = _scalars(tmp_path)
    assert sorted(scalars) == ["g_lr/mean", "g_lr/std", "g_width/p=0.5", "g_width/p=1.0",
                               "reinforce/reward"]
    for step, summary in zip((1, 2, 3), summaries, strict=True):
        at = {tag: dict(points)[step] for tag, points in scalars.items()}
        assert at["g_width/p=1.0"] == pytest.approx(summary["g_width"][1.0], rel=1e-6)
        assert at["g_width/p=0.5"] + at["g_width/p=1.0"] == pytest.approx(1.0, rel=1e-6)
        assert at["g_lr/mean"] == pytest.approx(summary["g_lr"]["mean"], rel=1e-6)
        assert at["reinforce/reward"] == pytest.approx(step / 10)
    # The policy learned: choice 1.0 (rewarded) gained probability after being drawn.
    assert scalars["g_width/p=1.0"][-1][1] != pytest.approx(0.5)


def test_log_policy_history_replays_json_snapshots(tmp_path):
    history = [
        {"trial_id": "0", "update": 1, "reward": 1.0, "baseline": 0.0, "advantage": 1.0,
         "policy": {"beta_1": {"0.0": 0.4, "0.5": 0.6}, "d_lr": {"mean": 3e-4, "std": 1e-4}}},
        {"trial_id": "1", "update": 2, "reward": 2.0, "baseline": 0.1, "advantage": 1.9,
         "policy": {"beta_1": {"0.0": 0.3, "0.5": 0.7}, "d_lr": {"mean": 4e-4, "std": 1e-4}}},
    ]
    board.log_policy_history(tmp_path, history)
    scalars = _scalars(tmp_path)
    assert scalars["beta_1/p=0.5"] == [(1, pytest.approx(0.6)), (2, pytest.approx(0.7))]
    assert scalars["d_lr/mean"][1] == (2, pytest.approx(4e-4))
    assert scalars["reinforce/advantage"] == [(1, 1.0), (2, pytest.approx(1.9))]
    with pytest.raises(ValueError, match="step must be an int"):
        board.log_policy(tmp_path, history[0]["policy"], step=1.5)


def test_many_updates_and_a_removed_folder_keep_every_step(tmp_path):
    # Fresh writers per call would name files ...9.v2, ...10.v2: read out of order, steps lost.
    for step in range(1, 13):
        board.log_policy(tmp_path / "policy", {"g_width": {1.0: step / 100}}, step)
    steps = [s for s, _ in _scalars(tmp_path / "policy")["g_width/p=1.0"]]
    assert steps == list(range(1, 13))
    assert len(list((tmp_path / "policy").glob("events.out.tfevents.*"))) == 1

    import shutil

    shutil.rmtree(tmp_path / "policy")  # e.g. a search restarted with overwrite=True
    board.log_policy(tmp_path / "policy", {"g_width": {1.0: 0.9}}, 1)
    assert _scalars(tmp_path / "policy")["g_width/p=1.0"] == [(1, pytest.approx(0.9))]


def test_a_search_writes_one_run_per_trial_without_repeated_tags_and_log10_rates(tmp_path):
    """Acceptance: a search's event files (2 members x 2 segments), read as TensorBoard does."""
    keras.utils.set_random_seed(0)
    generator, discriminator = architectures.small_mlp((784,), latent_dim=8, hidden=16)
    rlhf = RLHF(budget_steps=40, population_size=2, segments=2, data="digits",
                directory=tmp_path, seed=0, verbose=0)
    rlhf.finetune(GAN(generator, discriminator, latent_dim=8))
    logs = tmp_path / "rlhf" / "logs"
    runs = sorted(str(p.parent.relative_to(logs)) for p in logs.rglob("events.out.tfevents.*"))
    trials = ["0", "1", "2", "3"]
    assert sorted(set(runs)) == [f"{t}/execution0" for t in trials] + ["policy"], runs

    rows = {row["trial_id"]: row for row in rlhf.results}
    for trial_id in trials:
        run = logs / trial_id / "execution0"
        acc = _events(run)
        assert "_hparams_/session_start_info" in acc.Tags()["tensors"]  # HParams session here
        assert _images(run)  # the trial's sample grid is in the same run
        scalars = _scalars(run)
        assert {"epoch_d_loss", "epoch_g_loss", "fid"} <= set(scalars)
        assert "score" not in scalars and "epoch_r_d" not in scalars  # -fid and -d_loss
        series = {tag: np.array([v for _, v in points]) for tag, points in scalars.items()}
        row = rows[trial_id]
        # A member born at the space's defaults has g_lr == d_lr: equal values, two names.
        same_rates = row["values"].get("g_lr") == row["values"].get("d_lr")
        for a in series:
            for b in series:
                if same_rates and {a, b} == {"epoch_log10_d_lr", "epoch_log10_g_lr"}:
                    continue
                if a < b and len(series[a]) == len(series[b]):
                    assert not np.allclose(series[a], series[b]), (a, b)
                    assert not np.allclose(series[a], -series[b]), (a, b)
        if row["parent"] is None:  # a birth's reward is its score: not written twice
            assert "reward" not in scalars
        else:
            assert series["reward"] == pytest.approx([row["reward"]], rel=1e-5)
        values = row["values"]
        for name in ("g_lr", "d_lr"):
            logged = series[f"epoch_log10_{name}"]
            assert logged == pytest.approx(np.log10(values[name]), abs=1e-5), name
    policy = _scalars(logs / "policy")
    assert {"g_lr/p=down", "g_lr/p=keep", "g_lr/p=up"} <= set(policy)


def test_policy_probabilities_of_a_hyperparameter_share_one_chart(tmp_path):
    board.log_policy(tmp_path, {"g_lr": {"down": 0.2, "keep": 0.5, "up": 0.3},
                                "beta_1": {0.0: 0.4, 0.5: 0.6}}, step=1)
    acc = _events(tmp_path)
    config = acc.Tensors("custom_scalars__config__")[0]
    layout = layout_pb2.Layout.FromString(tf.make_ndarray(config.tensor_proto).item())
    charts = {chart.title: list(chart.multiline.tag) for chart in layout.category[0].chart}
    assert sorted(charts) == ["beta_1", "g_lr"]
    import re

    g_lr_tags = [tag for tag in _scalars(tmp_path) if re.search(charts["g_lr"][0], tag)]
    assert sorted(g_lr_tags) == ["g_lr/p=down", "g_lr/p=keep", "g_lr/p=up"]
