"""The bad-input catalogue: one clear error each, before any training, nothing destroyed.

Every case goes through the public API (`RLHF(...).finetune`, `GAN`, `data.load`, `load_gan`,
the CLI) next to a finished earlier run, and checks the error type, that the message names
the problem and the fix, and that the earlier run's files are unchanged (names, sizes and
modification times) and no training started.
"""

from __future__ import annotations

import json
import shutil

import helpers_crash as hc
import keras
import keras_tuner
import numpy as np
import pytest

from rlhf_keras import GAN, RLHF, DataError, architectures, data, default_search_space
from rlhf_keras.cli import main as cli_main
from rlhf_keras.gan import load_gan


def _space() -> keras_tuner.HyperParameters:
    hp = keras_tuner.HyperParameters()
    hp.Float("g_lr", 1e-4, 3e-3, sampling="log", default=1e-3)
    return hp


def _ring_gan() -> GAN:
    return GAN(*architectures.small_mlp(data_shape=(2,), latent_dim=8), seed=0)


def _rlhf(directory, **kwargs) -> RLHF:
    settings = dict(search_space=_space(), max_trials=2, epochs_per_trial=1, batch_size=1024,
                    data="ring8", directory=directory, seed=0, verbose=0)
    return RLHF(**{**settings, **kwargs})


@pytest.fixture(scope="module")
def earlier_run(tmp_path_factory):
    """A finished one-trial search: the results a mistake must never touch."""
    directory = tmp_path_factory.mktemp("earlier")
    _rlhf(directory, max_trials=1).finetune(_ring_gan())
    return directory


def _refused(folder, error, fragments, call):
    """Runs `call`, expecting `error` whose message holds every fragment; `folder` unchanged."""
    before = hc.snapshot(folder)
    assert before, "the earlier run must hold files"
    with pytest.raises(error) as caught:
        call()
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in: {message}"
    assert hc.snapshot(folder) == before  # nothing written, moved or deleted
    return message


def _finetune(directory, make_gan=_ring_gan, **kwargs):
    return lambda: _rlhf(directory, **kwargs).finetune(make_gan())


# ------------------------------------------------------------------------------ the model


def _dense(*units, input_dim=None, last=None):
    layers = [keras.Input((input_dim,))] if input_dim else []
    layers += [keras.layers.Dense(u, activation="relu") for u in units[:-1]]
    layers.append(keras.layers.Dense(units[-1], activation=last))
    return keras.Sequential(layers)


@pytest.mark.parametrize(
    ("gan", "error", "fragments"),
    [
        pytest.param(lambda: GAN(_dense(16, 2, input_dim=8), _dense(16, 1, input_dim=3)),
                     ValueError, ["Generator output shape (None, 2)",
                                  "discriminator input shape (None, 3)",
                                  "add a Reshape or Flatten"], id="g-d-shape-mismatch"),
        pytest.param(lambda: keras.Sequential([_dense(16, 2), _dense(16, 4)]),
                     ValueError, ["must output one unit", "(None, 4)", "End it with Dense(1)"],
                     id="discriminator-not-one-unit"),
        pytest.param(lambda: keras.Sequential([keras.Input((8,)), keras.layers.Dense(2),
                                               keras.layers.Dense(1)]),
                     ValueError, ["holds [Dense, Dense]",
                                  "keras.Sequential([generator, discriminator])"],
                     id="sequential-of-layers"),
        pytest.param(lambda: keras.Sequential([_dense(2), _dense(1), _dense(1)]),
                     ValueError, ["exactly two models", "[Sequential, Sequential, Sequential]"],
                     id="sequential-of-three-models"),
        pytest.param(lambda: {"generator": 1}, TypeError,
                     ["got dict", "keras.Sequential([generator, discriminator])"],
                     id="not-a-keras-model"),
    ],
)
def test_unusable_models(earlier_run, gan, error, fragments):
    _refused(earlier_run, error, fragments, _finetune(earlier_run, gan))


def test_data_the_generator_cannot_produce(earlier_run):
    def images_gan() -> GAN:
        return GAN(*architectures.seed_mlp(), seed=0)  # 784-pixel images, not 2-D points

    _refused(earlier_run, ValueError, ["(2,)", "784"], _finetune(earlier_run, images_gan))


