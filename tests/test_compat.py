"""The private TensorFlow and keras-tuner APIs `rlhf_keras.compat` (and the tuner) rely on.

Each assertion names what an upgrade removed, so it fails loudly here instead of quietly
somewhere in a search (a leak coming back, learning rates silently reset, a chief that
cannot serve).
"""

from __future__ import annotations

import inspect

import keras
import keras_tuner
import numpy as np

from rlhf_keras import compat


def test_tensorflows_gradient_registry_is_a_dict_of_names():
    from tensorflow.python.framework import ops as tf_ops

    registry = tf_ops._gradient_registry._registry
    assert isinstance(registry, dict), "TF gradient registry moved: see released_gradient_functions"


def test_keras_tuners_private_hooks_exist_with_the_arguments_we_pass():
    hooks = {
        keras_tuner.Tuner: ["_build_hypermodel", "_get_checkpoint_fname", "_get_tensorboard_dir",
                            "_try_build", "_is_worker"],
        keras_tuner.Oracle: ["_save_trial", "_get_oracle_fname", "_get_trial_dir",
                             "_set_project_dir"],
    }
    for cls, names in hooks.items():
        for name in names:
            assert callable(getattr(cls, name, None)), f"keras-tuner removed {cls.__name__}.{name}"
    params = inspect.signature(keras_tuner.Tuner._get_tensorboard_dir).parameters
    assert list(params)[1:] == ["logdir", "trial_id", "execution"]


def test_keras_tuners_distributed_service_pieces_exist():
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_chief, utils

    assert callable(oracle_chief.OracleServicer) and callable(oracle_chief.exit_chief)
    assert callable(protos.get_service_grpc().add_OracleServicer_to_server)
    assert callable(utils.is_chief_oracle)


def test_a_reload_keeps_the_learning_rate_the_model_was_compiled_with(tmp_path):
    """Keras restores optimizer variables (the learning rate among them) with the weights;
    if that ever stops, this still passes, but if the restore stops being undone it fails."""
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    model.fit(np.ones((8, 3)), np.ones((8, 1)), epochs=1, verbose=0)
    path = str(tmp_path / "parent.weights.h5")
    model.save_weights(path)
    child = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    child.compile(optimizer=keras.optimizers.Adam(5e-4), loss="mse")
    compat.load_weights_keeping_learning_rates(child, path)
    assert float(child.optimizer.learning_rate) == np.float32(5e-4)
    assert int(child.optimizer.iterations) == 1  # the optimizer state did come along


def test_keras_tensorboard_internals_that_fold_train_into_the_trial_run(tmp_path):
    """compat.TensorBoard overrides Keras's private writer folder, learning-rate and epoch
    logging, and keras-tuner finds it by its class name."""
    for name in ("_collect_learning_rate", "_log_epoch_metrics", "_write_keras_model_summary"):
        assert hasattr(keras.callbacks.TensorBoard, name), f"Keras TensorBoard lost {name}"
    assert compat.TensorBoard.__name__ == "TensorBoard"  # keras-tuner matches on it
    source = inspect.getsource(keras_tuner.Tuner._configure_tensorboard_dir)
    assert '__class__.__name__ == "TensorBoard"' in source, "keras-tuner finds it differently"
    callback = compat.TensorBoard(str(tmp_path))
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    callback.set_model(model)
    assert callback._train_dir == str(tmp_path) == callback.train_log_dir
    logs = callback._collect_learning_rate({})
    assert set(logs) == {"log10_lr"} and abs(logs["log10_lr"] + 3.0) < 1e-6
