"""The private TensorFlow and keras-tuner APIs the project needs, kept in one place.

Each function here reaches into internals that have no public equivalent;
`tests/test_compat.py` fails loudly when an upgrade of TensorFlow or keras-tuner breaks one.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras
import keras_tuner

from rlhf_keras.run_dir import atomic_write_json


@contextlib.contextmanager
def released_gradient_functions() -> Iterator[None]:
    """Forgets the gradient functions registered while the block ran, once it is over.

    Each trace of a Keras train step goes through `tf.custom_gradient`, which in graph mode
    registers its gradient function under a fresh name ("CustomGradient-<n>") in TensorFlow's
    process-wide gradient registry and never removes it. That function's closure holds the
    traced train-step graph, so without this every finished trial would keep its graph alive
    for the life of the process (a few MiB a trial: the memory growth of long searches).
    Safe once the block's models are done training: a registered gradient is only looked up
    while a gradient is being traced. Does nothing if TensorFlow's internals differ.
    """
    try:
        from tensorflow.python.framework import ops as tf_ops

        registry = tf_ops._gradient_registry._registry  # private; there is no public way
        before = set(registry)
    except (ImportError, AttributeError, TypeError):
        registry, before = None, set()
    try:
        yield
    finally:
        if isinstance(registry, dict):
            for name in set(registry) - before:
                if name.startswith("CustomGradient-"):
                    registry.pop(name, None)


def serve_oracle(oracle: keras_tuner.Oracle, poll_s: float = 0.5) -> None:
    """Serves `oracle` to distributed workers until every trial is done (the chief's job).

    keras-tuner's gRPC service, listening on exactly KERASTUNER_ORACLE_IP:PORT, with no
    authentication or encryption: keep it on a private network. Unlike keras-tuner's own
    loop, it fails at once if the address can't be bound, and while it waits for the last
    trials it says which workers hold them: a worker that died keeps its trial until a worker
    with the same KERASTUNER_TUNER_ID is started again, which re-runs it.

    Args:
        oracle: The chief's oracle.
        poll_s: Seconds between checks for the end of the search.

    Raises:
        RuntimeError: If the address can't be bound.
    """
    from concurrent import futures

    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_chief

    address = f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}"
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    servicer = oracle_chief.OracleServicer(oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError:
        bound = 0
    if not bound:
        raise RuntimeError(
            f"The chief cannot listen on {address} (KERASTUNER_ORACLE_IP:"
            "KERASTUNER_ORACLE_PORT): the port is in use or the address is not one of this "
            "machine's. Pick a free port and an address of this machine."
        )
    server.start()
    last_note = time.monotonic()
    try:
        while True:
            time.sleep(poll_s)
            if not servicer.stop_triggered:
                continue
            if oracle_chief.exit_chief(oracle):
                break
            if time.monotonic() - last_note > 60:
                last_note = time.monotonic()
                held = ", ".join(f"{tuner} (trial {trial.trial_id})"
                                 for tuner, trial in dict(oracle.ongoing_trials).items())
                print(f"Waiting for the last trials: {held or 'workers to sign off'}. If a "
                      "worker died, start it again with the same KERASTUNER_TUNER_ID: it "
                      "re-runs its trial.", flush=True)
    finally:
        server.stop(grace=1)



def make_saves_atomic(oracle: keras_tuner.Oracle) -> None:
    """Makes `oracle` write oracle.json and each trial.json atomically.

    keras-tuner writes them in place (`utils.save_json`), so a process killed mid-write leaves
    a truncated file that the next run cannot reload. An oracle class that overrides `save` or
    `_save_trial` itself is left alone, and so are non-local directories (gs://...).
    """
    cls = type(oracle)
    if getattr(oracle, "_atomic_saves", False):
        return

    def save() -> None:
        fname = oracle._get_oracle_fname()
        if "://" in fname:
            cls.save(oracle)
            return
        atomic_write_json(Path(fname), oracle.get_state())

    def save_trial(trial: keras_tuner.engine.trial.Trial) -> None:
        directory = oracle._get_trial_dir(trial.trial_id)
        if "://" in directory:
            cls._save_trial(oracle, trial)
            return
        atomic_write_json(Path(directory) / "trial.json", trial.get_state())

    if cls.save is keras_tuner.Oracle.save:
        oracle.save = save
    if cls._save_trial is keras_tuner.Oracle._save_trial:
        oracle._save_trial = save_trial
    oracle._atomic_saves = True



def model_optimizers(model: Any) -> dict[str, keras.optimizers.Optimizer]:
    """The optimizers a model holds as attributes: `optimizer`, or a GAN's `g_/d_optimizer`."""
    return {name: value for name, value in vars(model).items()
            if isinstance(value, keras.optimizers.Optimizer)}


def load_weights_keeping_learning_rates(model: Any, path: str) -> None:
    """`model.load_weights(path)`, then the learning rates the model was compiled with.

    Keras 3 restores optimizer variables with the weights, the learning rate among them, so a
    reloaded model would silently train at its parent's rate. Optimizers are found as the
    model's attributes (`optimizer`, or a GAN's `g_optimizer` / `d_optimizer`).
    """
    optimizers = model_optimizers(model)
    main = getattr(model, "optimizer", None)
    if isinstance(main, keras.optimizers.Optimizer) and not main.built:
        # A compiled model builds its optimizer at the first step; built now, so that the
        # parent's optimizer state (moments, step count) has somewhere to load into.
        main.build(model.trainable_variables)
    rates = {}
    for name, optimizer in optimizers.items():
        rate = optimizer.learning_rate
        if not callable(rate):  # a schedule is not a variable and is not restored
            rates[name] = float(keras.ops.convert_to_numpy(rate))
    model.load_weights(path)
    for name, rate in rates.items():
        optimizers[name].learning_rate = rate


def learning_rate_tag(optimizer_name: str) -> str:
    """`"g_optimizer"` -> `"log10_g_lr"`, `"optimizer"` -> `"log10_lr"`: the search's names."""
    prefix = optimizer_name.removesuffix("optimizer").rstrip("_")
    return f"log10_{prefix}_lr" if prefix else "log10_lr"


class TensorBoard(keras.callbacks.TensorBoard):
    """Keras's TensorBoard callback, writing one TensorBoard run per trial.

    keras-tuner recognises the callback by its class name ("TensorBoard"), points it at
    `logs/<trial>/execution0` and writes the trial's HParams session there; Keras 3 would put
    the curves one folder down, in `train/`, which TensorBoard shows as a second run. Here
    they share the trial's folder. Besides:

    * each optimizer's learning rate is written as its log10 (`log10_g_lr`, `log10_d_lr`,
      `log10_lr`), the scale the search samples it on; Keras writes raw rates;
    * metrics the model names in `repeated_metrics` (a GAN's `r_d`, which is `-d_loss` under
      the cross-entropy losses) are not written a second time under another name.
    """

    def set_model(self, model: keras.Model) -> None:
        write_graph, self.write_graph = self.write_graph, False  # it would open train/ now
        super().set_model(model)
        self.write_graph = write_graph
        self._train_dir = self._log_write_dir  # private: Keras 3 appends "train"
        if write_graph:
            self._write_keras_model_summary()  # private, as Keras's set_model does it
            self._should_write_train_graph = True

    @property
    def train_log_dir(self) -> str:
        """The folder the curves go to (for callbacks that add pictures to the same run)."""
        return getattr(self, "_train_dir", self.log_dir)

    def _collect_learning_rate(self, logs: dict[str, Any]) -> dict[str, Any]:  # private
        for name, optimizer in model_optimizers(self.model).items():
            rate = optimizer.learning_rate
            if not callable(rate):
                value = float(keras.ops.convert_to_numpy(rate))
                logs[learning_rate_tag(name)] = math.log10(value) if value > 0 else math.nan
        return logs

    def _log_epoch_metrics(self, epoch: int, logs: dict[str, Any]) -> None:  # private
        repeated = set(getattr(self.model, "repeated_metrics", ()))
        super()._log_epoch_metrics(epoch, {k: v for k, v in (logs or {}).items()
                                           if k not in repeated})