# ------------------------------------------------------------------------------ the data


def test_unknown_data_source(earlier_run):
    _refused(earlier_run, DataError, ["'no-such-data'", "'digits'", "'ring8'"],
             _finetune(earlier_run, data="no-such-data"))


def test_tfds_data_unavailable_offline_fails_fast(earlier_run, monkeypatch):
    import tensorflow_datasets as tfds

    if tfds.builder("fashion_mnist").is_prepared():
        pytest.skip("TFDS fashion_mnist is prepared on this machine")
    monkeypatch.setenv("RLHF_KERAS_OFFLINE", "1")
    _refused(earlier_run, DataError,
             ["'fashion_mnist' is not prepared", "no internet", "'mnist'", "'digits'"],
             _finetune(earlier_run, data="fashion_mnist"))


def test_empty_data(earlier_run, tmp_path):
    path = tmp_path / "empty.npz"
    np.savez(path, x=np.zeros((0, 2), np.float32))
    _refused(earlier_run, DataError, ["empty.npz", "is empty", "store at least one example"],
             _finetune(earlier_run, data=str(path)))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_data(earlier_run, tmp_path, bad):
    path = tmp_path / "points.npz"
    x = np.random.default_rng(0).normal(size=(2048, 2)).astype(np.float32)
    x[7, 1] = bad
    np.savez(path, x=x)
    _refused(earlier_run, DataError, ["points.npz", "1 non-finite values", "clean or drop"],
             _finetune(earlier_run, data=str(path)))


def test_data_load_refuses_a_shape_the_generator_cannot_produce():
    with pytest.raises(DataError) as caught:
        data.load("ring8", batch_size=64, seed=0, shape=(784,))
    assert "(2,)" in str(caught.value) and "784" in str(caught.value)


# ------------------------------------------------------------------------------ the search


def test_unsupported_hyperparameter_and_empty_space(earlier_run):
    space = default_search_space()
    space.Int("dropout", 0, 3)
    _refused(earlier_run, ValueError, ["'dropout'", "Supported: g_lr"],
             lambda: _rlhf(earlier_run, search_space=space))
    _refused(earlier_run, ValueError, ["search space is empty", "Define at least one of g_lr"],
             lambda: _rlhf(earlier_run, search_space=keras_tuner.HyperParameters()))


@pytest.mark.parametrize("max_trials", [0, -3])
def test_max_trials_must_be_positive(earlier_run, max_trials):
    _refused(earlier_run, ValueError, ["max_trials must be a positive integer",
                                       f"got {max_trials}"],
             lambda: _rlhf(earlier_run, max_trials=max_trials))


# ------------------------------------------------------------------------------ the folder


def test_a_directory_that_cannot_be_written(earlier_run, tmp_path):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder")
    for directory in (a_file / "runs", "/proc/rlhf_keras_runs"):
        _refused(earlier_run, ValueError, ["Cannot write the run directory",
                                           "Pass directory= (CLI: --dir) a folder you can write"],
                 _finetune(directory))
    assert a_file.read_text() == "not a folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # no training output


def _copy_of(earlier_run, tmp_path):
    shutil.copytree(earlier_run, tmp_path / "copy", copy_function=shutil.copy2)
    return tmp_path / "copy", tmp_path / "copy" / "rlhf"


def test_a_folder_holding_another_search(earlier_run, tmp_path):
    directory, project = _copy_of(earlier_run, tmp_path)
    (project / "search.json").unlink()  # a keras-tuner project this search did not create
    _refused(directory, ValueError, ["did not create", "oracle.json",
                                     "another project_name or directory", "overwrite=True"],
             _finetune(directory))
    (project / "search.json").write_text((earlier_run / "rlhf" / "search.json").read_text())
    state = json.loads((project / "oracle.json").read_text())
    del state["reinforce"]  # an oracle.json from another keras-tuner oracle
    (project / "oracle.json").write_text(json.dumps(state))
    _refused(directory, ValueError, ["oracle.json was not written by the REINFORCE oracle",
                                     "overwrite=True"], _finetune(directory))
    # A different search space in the same folder: refused, unless overwrite=True.
    other = _space()
    other.Float("d_lr", 1e-4, 3e-3, sampling="log")
    _refused(directory, ValueError, ["holds a different search", "search_space",
                                     "overwrite=True"],
             _finetune(directory, search_space=other))


