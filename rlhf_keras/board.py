"""TensorBoard for a search: sample grids per epoch, HParams per trial, the policy per update.

The evidence room of the project. A run directory `DIR` keeps its TensorBoard logs in
`DIR/logs` (open them with `tensorboard --logdir DIR/logs`):

* `DIR/logs/trial_<id>/train`: the losses, from the Keras `TensorBoard` callback;
* `DIR/logs/trial_<id>/samples`: a grid of generated samples per epoch (`SampleGridCallback`);
* `DIR/logs/trial_<id>`: the trial's hyperparameters and final metrics for the HParams
  dashboard (`log_trial_hparams`);
* `DIR/logs`: the experiment's HParams configuration, once per search (`log_hparams_config`);
* `DIR/logs/policy`: the policy's probabilities and Gaussian means/stds after each update
  (`log_policy`, `log_policy_history`).

A tuner calls `log_search_config` when the search begins and `log_trial_end` as each trial
ends; `log_run(DIR)` writes the same from a finished run's files alone.

The functions keep one summary writer per folder for the life of the process: TensorFlow
names event files `...<pid>.<counter>.v2` and TensorBoard reads them in name order, so a fresh
writer per call would, past counter 9, be read out of order and its earlier steps dropped as a
"restart".
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import keras
import keras_tuner
import numpy as np
import tensorflow as tf
from keras_tuner.engine import hyperparameters as hp_module
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.custom_scalar import summary as custom_scalar_summary
from tensorboard.plugins.hparams import api as hp_api

from rlhf_keras.reports import _pyplot, as_images

SAMPLES_SUBDIR = "samples"
POLICY_SUBDIR = "policy"
_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-/=|]")
_WRITERS: dict[str, tuple[Any, Path]] = {}  # folder -> (writer, the event file it writes)
_WRITERS_LOCK = threading.Lock()


def summary_writer(log_dir: str | os.PathLike) -> Any:
    """The process's summary writer for a folder, made again if its event file was removed.

    Args:
        log_dir: The folder (created if missing).

    Returns:
        A `tf.summary` writer; flush it after writing.
    """
    folder = Path(log_dir).resolve()
    key = str(folder)
    with _WRITERS_LOCK:
        cached = _WRITERS.get(key)
        if cached is not None and cached[1].exists():
            return cached[0]
        before = set(folder.glob("events.out.tfevents.*")) if folder.is_dir() else set()
        writer = tf.summary.create_file_writer(key)
        writer.flush()  # creates the event file, so we can tell it apart
        created = sorted(set(folder.glob("events.out.tfevents.*")) - before)
        _WRITERS[key] = (writer, created[-1] if created else folder / "missing")
        return writer


# ------------------------------------------------------------------------------- sample grids


def image_grid(images: np.ndarray, cols: int | None = None, pad: int = 2) -> np.ndarray:
    """Tiles images in [-1, 1] into one uint8 picture, as `tf.summary.image` wants it.

    Args:
        images: `(n, h, w, c)` with `c` 1 or 3, values in [-1, 1] (clipped).
        cols: Images per row; default the smallest square that holds them.
        pad: Pixels of black between images.

    Returns:
        A `(rows * (h + pad) + pad, cols * (w + pad) + pad, c)` uint8 array.
    """
    images = np.asarray(images, dtype="float32")
    if images.ndim != 4 or images.shape[-1] not in (1, 3) or len(images) == 0:
        raise ValueError(
            f"image_grid needs images of shape (n, h, w, 1 or 3) with n >= 1, got "
            f"{images.shape}; reshape flat samples with rlhf_keras.reports.as_images first."
        )
    n, h, w, c = images.shape
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = np.zeros((rows * (h + pad) + pad, cols * (w + pad) + pad, c), dtype="uint8")
    pixels = np.round((np.clip(images, -1.0, 1.0) + 1.0) * 127.5).astype("uint8")
    for i, image in enumerate(pixels):
        top, left = pad + (i // cols) * (h + pad), pad + (i % cols) * (w + pad)
        grid[top : top + h, left : left + w] = image
    return grid


def scatter_image(points: np.ndarray, size: int = 256, limit: float | None = None) -> np.ndarray:
    """Draws 2-D points as an RGB uint8 picture with matplotlib (Agg), for TensorBoard.

    Args:
        points: `(n, 2)` samples.
        size: Side of the square picture, in pixels.
        limit: Half-width of the axes; default a bit beyond the largest |coordinate|, so a
            collapsing or exploding generator stays visible.

    Returns:
        A `(size, size, 3)` uint8 array.
    """
    plt = _pyplot()
    points = np.asarray(points, dtype="float32").reshape(len(points), -1)[:, :2]
    finite = points[np.isfinite(points).all(axis=1)]
    if limit is None:
        limit = float(np.abs(finite).max()) * 1.1 if len(finite) else 1.0
        limit = max(limit, 1e-3)
    dpi = 64
    fig = plt.figure(figsize=(size / dpi, size / dpi), dpi=dpi)
    ax = fig.add_axes((0.12, 0.12, 0.84, 0.84))
    ax.scatter(finite[:, 0], finite[:, 1], s=3, c="tab:red", alpha=0.6)
    ax.set_xlim(-limit, limit)
    ax.set_ylim(-limit, limit)
    ax.tick_params(labelsize=6)
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    plt.close(fig)
    return np.ascontiguousarray(rgba[..., :3])


def sample_picture(samples: np.ndarray) -> np.ndarray | None:
    """A picture of generated samples: an image grid, a 2-D scatter, or None for other data.

    Samples that are neither images nor 2-D points (e.g. 10-dimensional vectors) have no
    faithful picture, so nothing is drawn for them rather than a misleading projection.
    """
    samples = np.asarray(samples)
    images = as_images(samples)
    if images is not None and images.shape[-1] in (1, 3):
        return image_grid(images)
    flat = samples.reshape(len(samples), -1)
    if flat.shape[1] == 2:
        return scatter_image(flat)
    return None


class SampleGridCallback(keras.callbacks.Callback):
    """Writes a picture of generated samples to TensorBoard every `every` epochs.

    The same latent vectors (drawn once from `seed`) are used at every epoch, so the pictures
    show one set of samples evolving. Images are tiled into a grid; 2-D points are drawn as a
    scatter plot with matplotlib. Other samples (vectors that are neither images nor 2-D) are
    skipped with one warning: there is no faithful picture of them.

    The pictures go under the tag `samples` to `log_dir/samples`, or, given the Keras
    `TensorBoard` callback of the same `fit` (`tensorboard=`), into that callback's `train`
    folder: one TensorBoard run then holds the curves and the pictures, even after keras-tuner
    moved the callback's folder to its trial's.

    Args:
        log_dir: The run's log folder (e.g. `DIR/logs/trial_0`); or None with `tensorboard`.
        every: Write after every `every`-th epoch (and after the last epoch of `fit`).
        n: Images per grid (square grids look best: 16, 25, 36...).
        seed: Seed of the latent vectors.
        n_points: Points per scatter plot for 2-D data.
        tensorboard: The `keras.callbacks.TensorBoard` whose run the pictures join.

    Raises:
        ValueError: If `every`, `n` or `n_points` is not a positive int, or neither `log_dir`
            nor `tensorboard` is given.
    """

    def __init__(
        self,
        log_dir: str | os.PathLike | None = None,
        every: int = 1,
        n: int = 16,
        seed: int = 0,
        n_points: int = 512,
        tensorboard: keras.callbacks.TensorBoard | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("every", every), ("n", n), ("n_points", n_points)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"SampleGridCallback: {name} must be a positive int, got "
                                 f"{value!r}.")
        if log_dir is None and tensorboard is None:
            raise ValueError("SampleGridCallback needs log_dir= or tensorboard=.")
        self.tensorboard = tensorboard
        self.log_dir = None if log_dir is None else Path(log_dir) / SAMPLES_SUBDIR
        self.every = every
        self.n = n
        self.seed = seed
        self.n_points = n_points
        self._writer: Any = None
        self._z: np.ndarray | None = None
        self._skip = False
        self._last_written = -1

    def on_train_begin(self, logs: dict | None = None) -> None:
        model = self.model
        if not (hasattr(model, "generate") and hasattr(model, "data_shape")):
            raise TypeError(
                "SampleGridCallback needs a rlhf_keras.GAN (a model with generate() and "
                f"data_shape), got {type(model).__name__}. Use it in GAN.fit(callbacks=[...])."
            )
        size = int(np.prod(model.data_shape))
        is_points = size == 2
        self._skip = not is_points and as_images(np.zeros((1, *model.data_shape))) is None
        if self._skip:
            warnings.warn(
                f"SampleGridCallback: samples of shape {tuple(model.data_shape)} are neither "
                "images nor 2-D points; no sample pictures are written.",
                stacklevel=2,
            )
            return
        count = self.n_points if is_points else self.n
        self._z = model.latent_vectors(count, seed=self.seed)
        if self.tensorboard is not None:  # read now: keras-tuner sets it per trial
            # rlhf_keras.compat.TensorBoard writes its curves into log_dir; Keras's, in train/.
            self.log_dir = Path(getattr(self.tensorboard, "train_log_dir", None)
                                or Path(self.tensorboard.log_dir) / "train")
        self._writer = summary_writer(self.log_dir)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if (epoch + 1) % self.every == 0:
            self._write(epoch)

    def on_train_end(self, logs: dict | None = None) -> None:
        epochs = self.params.get("epochs") if self.params else None
        if epochs and self._last_written != epochs - 1:
            self._write(epochs - 1)  # the final state is always worth a picture
        if self._writer is not None:
            self._writer.flush()  # kept open: a later fit on this folder appends to it
            self._writer = None

    def _write(self, epoch: int) -> None:
        if self._skip or self._writer is None or epoch == self._last_written:
            return
        picture = sample_picture(self.model.generate(len(self._z), z=self._z))
        if picture is None:
            return
        with self._writer.as_default():
            tf.summary.image("samples", picture[None], step=epoch, max_outputs=1)
        self._writer.flush()
        self._last_written = epoch


# ------------------------------------------------------------------------------- HParams


def _hparam(hp: hp_module.HyperParameter) -> hp_api.HParam:
    """The HParams-plugin description of one keras-tuner hyperparameter."""
    if isinstance(hp, hp_module.Boolean):
        domain = hp_api.Discrete([False, True])
    elif isinstance(hp, hp_module.Choice):
        domain = hp_api.Discrete([_scalar(v) for v in hp.values])
    elif isinstance(hp, hp_module.Fixed):
        domain = hp_api.Discrete([_scalar(hp.value)])
    elif isinstance(hp, hp_module.Int):
        domain = hp_api.IntInterval(int(hp.min_value), int(hp.max_value))
    elif isinstance(hp, hp_module.Float):
        domain = hp_api.RealInterval(float(hp.min_value), float(hp.max_value))
    else:
        domain = None  # an unknown kind: listed without a domain
    return hp_api.HParam(hp.name, domain)


def _metric(name: str) -> hp_api.Metric:
    """`"fid"` -> the scalar `fid` in the trial's folder; `"train/epoch_d_loss"` -> in train/."""
    group, _, tag = name.rpartition("/")
    return hp_api.Metric(tag, group=group or None, display_name=name)


