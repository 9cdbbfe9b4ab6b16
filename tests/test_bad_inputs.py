"""The bad-input catalogue: one clear error each, before any training, nothing destroyed.

Every case goes through the public API (`RLHF(...).finetune`, `GAN`, `data.load`, `load_gan`,
the CLI) next to a finished earlier run, and checks the error type, that the message names
the problem and the fix, and that the earlier run's files are unchanged (names, sizes and
modification times) and no training started.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys

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
    settings = dict(search_space=_space(), strategy="oneshot", max_trials=2,
                    epochs_per_trial=1, batch_size=1024, data="ring8", directory=directory,
                    seed=0, verbose=0)
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
    with pytest.raises(SystemExit, match="--evaluations-per-segment must be > 0"):
        cli_main(hc.finetune_args(earlier_run, 1) + ["--evaluations-per-segment", "0"])
    for final in ("5", "0"):
        message = rf"--final-population: .*int in \[1, population_size=4\], got {final}"
        with pytest.raises(SystemExit, match=message):
            cli_main(hc.finetune_args(earlier_run, 1) + ["--population", "4", "--overwrite",
                                                         "--final-population", final])
    with pytest.raises(SystemExit, match=r"--g-ema: ema_momentum must be in \[0, 1\).*got 1.5"):
        cli_main(hc.finetune_args(earlier_run, 1) + ["--overwrite", "--g-ema", "1.5"])
    with pytest.raises(SystemExit, match=r"--init-std: init_std must be in \[0.02, 0.5\].*got 0.9"):
        cli_main(hc.finetune_args(earlier_run, 1) + ["--overwrite", "--init-std", "0.9"])
    with pytest.raises(SystemExit, match=r"--birth-population: .*\[population_size=4, 28\].*got 3"):
        cli_main(hc.finetune_args(earlier_run, 1) + ["--population", "4", "--overwrite",
                                                     "--birth-population", "3"])
    with pytest.raises(SystemExit, match=r"--schedule-step: step must be a number in \(0, 0.5\]"):
        cli_main(hc.finetune_args(earlier_run, 1) + ["--overwrite", "--schedule-step", "0.9"])
    with pytest.raises(SystemExit, match=r"--policy-lr: learning_rate must be a finite number > 0"):
        cli_main(hc.finetune_args(earlier_run, 1) + ["--overwrite", "--policy-lr", "0"])
    with pytest.raises(SystemExit, match=r"--plateau-decay: plateau_decay must be a number in"):
        cli_main(hc.finetune_args(earlier_run, 1) + ["--overwrite", "--plateau-decay", "1"])
    with pytest.raises(SystemExit, match="--plateau-decay: .*pass elitist=True"):
        cli_main(hc.finetune_args(earlier_run, 1) + ["--overwrite", "--no-elitist",
                                                     "--plateau-decay", "0.5"])
    with pytest.raises(SystemExit, match=r"--balance: balance must be None \(off\) or a number"):
        cli_main(hc.finetune_args(earlier_run, 1) + ["--overwrite", "--balance", "-1"])
    with pytest.raises(SystemExit, match=r"--balance: balance compares g_lr with d_lr, and this "
                                         r"search space searches d_lr_ratio"):
        cli_main(hc.finetune_args(earlier_run, 1) + ["--overwrite", "--strategy", "trajectory",
                                                     "--balance", "2", "--d-lr-ratio"])
    with pytest.raises(SystemExit, match=r"--birth-only: birth_only names \['beta_2'\], not in "
                                         r"the search space \(g_lr, d_lr, .*beta_1"):
        cli_main(hc.finetune_args(earlier_run, 1) + ["--overwrite", "--strategy", "trajectory",
                                                     "--birth-only", "g_width", "beta_2"])
    for named, flag in (("--schedule-step", ["--schedule-step", "0.05"]),
                        ("--elitist", ["--no-elitist"]), ("--baseline", ["--baseline", "running"]),
                        ("--reward", ["--reward", "log_ratio"]),
                        ("--birth-only", ["--birth-only", "beta_1"]),
                        ("--balance", ["--balance", "0"]),
                        ("--evaluations-per-segment", ["--evaluations-per-segment", "2"]),
                        ("--birth-at-defaults", ["--no-birth-at-defaults"])):
        with pytest.raises(SystemExit, match=f"{named}: only the trajectory strategy uses it"):
            cli_main(hc.finetune_args(earlier_run, 1) + ["--overwrite", "--strategy", "oneshot",
                                                         *flag])
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


# ------------------------------------------------------------------------------ nothing lost
# Issue 11, point 5: every case of its reliability list.


def _sibling_runs(earlier_run, tmp_path):
    """tmp/outer/runs/{rlhf, other}: two runs side by side, and a file outside --dir."""
    runs = tmp_path / "outer" / "runs"
    shutil.copytree(earlier_run, runs, copy_function=shutil.copy2)
    shutil.copytree(runs / "rlhf", runs / "other", copy_function=shutil.copy2)
    (tmp_path / "outer" / "notes.txt").write_text("mine")
    return runs


@pytest.mark.parametrize("name", ["..", ".", "../../x", "a/b", "", " ", "a\\b", "/abs"])
def test_project_name_must_be_a_single_folder_name(name):
    from rlhf_keras.run_dir import check_project_name

    with pytest.raises(ValueError) as caught:
        check_project_name(name)
    message = str(caught.value)
    assert repr(name) in message and "single folder name" in message and "--dir" in message


def test_project_names_that_are_fine():
    from rlhf_keras.run_dir import check_project_name

    for name in ("rlhf", "mnist_run2", "a.b", "run-3", ".hidden"):
        assert check_project_name(name) == name


@pytest.mark.parametrize("name", ["..", ".", "../../x"])
def test_the_cli_refuses_a_project_outside_dir_and_deletes_nothing(earlier_run, tmp_path,
                                                                   capsys, name):
    """`--project ..` / `.` with --overwrite deleted the runs beside it; `../../x` wrote outside."""
    runs = _sibling_runs(earlier_run, tmp_path)
    before = hc.snapshot(tmp_path)
    assert cli_main(hc.finetune_args(runs, 1) + ["--project", name, "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert f"got {name!r}" in err and "single folder name" in err
    assert hc.snapshot(tmp_path) == before


def test_the_api_refuses_a_project_outside_directory(earlier_run, tmp_path):
    runs = _sibling_runs(earlier_run, tmp_path)
    _refused(tmp_path, ValueError, ["'../../x'", "single folder name"],
             _finetune(runs, project_name="../../x"))
    assert not (tmp_path / "x").exists()


def test_overwrite_deletes_only_a_folder_this_library_created(earlier_run, tmp_path, capsys):
    """A folder without our search.json is never deleted, whatever --overwrite says."""
    mine = tmp_path / "runs" / "photos"
    mine.mkdir(parents=True)
    (mine / "holiday.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (mine / "oracle.json").write_text("{}")  # even one that looks like a keras-tuner project
    before = hc.snapshot(tmp_path)
    args = hc.finetune_args(tmp_path / "runs", 1) + ["--project", "photos", "--overwrite"]
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert f"would delete {mine}" in err and "not a run this library created" in err
    assert "nothing was deleted" in err
    assert hc.snapshot(tmp_path) == before
    _refused(tmp_path, ValueError, ["not a run this library created", "search.json"],
             _finetune(tmp_path / "runs", project_name="photos", overwrite=True))


def test_overwrite_still_replaces_a_run_of_ours(earlier_run, tmp_path):
    from rlhf_keras.run_dir import prepare_run_directory

    _, project = _copy_of(earlier_run, tmp_path)
    prepare_run_directory(project, {"data": "something else"}, overwrite=True)
    assert sorted(p.name for p in project.iterdir()) == ["search.json"]
    assert json.loads((project / "search.json").read_text()) == {"data": "something else"}


def test_overwrite_with_an_invalid_argument_deletes_nothing(earlier_run, capsys):
    """`--overwrite --seed -5` deleted the earlier run, then failed on the seed."""
    before = hc.snapshot(earlier_run)
    args = hc.finetune_args(earlier_run, 1, seed=-5) + ["--overwrite", "--data", "digits"]
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert "--seed must be between 0 and" in err and "got -5" in err
    assert hc.snapshot(earlier_run) == before


def test_the_api_validates_every_argument_before_deleting(earlier_run):
    _refused(earlier_run, ValueError, ["seed", "-5"],
             _finetune(earlier_run, data="digits", seed=-5, overwrite=True))


def test_search_json_is_not_written_before_the_arguments_are_validated(tmp_path):
    with pytest.raises(ValueError, match="replay"):
        _rlhf(tmp_path / "runs", replay=-1).finetune(_ring_gan())
    assert not (tmp_path / "runs").exists()


# ------------------------------------------------------------------------------ the lock

_HOLD = """
import sys, time
from pathlib import Path
from rlhf_keras.run_dir import run_lock
with run_lock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(120)
"""


def test_one_process_per_run_directory_and_a_dead_holder_is_taken_over(tmp_path):
    from rlhf_keras.run_dir import lock_path, run_lock

    project = tmp_path / "runs" / "rlhf"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(project)], env=hc.env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held", holder.stderr.read()
        with pytest.raises(ValueError) as caught, run_lock(project):
            pass
        message = str(caught.value)
        assert f"{project} is in use by process {holder.pid} on {socket.gethostname()}" in message
        assert "-c" in message and "another project_name or directory" in message
        holder.send_signal(signal.SIGKILL)  # its lock file stays behind, naming a dead pid
        holder.wait(30)
        assert json.loads(lock_path(project).read_text())["pid"] == holder.pid
        with run_lock(project) as path:  # the stale lock is taken over
            assert json.loads(path.read_text())["pid"] == os.getpid()
        assert not lock_path(project).exists()  # released: the file is gone
    finally:
        hc.stop_all([holder])


def test_a_lock_file_left_by_a_dead_process_is_taken_over(tmp_path):
    from rlhf_keras.run_dir import lock_path, run_lock

    project = tmp_path / "rlhf"
    lock_path(project).parent.mkdir(parents=True, exist_ok=True)
    lock_path(project).write_text(json.dumps({"pid": 2**22 + 7, "host": socket.gethostname()}))
    with run_lock(project):
        pass
    # Distributed workers each hold their own lock on the same run.
    with run_lock(project, owner="tuner0"), run_lock(project, owner="tuner1"):
        pass


def test_a_second_finetune_on_the_same_run_is_refused(tmp_path, capsys):
    marker = tmp_path / "marker"
    args = hc.finetune_args(tmp_path / "runs", 1) + ["--verbose", "0"]
    first = hc.start(args, **hc.paused("trial@0", marker))
    try:
        hc.wait_for(marker.exists, 240, "the first search to start its trial", (first,))
        assert cli_main(args) == 2  # the second, in this process
        err = capsys.readouterr().err
        assert f"is in use by process {first.pid}" in err
        assert "Traceback" not in err
    finally:
        hc.stop_all([first])


# ------------------------------------------------------------------------------ hand edits


def _edit_json(path, change) -> None:
    state = json.loads(path.read_text())
    path.write_text(json.dumps(change(state)))


def _set(keys, value):
    def change(state):
        node = state
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value
        return state
    return change


def _without(key):
    def change(state):
        del state[key]
        return state
    return change


@pytest.mark.parametrize(
    ("name", "change", "problem"),
    [
        pytest.param("results.json", lambda rows: [{"trial": "0"}], "key 'trial_id' is missing",
                     id="results-row-without-trial_id"),
        pytest.param("results.json", lambda rows: {"rows": rows}, "expected a list",
                     id="results-not-a-list"),
        pytest.param("results.json", lambda rows: ["0", "1"], "expected an object at [0]",
                     id="results-rows-are-strings"),
        pytest.param("trial_0/trial.json", _without("status"), "key 'status' is missing",
                     id="trial-without-status"),
        pytest.param("trial_0/trial.json", _set(["hyperparameters"], "g_lr=1e-3"),
                     "expected an object at hyperparameters", id="trial-hyperparameters-text"),
        pytest.param("trial_0/trial.json", _set(["trial_id"], "5"),
                     "its trial_id is '5' but it lives in trial_0/", id="trial-id-moved"),
        pytest.param("oracle.json", _set(["end_order"], "0"), "expected a list at end_order",
                     id="oracle-end-order-text"),
        pytest.param("oracle.json", _set(["reinforce", "policy"], []),
                     "expected an object at reinforce.policy", id="oracle-policy-list"),
        pytest.param("oracle.json", _set(["ongoing_trials"], {"tuner0": "7"}),
                     "ongoing_trials names trial '7', but trial_7/trial.json does not exist",
                     id="oracle-ongoing-trial-missing"),
        pytest.param("search.json", lambda s: [s], "expected an object",
                     id="search-not-an-object"),
    ],
)
def test_a_hand_edited_state_file_is_named_with_the_fix(earlier_run, tmp_path, name, change,
                                                       problem):
    """Valid JSON of the wrong structure gave a bare KeyError or 'string indices must be
    integers', naming no file."""
    directory, project = _copy_of(earlier_run, tmp_path)
    _edit_json(project / name, change)
    message = _refused(directory, ValueError, [str(project / name), "is corrupt", problem,
                                               "Nothing was changed", "Restore the file"],
                       _finetune(directory))
    assert "overwrite=True" in message