@pytest.mark.parametrize("name", ["oracle.json", "trial_0/trial.json", "results.json"])
def test_a_truncated_state_file_is_named_and_nothing_is_deleted(earlier_run, tmp_path, name):
    directory, project = _copy_of(earlier_run, tmp_path)
    text = (project / name).read_text()
    (project / name).write_text(text[: len(text) // 2])  # as a write cut short would leave it
    message = _refused(directory, ValueError, [str(project / name), "is corrupt",
                                               "Nothing was changed", "Restore the file"],
                       _finetune(directory))
    assert "overwrite=True" in message


# ------------------------------------------------------------------------------ model files


def test_a_keras_file_that_is_not_a_gan(earlier_run, tmp_path):
    plain = tmp_path / "plain.keras"
    _dense(4, 1, input_dim=3).save(plain)
    _refused(earlier_run, ValueError, ["holds a Sequential, not a GAN", "exactly two models"],
             lambda: load_gan(plain))
    garbage = tmp_path / "garbage.keras"
    garbage.write_bytes(b"these bytes are not a zip archive")
    _refused(earlier_run, ValueError, ["garbage.keras could not be loaded",
                                       "Pass a model.keras or best_model.keras"],
             lambda: load_gan(garbage))
    truncated = tmp_path / "truncated.keras"
    best = (earlier_run / "rlhf" / "best_model.keras").read_bytes()
    truncated.write_bytes(best[: len(best) // 2])
    _refused(earlier_run, ValueError, ["truncated.keras could not be loaded", "truncated"],
             lambda: load_gan(truncated))


def test_a_model_with_code_needs_unsafe(tmp_path, capsys):
    """Safe mode by default: a Lambda layer is refused unless the user opts in."""
    generator, discriminator = architectures.small_mlp(data_shape=(2,), latent_dim=4)
    with_code = keras.Sequential([keras.Input((4,)), keras.layers.Lambda(lambda z: z * 0.5),
                                  *generator.layers])
    path = tmp_path / "lambda.keras"
    GAN(with_code, discriminator, latent_dim=4, seed=0).save(path)
    with pytest.raises(ValueError, match=r"lambda\.keras contains code.*safe_mode=False.*--unsafe"):
        load_gan(path)
    assert load_gan(path, safe_mode=False).generate(3, seed=0).shape == (3, 2)

    out = tmp_path / "s.npz"
    assert cli_main(["sample", str(path), "--n", "5", "--out", str(out)]) == 2
    assert "--unsafe" in capsys.readouterr().err and not out.exists()
    assert cli_main(["sample", str(path), "--n", "5", "--out", str(out), "--unsafe"]) == 0
    assert np.load(out)["x"].shape == (5, 2)


def test_the_cli_refuses_before_training_and_leaves_the_run_alone(earlier_run, tmp_path,
                                                                  capsys):
    before = hc.snapshot(earlier_run)
    a_file = tmp_path / "notes.txt"
    a_file.write_text("")
    assert cli_main(hc.finetune_args(a_file / "runs", 2)) == 2
    err = capsys.readouterr().err
    assert "Cannot write the run directory" in err and "--dir" in err
    # Another search in the earlier run's folder (the CLI's default space): exit 2, untouched.
    assert cli_main(hc.finetune_args(earlier_run, 2)) == 2
    err = capsys.readouterr().err
    assert "holds a different search" in err and "--overwrite" in err
    with pytest.raises(SystemExit, match="--trials must be > 0"):
        cli_main(hc.finetune_args(earlier_run, 0))
    assert hc.snapshot(earlier_run) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_a_chief_address_that_cannot_be_bound(monkeypatch):
    """keras-tuner's own chief would serve nothing and wait forever; ours fails at once."""
    from rlhf_keras.compat import serve_oracle
    from rlhf_keras.oracle import ReinforceOracle

    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "192.0.2.1")  # TEST-NET-1: not this machine's
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", str(hc.free_port()))
    oracle = ReinforceOracle(objective=keras_tuner.Objective("score", "max"), max_trials=1)
    with pytest.raises(RuntimeError) as caught:
        serve_oracle(oracle)
    message = str(caught.value)
    assert "cannot listen on 192.0.2.1:" in message and "Pick a free port" in message