def log_hparams_config(
    log_dir: str | os.PathLike,
    search_space: keras_tuner.HyperParameters,
    metric_names: Iterable[str],
) -> Path:
    """Writes the experiment's HParams configuration: which hyperparameters and metrics exist.

    Call it once per search with the folder holding the trials' folders (`DIR/logs`); the
    HParams dashboard then lists each hyperparameter with its domain and each metric as a
    column, and compares the trials logged with `log_trial_hparams`.

    Args:
        log_dir: The search's log folder, parent of the `trial_<id>` folders.
        search_space: The search's `keras_tuner.HyperParameters`.
        metric_names: Scalars to compare: names logged by `log_trial_hparams` (`"reward"`,
            `"fid"`...), or `"train/epoch_d_loss"` for the Keras callback's curves (`group/tag`).

    Returns:
        The folder written to.

    Raises:
        TypeError: If `search_space` is not a `keras_tuner.HyperParameters`.
        ValueError: If `metric_names` is empty or not all strings.
    """
    if not isinstance(search_space, keras_tuner.HyperParameters):
        raise TypeError(
            "search_space must be a keras_tuner.HyperParameters (e.g. "
            f"rlhf_keras.default_search_space()), got {type(search_space).__name__}."
        )
    names = [metric_names] if isinstance(metric_names, str) else list(metric_names)
    if not names or not all(isinstance(m, str) and m for m in names):
        raise ValueError(
            f"metric_names must be a non-empty list of scalar names, got {metric_names!r}; "
            'e.g. ["reward", "fid", "train/epoch_d_loss"].'
        )
    seen: dict[str, hp_api.HParam] = {}
    for hp in search_space.space:
        seen.setdefault(hp.name, _hparam(hp))  # conditional twins share one column
    log_dir = Path(log_dir)
    writer = summary_writer(log_dir)
    with writer.as_default():
        hp_api.hparams_config(hparams=list(seen.values()), metrics=[_metric(m) for m in names])
    writer.flush()
    return log_dir