def test_a_hand_edited_results_table_is_named_when_read(earlier_run, tmp_path, capsys):
    directory, project = _copy_of(earlier_run, tmp_path)
    _edit_json(project / "results.json", lambda rows: [{**rows[0], "values": "lr=1"}])
    with pytest.raises(ValueError, match=r"results\.json is not a results table.*values"):
        _rlhf(directory).results  # noqa: B018 - the property reads the file
    assert cli_main(["report", str(project)]) == 2
    err = capsys.readouterr().err
    assert str(project / "results.json") in err and "Restore the file" in err
    assert not (project / "report.md").exists()


# ------------------------------------------------------------------------------ the CLI's OSErrors


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("rlhf-keras: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_sample_into_a_path_under_a_file_is_one_line(earlier_run, tmp_path):
    """`sample --out afile/x.npz` ended in a FileExistsError traceback."""
    a_file = tmp_path / "afile"
    a_file.write_text("")
    result = subprocess.run(
        hc.CLI + ["sample", str(earlier_run / "rlhf" / "best_model.keras"), "--out",
                  str(a_file / "x.npz")],
        env=hc.env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    line = _one_error_line(result.stderr)
    assert str(a_file) in line and "folder is not a file" in line
    assert a_file.read_text() == ""


def test_train_and_report_that_cannot_write_are_one_line(earlier_run, tmp_path, capsys):
    a_file = tmp_path / "afile"
    a_file.write_text("")
    args = ["train", "--data", "ring8", "--arch", "small", "--epochs", "1", "--batch-size",
            "1024", "--latent-dim", "8", "--out", str(a_file / "run"), "--verbose", "0"]
    assert cli_main(args) == 1
    assert str(a_file) in _one_error_line(capsys.readouterr().err)
    _, project = _copy_of(earlier_run, tmp_path)
    (project / "report.md").mkdir()  # where the report goes, a folder: it can't be replaced
    assert cli_main(["report", str(project)]) == 1
    assert "report.md" in _one_error_line(capsys.readouterr().err)


# ------------------------------------------------------------------------------ sampling


def _image_gan_file(tmp_path) -> tuple[GAN, str]:
    gan = GAN(*architectures.small_mlp(data_shape=(784,), latent_dim=8), seed=0)
    path = tmp_path / "images.keras"
    gan.save(path)
    return load_gan(path), str(path)


def test_sample_streams_in_bounded_memory_and_writes_one_picture(tmp_path, capsys):
    """`sample --n 20000 --out DIR` wrote 313 PNG files; all samples were held at once."""
    import tracemalloc

    gan, model = _image_gan_file(tmp_path)
    out = tmp_path / "samples"
    n = 30_000  # 94 MB of float32 samples
    tracemalloc.start()
    try:
        assert cli_main(["sample", model, "--n", str(n), "--out", str(out), "--seed", "3"]) == 0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    size = n * 784 * 4
    assert peak < 48 * 2**20, f"peak {peak / 2**20:.0f} MiB for a {size / 2**20:.0f} MiB file"
    assert sorted(p.name for p in out.iterdir()) == ["samples.npz", "samples.png"]
    x = np.load(out / "samples.npz")["x"]
    assert x.shape == (n, 784) and x.dtype == np.float32
    np.testing.assert_array_equal(x[:100], gan.generate(100, seed=3))  # the same samples
    assert "the first 64" in capsys.readouterr().out


def test_absurd_sizes_are_refused_before_anything_is_allocated(tmp_path, capsys):
    """`--n 100000000` tried to allocate 74.5 GiB; `--latent-dim 1e9` was a TensorFlow OOM."""
    _, model = _image_gan_file(tmp_path)
    out = tmp_path / "x.npz"
    assert cli_main(["sample", model, "--n", str(10**12), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--n 1,000,000,000,000 samples of shape (784,) take" in err
    assert "TiB as float32" in err and "free. Pass a smaller --n" in err
    assert not out.exists()
    run = tmp_path / "run"
    assert cli_main(["train", "--data", "ring8", "--latent-dim", "1000000000",
                     "--out", str(run)]) == 2
    assert "--latent-dim 1,000,000,000 is too large" in capsys.readouterr().err
    assert not run.exists()
    with pytest.raises(SystemExit, match=r"--g-ema: ema_momentum must be in \[0, 1\).*got -0.5"):
        cli_main(["train", "--data", "ring8", "--g-ema", "-0.5", "--out", str(run)])
    assert not run.exists()


# ------------------------------------------------------------------------------ typing data


def test_boolean_images_load_as_ink_on_background(tmp_path):
    """Boolean images loaded as all-black (True became 1/255 of white)."""
    x = np.zeros((4, 28, 28), bool)
    x[:, 10:18, 13:15] = True
    path = tmp_path / "binary.npz"
    np.savez(path, x=x)
    images, _, info = data.load_arrays(path)
    assert info.kind == "image" and info.shape == (28, 28, 1)
    assert set(np.unique(images).tolist()) == {-1.0, 1.0}
    assert (images[:, 10:18, 13:15] == 1.0).all()


@pytest.mark.parametrize("dtype", [np.int64, np.uint8, np.float32])
def test_rows_of_three_numbers_are_points_whatever_their_type(tmp_path, dtype):
    """An integer (N, 3) array loaded as 3-pixel 'images', silently."""
    path = tmp_path / "points.npz"
    np.savez(path, x=np.arange(30).reshape(10, 3).astype(dtype))
    x, _, info = data.load_arrays(path)
    assert info.kind == "points" and info.shape == (3,)
    assert x.tolist() == np.arange(30).reshape(10, 3).tolist()  # raw coordinates


def test_rows_of_a_square_number_of_values_are_flattened_images(tmp_path):
    path = tmp_path / "flat.npz"
    np.savez(path, x=np.random.default_rng(0).random((6, 784), np.float32))
    x, _, info = data.load_arrays(path)
    assert info.kind == "image" and info.shape == (28, 28, 1) and x.min() >= -1.0


def test_data_a_search_cannot_score_or_batch(tmp_path):
    points = tmp_path / "points.npz"
    np.savez(points, x=np.random.default_rng(0).normal(size=(500, 2)).astype(np.float32))
    with pytest.raises(DataError, match=r"points of shape \(2,\) with no known modes.*'ring8'"):
        data.check_searchable(data.load_arrays(points)[2])
    one = tmp_path / "one.npz"
    np.savez(one, x=np.zeros((1, 28, 28), np.uint8))
    with pytest.raises(DataError, match="holds 1 image.*at least 2 real images"):
        data.check_searchable(data.load_arrays(one)[2], [1])
    with pytest.raises(DataError, match=r"batch_size 2048 is larger than the 1797 examples"):
        data.check_searchable(data.load_arrays("digits")[2], [64, 2048])
    data.check_searchable(data.load_arrays("ring8")[2], [64, 1024])  # fine


@pytest.mark.parametrize("shape", [(500, 2), (500, 3)])
def test_a_search_on_points_without_modes_is_refused_before_training(earlier_run, tmp_path,
                                                                      shape):
    path = tmp_path / "points.npz"
    np.savez(path, x=np.random.default_rng(0).normal(size=shape).astype(np.float32))

    def points_gan() -> GAN:
        return GAN(*architectures.small_mlp(data_shape=shape[1:], latent_dim=8), seed=0)

    _refused(earlier_run, DataError, ["no known modes", "'ring8'"],
             _finetune(earlier_run, points_gan, data=str(path), batch_size=64))


def test_a_search_on_one_image_or_with_a_batch_size_choice_too_big_is_refused(earlier_run,
                                                                              tmp_path):
    one = tmp_path / "one.npz"
    np.savez(one, x=np.zeros((1, 28, 28), np.uint8))

    def image_gan() -> GAN:
        return GAN(*architectures.small_mlp(data_shape=(784,), latent_dim=8), seed=0)

    _refused(earlier_run, DataError, ["at least 2 real images"],
             _finetune(earlier_run, image_gan, data=str(one), batch_size=1))
    space = _space()
    space.Choice("batch_size", [64, 4096])
    _refused(earlier_run, DataError, ["batch_size 4096", "1797 examples"],
             _finetune(earlier_run, image_gan, data="digits", batch_size=64,
                       search_space=space))


# ------------------------------------------------------------------------------ SIGTERM


def test_sigterm_ends_a_search_as_ctrl_c_does(tmp_path):
    """SIGTERM (kill, a scheduler's stop) ended a search without the resume message."""
    marker = tmp_path / "marker"
    args = hc.finetune_args(tmp_path / "runs", 2) + ["--verbose", "0"]
    proc = hc.start(args, **hc.paused("trial@0", marker))
    try:
        hc.wait_for(marker.exists, 240, "trial 0 to start training", (proc,))
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        hc.stop_all([proc])
    assert proc.returncode == 143, err
    resume = next(line for line in err.splitlines() if line.startswith("To resume: "))
    assert shlex.split(resume.removeprefix("To resume: ")) == ["rlhf-keras", *args]
    assert "Interrupted. 0 of 2 trials are saved" in err
    assert "rlhf-keras: terminated" in err and "Traceback" not in err
    assert (tmp_path / "runs" / "rlhf" / "oracle.json").exists()  # the run, ready to resume