def log_trial_hparams(
    log_dir: str | os.PathLike,
    hparams: Mapping[str, Any],
    metrics: Mapping[str, float],
    trial_id: str | None = None,
    step: int = 0,
) -> Path:
    """Writes one trial's hyperparameters and final metrics for the HParams dashboard.

    Args:
        log_dir: The trial's log folder (`DIR/logs/<id>/execution0`, keras-tuner's).
        hparams: The trial's values (`trial.hyperparameters.values`); None values are left out.
        metrics: Final numbers to compare (`{"reward": ..., "fid": ...}`), written as scalars
            in `log_dir` so `log_hparams_config` metric names find them. NaN (a diverged
            trial) is written as NaN; None is left out.
        trial_id: The session's name in the dashboard; default the folder's name.
        step: Step of the metric scalars (e.g. the epochs trained).

    Returns:
        The folder written to.

    Raises:
        ValueError: If a hyperparameter value is not a bool, number or string, or a metric is
            not a number.
    """
    values = {}
    for name, value in hparams.items():
        if value is None:
            continue
        value = _scalar(value)
        if not isinstance(value, (bool, int, float, str)):
            raise ValueError(
                f"Hyperparameter {name!r} has value {value!r} of type {type(value).__name__}; "
                "the HParams dashboard takes bool, int, float or str values."
            )
        values[str(name)] = value
    numbers = {}
    for name, value in metrics.items():
        if value is None:
            continue
        value = _scalar(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"Metric {name!r} must be a number, got {value!r}.")
        numbers[str(name)] = float(value)
    log_dir = Path(log_dir)
    writer = summary_writer(log_dir)
    with writer.as_default():
        hp_api.hparams(values, trial_id=trial_id or log_dir.name)
        for name, value in numbers.items():
            tf.summary.scalar(name, value, step=step)
    writer.flush()
    return log_dir


# ------------------------------------------------------------------------------- the policy


def policy_scalars(policy_summary: Mapping[str, Mapping[Any, float]]) -> dict[str, float]:
    """A policy summary as flat scalar tags.

    `{"g_width": {0.5: 0.3, 1.0: 0.7}, "g_lr": {"mean": 2e-4, "std": 1e-4}}` becomes
    `{"g_width/p=0.5": 0.3, "g_width/p=1.0": 0.7, "g_lr/mean": 2e-4, "g_lr/std": 1e-4}`: one
    TensorBoard section per hyperparameter. Both `oracle.policy_summary()` and the snapshots
    of `oracle.policy_history` (string keys, from JSON) are accepted.
    """
    out: dict[str, float] = {}
    for key, dist in policy_summary.items():
        if not isinstance(dist, Mapping):
            raise ValueError(
                f"policy_summary[{key!r}] must be a dict of probabilities or mean/std, got "
                f"{dist!r}; pass oracle.policy_summary()."
            )
        name = _tag(str(key))
        gaussian = set(map(str, dist)) == {"mean", "std"}
        for value, number in dist.items():
            label = str(value) if gaussian else f"p={value}"
            out[f"{name}/{_tag(label)}"] = float(number)
    return out


def log_policy(
    log_dir: str | os.PathLike,
    policy_summary: Mapping[str, Mapping[Any, float]],
    step: int,
    extras: Mapping[str, float] | None = None,
) -> Path:
    """Writes the policy after one update: a scalar per choice probability, mean and std.

    Call it after each trial with `oracle.policy_summary()` and `oracle.updates` (or use
    `log_policy_history` to write a finished search at once).

    Args:
        log_dir: The policy's log folder (`DIR/logs/policy`).
        policy_summary: Per hyperparameter `{value: probability}` or `{"mean", "std"}`.
        step: The update number (x axis).
        extras: More scalars for the same step, under `reinforce/` (e.g. reward, baseline,
            advantage).

    Returns:
        The folder written to.
    """
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)):
        raise ValueError(f"step must be an int (the policy update number), got {step!r}.")
    scalars = policy_scalars(policy_summary)
    for name, value in (extras or {}).items():
        if value is not None:
            scalars[f"reinforce/{_tag(str(name))}"] = float(value)
    log_dir = Path(log_dir)
    writer = summary_writer(log_dir)
    with writer.as_default():
        for tag, value in scalars.items():
            tf.summary.scalar(tag, value, step=int(step))
        # One chart per hyperparameter with all its probabilities (Custom Scalars tab).
        charts = sorted({tag.split("/")[0] for tag in scalars})
        tf.summary.experimental.write_raw_pb(policy_layout(charts).SerializeToString(), step=0)
    writer.flush()
    return log_dir


def policy_layout(names: Iterable[str]) -> Any:
    """The Custom Scalars layout summary of the policy: per hyperparameter, one multi-line chart of
    every tag under its name (e.g. `g_lr/p=down`, `g_lr/p=keep`, `g_lr/p=up`)."""
    charts = [layout_pb2.Chart(title=name, multiline=layout_pb2.MultilineChartContent(
        tag=[rf"^{re.escape(name)}/"])) for name in names]
    return custom_scalar_summary.pb(layout_pb2.Layout(
        category=[layout_pb2.Category(title="policy", chart=charts)]))


def log_policy_history(
    log_dir: str | os.PathLike, policy_history: Iterable[Mapping[str, Any]]
) -> Path:
    """Writes every snapshot of `oracle.policy_history` (also saved in the run's oracle.json).

    Each snapshot is written at its `update` step, with its reward, baseline and advantage
    under `reinforce/`.
    """
    log_dir = Path(log_dir)
    for i, snapshot in enumerate(policy_history):
        extras = {k: snapshot.get(k) for k in ("reward", "utility", "baseline", "advantage")}
        log_policy(log_dir, snapshot.get("policy", {}), int(snapshot.get("update", i + 1)),
                   extras)
    return log_dir


# ------------------------------------------------------------------------------- helpers


def _scalar(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _tag(text: str) -> str:
    """A TensorBoard-safe tag piece (summary names refuse spaces, brackets, quotes...)."""
    return _TAG_UNSAFE.sub("_", text)



# ------------------------------------------------------------------------------- a search


def default_metric_names(objective: str) -> list[str]:
    """The HParams dashboard's columns for a search: reward, objective, final losses."""
    names = ["reward", objective, "epoch_d_loss", "epoch_g_loss"]
    return list(dict.fromkeys(names))  # the objective may be one of the others


def log_search_config(
    logs_dir: str | os.PathLike, search_space: keras_tuner.HyperParameters, objective: str
) -> Path:
    """`log_hparams_config` for a search's `DIR/logs`, with `default_metric_names(objective)`."""
    return log_hparams_config(logs_dir, search_space, default_metric_names(objective))


def log_trial_end(
    logs_dir: str | os.PathLike,
    row: Mapping[str, Any],
    snapshot: Mapping[str, Any] | None = None,
) -> None:
    """Logs one ended trial: its HParams session and, given the policy snapshot, the policy.

    Args:
        logs_dir: The search's `DIR/logs`.
        row: The trial's results.json row (`trial_id`, `values`, `reward`, `metrics`).
        snapshot: The `oracle.policy_history` entry of this trial (ignored if it belongs to
            another trial), written to `DIR/logs/policy` at its update step.
    """
    logs_dir = Path(logs_dir)
    trial_id = str(row["trial_id"])
    metrics = row.get("metrics") or {}
    numbers = {"reward": row.get("reward")}
    for name, value in metrics.items():
        if name == "score" and "fid" in metrics:
            continue  # -fid: logged once, as fid
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            numbers[name] = value
    # keras-tuner's run for the trial (`<id>/execution0`): one run and one numbering per trial.
    log_trial_hparams(logs_dir / trial_id / "execution0", row.get("values") or {}, numbers,
                      trial_id=trial_id, step=int(metrics.get("epochs_trained") or 0))
    if snapshot is not None and str(snapshot.get("trial_id")) == trial_id:
        log_policy_history(logs_dir / POLICY_SUBDIR, [snapshot])


def log_scalars(log_dir: str | os.PathLike, scalars: Mapping[str, Any], step: int) -> Path:
    """Writes the finite numbers of `scalars` at `step` (None and NaN are skipped)."""
    log_dir = Path(log_dir)
    writer = summary_writer(log_dir)
    with writer.as_default():
        for tag, value in scalars.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and \
                    np.isfinite(value):
                tf.summary.scalar(_tag(tag), float(value), step=int(step))
    writer.flush()
    return log_dir


def log_run(run_dir: str | os.PathLike) -> Path:
    """Writes the HParams and policy summaries of a search from its directory alone.

    For runs that were not logged while they ran: it reads results.json and oracle.json and
    writes the experiment configuration, every ended trial's session, and the policy after
    every update into `run_dir/logs`. Run it once per run (again, it adds duplicate events).

    Args:
        run_dir: The run's folder (`directory/project_name`).

    Returns:
        The logs folder, for `tensorboard --logdir`.

    Raises:
        ValueError: If `run_dir` is not a run directory.
    """
    from rlhf_keras.reports import read_run

    run_dir = Path(run_dir)
    run = read_run(run_dir)
    logs_dir = run_dir / "logs"
    oracle_path = run_dir / "oracle.json"
    space = keras_tuner.HyperParameters()
    if oracle_path.is_file():
        config = json.loads(oracle_path.read_text()).get("hyperparameters")
        if config:
            space = keras_tuner.HyperParameters.from_config(config)
    if space.space:
        log_search_config(logs_dir, space, run["objective"])
    for row in run["rows"]:
        if row.get("status") in ("COMPLETED", "FAILED", "INVALID"):
            log_trial_end(logs_dir, row)
    log_policy_history(logs_dir / POLICY_SUBDIR, run["policy_history"])
    return logs_dir
