"""Training data for the GANs: embedded sets, TFDS datasets, IDX folders and `.npz` files.

The evidence room of the project starts here. Every source ends up as the same thing: a float32
array of samples (images scaled to [-1, 1] to match a `tanh` generator, or raw 2-D coordinates),
optional integer labels, and a `DataInfo` describing them. `load` wraps those arrays in a
shuffled, batched `tf.data.Dataset` ready for `GAN.fit`.

Sources, by what `source` is:

* `None` or `"mnist"`: MNIST from TFDS when it is prepared locally (60,000 train / 10,000 test
  images), else the MNIST test split shipped inside the package (10,000 images and labels, IDX
  files read through `importlib.resources`; see `rlhf_keras/datasets/mnist/NOTICE.md`). Never
  downloads, so it works offline.
* `"digits"`: scikit-learn's bundled 1,797 8x8 digits, upsampled to 20x20 and centred in 28x28
  the way MNIST centres its digits. Works anywhere, no download.
* `"ring8"`, `"grid25"`: the 2-D mode-collapse benchmarks of PacGAN (8 Gaussians on the unit
  circle, std 0.01; 25 Gaussians on {-4, -2, 0, 2, 4}^2, std 0.05).
* A folder of MNIST-layout IDX files (`train-images-idx3-ubyte[.gz]`, `t10k-labels-...`).
* A `.npz` file in keras's `mnist.npz` layout (`x_train`, `y_train`, `x_test`, `y_test`) or with
  plain `x` (and optionally `y`).
* Any other name: a TFDS image dataset (`"fashion_mnist"`, `"cifar10"`, ...).

Sources that hold a single split (`"digits"`, the embedded `"mnist"`, a folder with only
`t10k-*` files, an `.npz` with only `x`) return that split whatever `split` asks for.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import math
import os
import socket
import threading
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

import numpy as np
import tensorflow as tf

__all__ = [
    "SOURCES",
    "DataError",
    "DataInfo",
    "check_searchable",
    "embedded_mnist",
    "load",
    "load_arrays",
    "mixture_modes",
]

SOURCES = ("mnist", "digits", "ring8", "grid25")
SPLITS = ("train", "test")

# Samples drawn for the 2-D mixtures: plenty to estimate mode coverage, cheap to hold.
_MIXTURE_SIZES = {"train": 100_000, "test": 10_000}
_KNOWN_MODES = ("ring8", "grid25")  # points whose modes are known, so scorable
# PacGAN's definitions: 8 modes on the unit circle with variance 1e-4, 25 modes on a grid
# with variance 0.0025.
_RING8_STD = 0.01
_GRID25_STD = 0.05

_IDX_IMAGES_MAGIC = 2051
_IDX_LABELS_MAGIC = 2049
# IDX files name their split with these prefixes (MNIST writes "t10k" for the test split).
_IDX_PREFIXES = {"train": ("train",), "test": ("t10k", "test")}
# The MNIST test split shipped as package data (rlhf_keras/datasets/mnist/).
_EMBEDDED_MNIST = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")

# TFDS fetches prepared datasets from Google Cloud Storage; no DNS for it means no download.
_TFDS_HOST = "storage.googleapis.com"
_OFFLINE_ENV = "RLHF_KERAS_OFFLINE"
_PROBE_TIMEOUT_S = 2.0

_ALTERNATIVES = (
    "'mnist' (the embedded MNIST test split, no download), 'digits' (scikit-learn's 8x8 "
    "digits in 28x28), a folder of MNIST IDX files "
    "(e.g. ../shared/data/mnist), a .npz file with x_train/y_train or x/y arrays, "
    "or the 2-D sets 'ring8'/'grid25'"
)


class DataError(ValueError):
    """Bad data or a bad data request; the message says what was wrong and how to fix it."""


@dataclasses.dataclass(frozen=True)
class DataInfo:
    """What a source holds.

    Attributes:
        name: The source: `"mnist"` (TFDS or the embedded copy; `size` tells them apart),
            `"digits"`, `"ring8"`, a TFDS name, or the folder/file path.
        shape: Per-sample shape as yielded, e.g. `(28, 28, 1)` for images, `(2,)` for points.
        size: Number of examples in the split.
        has_labels: Whether labels come with the samples.
        kind: `"image"` (values in [-1, 1]) or `"points"` (raw coordinates).
        num_classes: Number of label classes when known, else None.
    """

    name: str
    shape: tuple[int, ...]
    size: int
    has_labels: bool
    kind: str
    num_classes: int | None = None


# --------------------------------------------------------------------------- public API


def load_arrays(
    source: str | os.PathLike | None = None,
    split: str = "train",
    seed: int | None = None,
    shape: tuple[int, ...] | None = None,
) -> tuple[np.ndarray, np.ndarray | None, DataInfo]:
    """Loads every example of a source into memory.

    Decoded arrays are cached for the life of the process, so loading the same source again is
    free. The returned arrays are read-only views of that cache; copy them before editing.

    Args:
        source: `None` (MNIST), an embedded name (`SOURCES`), a TFDS image dataset name, a folder of
            IDX files, or a `.npz` file. See the module docstring.
        split: `"train"` or `"test"` (TFDS also accepts its slicing syntax, e.g.
            `"train[:10%]"`). Single-split sources ignore it.
        seed: Seed of the samples drawn for `"ring8"`/`"grid25"` (None means 0, so the data
            is reproducible); other sources are fixed files and ignore it.
        shape: The generator's per-sample output shape. Samples are reshaped to it when the
            number of values matches (784 <-> 28x28x1).

    Returns:
        `(x, y, info)`: float32 samples of shape `(size, *info.shape)`, int32 labels of shape
        `(size,)` or None, and the `DataInfo`.

    Raises:
        DataError: If the source is unknown, missing, corrupt, empty, holds non-finite values,
            is unreachable, or its samples cannot take `shape`.
    """
    split = _check_split(split)
    if shape is not None:
        shape = _check_shape(shape)
    if seed is not None and not isinstance(seed, (int, np.integer)):
        raise DataError(f"seed must be an integer or None, got {seed!r}.")
    key = _resolve(source, split)
    # Only the mixtures are drawn at random; other sources share one cache entry for all seeds.
    drawn = key.kind == "embedded" and key.name in ("ring8", "grid25")
    x, y, info = _load_cached(key, split, (0 if seed is None else int(seed)) if drawn else None)
    if shape is not None and shape != info.shape:
        x, info = _reshape(x, info, shape)
    return x, y, info


def load(
    source: str | os.PathLike | None = None,
    batch_size: int = 64,
    split: str = "train",
    seed: int | None = None,
    shape: tuple[int, ...] | None = None,
    shuffle: bool = True,
    labels: bool = False,
) -> tuple[tf.data.Dataset, DataInfo]:
    """Loads a source as a batched `tf.data.Dataset` ready for `GAN.fit`.

    Batches all have `batch_size` examples (the remainder is dropped) so a compiled training
    step never sees a new shape.

    Args:
        source: See `load_arrays`.
        batch_size: Examples per batch; at most the number of examples in the split.
        split: See `load_arrays`.
        seed: Seed of the shuffle order (and of the `"ring8"`/`"grid25"` samples). The order
            changes every epoch, the same way for the same seed.
        shape: The generator's per-sample output shape; see `load_arrays`.
        shuffle: Whether to shuffle the examples.
        labels: Yield `(x, y)` pairs instead of `x` alone.

    Returns:
        `(dataset, info)`: a dataset of float32 batches `(batch_size, *info.shape)` (with int32
        labels `(batch_size,)` when `labels=True`) and the `DataInfo`.

    Raises:
        DataError: For everything `load_arrays` rejects, a batch size that is not a positive
            integer or exceeds the data, or `labels=True` on a source without labels.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise DataError(f"batch_size must be a positive integer, got {batch_size!r}.")
    if batch_size < 1:
        raise DataError(f"batch_size must be a positive integer, got {batch_size}.")
    x, y, info = load_arrays(source, split=split, seed=seed, shape=shape)
    if batch_size > info.size:
        raise DataError(
            f"batch_size={batch_size} is larger than the {info.size} examples of {info.name!r} "
            f"(split {split!r}); pass batch_size <= {info.size}, since incomplete batches are "
            "dropped."
        )
    if labels and y is None:
        raise DataError(
            f"{info.name!r} has no labels; call load(..., labels=False) or pick a source with "
            "labels (e.g. 'digits', an IDX folder with a labels file, a .npz with y arrays)."
        )
    dataset = tf.data.Dataset.from_tensor_slices((x, y) if labels else x)
    if shuffle:
        # A full buffer gives a uniform shuffle; the seed fixes the sequence of epoch orders.
        dataset = dataset.shuffle(info.size, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(int(batch_size), drop_remainder=True)
    return dataset.prefetch(tf.data.AUTOTUNE), info


def embedded_mnist() -> tuple[np.ndarray, np.ndarray, DataInfo]:
    """The MNIST test split shipped in the package, in file order, whatever TFDS holds.

    `load_arrays("mnist")` prefers TFDS when it is prepared; this is always the embedded copy
    (10,000 images in [-1, 1], `(10000, 28, 28, 1)`, and their int32 labels), e.g. for work
    that depends on the file order such as retraining the shipped feature network.
    """
    x, y, info = _load_cached(_Key("embedded", "mnist"), "test", None)
    assert y is not None  # the embedded copy always has its labels
    return x, y, info


def mixture_modes(name: str) -> tuple[np.ndarray, float]:
    """Returns the modes of a 2-D mixture.

    Args:
        name: `"ring8"` or `"grid25"`.

    Returns:
        `(centers, std)`: float32 centers of shape `(k, 2)` and the per-axis standard deviation
        of every mode.

    Raises:
        DataError: If `name` is not one of the 2-D mixtures.
    """
    if name == "ring8":
        angles = 2.0 * np.pi * np.arange(8) / 8
        centers = np.stack([np.cos(angles), np.sin(angles)], axis=1)
        return centers.astype(np.float32), _RING8_STD
    if name == "grid25":
        ticks = np.arange(-4.0, 5.0, 2.0)
        centers = np.array([(a, b) for a in ticks for b in ticks])
        return centers.astype(np.float32), _GRID25_STD
    raise DataError(f"Unknown 2-D mixture {name!r}; choose 'ring8' or 'grid25'.")


def check_searchable(info: DataInfo, batch_sizes: Iterable[int] = ()) -> None:
    """Raises DataError, before any training, if a search could not score or batch this data.

    A search scores every trial: images by FID, which needs at least 2 real examples; points
    by the modes of a known mixture (`"ring8"`, `"grid25"`). Other points can be trained on
    with `GAN.fit`, but no trial of a search could be scored. Every batch size the search may
    use must fit in the data (incomplete batches are dropped).

    Args:
        info: The `DataInfo` from `load` / `load_arrays`.
        batch_sizes: The batch sizes the search may use (its own, and any `batch_size`
            choices of the search space).

    Raises:
        DataError: Naming the data, what is wrong and the fix.
    """
    if info.kind == "points" and info.name not in _KNOWN_MODES:
        raise DataError(
            f"{info.name!r} holds points of shape {info.shape} with no known modes, so no trial "
            "of a search could be scored (points are scored by the modes they cover). Search "
            "on 'ring8' or 'grid25', or train on these points with GAN.fit and score them "
            "with metrics.mode_metrics(samples, (centers, std)) given their modes."
        )
    if info.kind == "image" and info.size < 2:
        raise DataError(
            f"{info.name!r} holds {info.size} image; a search scores trials by FID, which "
            "needs at least 2 real images (use hundreds: FID on few images is noisy). Pass "
            "more images."
        )
    too_big = sorted({int(b) for b in batch_sizes if int(b) > info.size})
    if too_big:
        raise DataError(
            f"batch_size {', '.join(map(str, too_big))} is larger than the {info.size} "
            f"examples of {info.name!r}: every batch would be dropped and nothing trained. Use "
            f"batch sizes <= {info.size}, or more data."
        )


# --------------------------------------------------------------------------- resolving


@dataclasses.dataclass(frozen=True)
class _Key:
    """A hashable description of a source, so the cache notices rewritten files."""

    kind: str  # "embedded", "idx", "npz", "tfds"
    name: str
    stamp: tuple = ()


def _check_split(split: str) -> str:
    if not isinstance(split, str) or not split:
        raise DataError(f"split must be 'train' or 'test', got {split!r}.")
    return split


def _check_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    try:
        out = tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        raise DataError(
            f"shape must be a tuple of positive integers such as (784,) or (28, 28, 1), "
            f"got {shape!r}."
        ) from None
    if not out or any(d < 1 for d in out):
        raise DataError(
            f"shape must be a tuple of positive integers such as (784,) or (28, 28, 1), "
            f"got {shape!r}."
        )
    return out


def _file_stamp(paths: list[Path]) -> tuple:
    return tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in paths)


def _resolve(source: str | os.PathLike | None, split: str) -> _Key:
    """Works out what kind of source was asked for, before any expensive work."""
    if source is None:
        source = "mnist"
    if not isinstance(source, (str, os.PathLike)):
        raise DataError(
            f"source must be a name or a path, got {type(source).__name__}. "
            f"Valid choices: {_choices()}."
        )
    text = os.fspath(source)
    if text == "mnist" and _tfds_prepared("mnist"):
        return _Key("tfds", "mnist")  # the full 60,000/10,000 splits, with TFDS slicing
    if text in SOURCES:
        if split not in SPLITS:
            raise DataError(
                f"split must be 'train' or 'test' for {text!r}, got {split!r} (slicing such as "
                "'train[:10%]' needs a TFDS dataset prepared on this machine)."
            )
        return _Key("embedded", text)
    path = Path(text).expanduser()
    if path.is_dir():
        if split not in SPLITS:
            raise DataError(f"split must be 'train' or 'test' for {text!r}, got {split!r}.")
        images, labels = _idx_files(path, split)
        return _Key("idx", str(path), _file_stamp([p for p in (images, labels) if p]))
    if path.is_file():
        if path.suffix != ".npz":
            raise DataError(
                f"{text!r} is a file but not a .npz; pass a .npz file (x_train/y_train or x/y "
                "arrays) or a folder of MNIST IDX files."
            )
        if split not in SPLITS:
            raise DataError(f"split must be 'train' or 'test' for {text!r}, got {split!r}.")
        return _Key("npz", str(path), _file_stamp([path]))
    if text.endswith(".npz") or os.sep in text or (os.altsep and os.altsep in text):
        raise DataError(f"{text!r} does not exist; pass an existing folder or .npz file.")
    return _tfds_key(text)


def _choices() -> str:
    return (
        f"the embedded sources {', '.join(repr(s) for s in SOURCES)}; a TFDS image dataset "
        "name such as 'mnist', 'fashion_mnist' or 'cifar10'; a folder of MNIST IDX files; "
        "or a .npz file"
    )


# --------------------------------------------------------------------------- TFDS


@functools.cache
def _tfds_prepared(name: str) -> bool:
    """Whether TFDS has `name` prepared on this machine; never touches the network.

    Asked once per process: each `tfds.builder` call costs time (and, with a stale TFDS
    folder, leaves a temporary directory behind)."""
    try:
        import tensorflow_datasets as tfds

        return bool(tfds.builder(name).is_prepared())
    except Exception:  # noqa: BLE001 - a broken TFDS install just means "not prepared"
        return False


def _offline() -> bool:
    """Whether TFDS downloads are impossible: the env var says so, or its host has no DNS."""
    if os.environ.get(_OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes"):
        return True
    return not _dns_resolves(_TFDS_HOST, _PROBE_TIMEOUT_S)


@functools.cache
def _dns_resolves(host: str, timeout: float) -> bool:
    # getaddrinfo has no timeout of its own; a daemon thread lets a hung resolver be abandoned.
    result: list[bool] = []

    def probe() -> None:
        try:
            socket.getaddrinfo(host, 443)
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, name="rlhf-keras-dns-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def _tfds_key(name: str) -> _Key:
    """Checks that `name` is a TFDS image dataset that is prepared or downloadable."""
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name)
    except Exception as err:  # DatasetNotFoundError and malformed names alike
        raise DataError(
            f"Unknown data source {name!r}: not an embedded source, an existing path, or a "
            f"TFDS dataset. Valid choices: {_choices()}."
        ) from err
    features = builder.info.features
    supervised = builder.info.supervised_keys or ()
    image_key = supervised[0] if supervised else "image"
    if image_key not in features or len(getattr(features[image_key], "shape", ())) != 3:
        raise DataError(
            f"TFDS dataset {name!r} is not an image dataset; pick an image dataset "
            f"(e.g. 'mnist', 'fashion_mnist', 'cifar10') or one of: {_ALTERNATIVES}."
        )
    if not builder.is_prepared() and _offline():
        raise DataError(
            f"TFDS dataset {name!r} is not prepared in {builder.data_dir} and cannot be "
            f"downloaded (no internet). Use {_ALTERNATIVES} instead, or prepare it on a "
            "connected machine and copy the TFDS data dir here."
        )
    return _Key("tfds", name)


def _load_tfds(name: str, split: str) -> tuple[np.ndarray, np.ndarray | None, DataInfo]:
    import tensorflow_datasets as tfds

    builder = tfds.builder(name)
    supervised = builder.info.supervised_keys or ()
    image_key = supervised[0] if supervised else "image"
    label_key = supervised[1] if len(supervised) > 1 else None
    try:
        if not builder.is_prepared():
            builder.download_and_prepare()
        batch = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
    except Exception as err:
        raise DataError(
            f"Could not load split {split!r} of TFDS dataset {name!r}: {err}. Check the split "
            f"name (e.g. 'train', 'test', 'train[:10%]') or use {_ALTERNATIVES}."
        ) from err
    x = _scale_pixels(np.asarray(batch[image_key]), name)
    y = None if label_key is None else np.asarray(batch[label_key]).astype(np.int32)
    classes = None
    if label_key is not None:
        classes = getattr(builder.info.features[label_key], "num_classes", None)
    return x, y, _image_info(name, x, y, classes)


# --------------------------------------------------------------------------- loading


@functools.lru_cache(maxsize=16)
def _load_cached(
    key: _Key, split: str, seed: int | None
) -> tuple[np.ndarray, np.ndarray | None, DataInfo]:
    if key.kind == "embedded" and key.name == "digits":
        x, y, info = _load_digits()
    elif key.kind == "embedded" and key.name == "mnist":
        x, y, info = _load_embedded_mnist()
    elif key.kind == "embedded":
        x, y, info = _load_mixture(key.name, split, seed or 0)
    elif key.kind == "idx":
        x, y, info = _load_idx(Path(key.name), split)
    elif key.kind == "npz":
        x, y, info = _load_npz(Path(key.name), split)
    else:
        x, y, info = _load_tfds(key.name, split)
    if info.size == 0:
        raise DataError(f"{info.name!r} holds no examples; pass a source with data in it.")
    # The cache hands out the same arrays every time: freeze them so no caller can corrupt it.
    x.setflags(write=False)
    if y is not None:
        y.setflags(write=False)
    return x, y, info


def _image_info(
    name: str, x: np.ndarray, y: np.ndarray | None, num_classes: int | None = None
) -> DataInfo:
    if y is not None and num_classes is None and y.size:
        num_classes = int(y.max()) + 1
    return DataInfo(
        name=name,
        shape=tuple(int(d) for d in x.shape[1:]),
        size=int(x.shape[0]),
        has_labels=y is not None,
        kind="image",
        num_classes=num_classes,
    )


def _load_digits() -> tuple[np.ndarray, np.ndarray, DataInfo]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    small = bunch.images.astype(np.float32)[..., None] / 16.0  # 0..16 ink -> 0..1
    # MNIST fits each digit in a 20x20 box centred in 28x28; do the same.
    big = tf.image.resize(small, (20, 20), method="bilinear").numpy()
    big = np.pad(big, ((0, 0), (4, 4), (4, 4), (0, 0)))
    x = (np.clip(big, 0.0, 1.0) * 2.0 - 1.0).astype(np.float32)
    y = bunch.target.astype(np.int32)
    return x, y, _image_info("digits", x, y, 10)


def _load_embedded_mnist() -> tuple[np.ndarray, np.ndarray, DataInfo]:
    """The MNIST test split shipped as package data, found through importlib.resources."""
    folder = resources.files("rlhf_keras.datasets") / "mnist"
    arrays = []
    for filename, magic, ndim in zip(
        _EMBEDDED_MNIST, (_IDX_IMAGES_MAGIC, _IDX_LABELS_MAGIC), (3, 1), strict=True
    ):
        # as_file gives a real path even when the package lives in a zip archive.
        with resources.as_file(folder / filename) as path:
            if not path.is_file():
                raise DataError(
                    f"The embedded MNIST file {filename} is missing from the installed package "
                    f"({path}); reinstall rlhf-keras, or load a folder of MNIST IDX files."
                )
            arrays.append(_read_idx(path, magic, ndim))
    x = _scale_pixels(arrays[0], "mnist")
    y = arrays[1].astype(np.int32)
    return x, y, _image_info("mnist", x, y, 10)


def _load_mixture(name: str, split: str, seed: int) -> tuple[np.ndarray, np.ndarray, DataInfo]:
    centers, std = mixture_modes(name)
    n = _MIXTURE_SIZES[split]
    # The split joins the seed so train and test are independent draws.
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    y = rng.integers(0, len(centers), size=n).astype(np.int32)
    x = (centers[y] + rng.normal(0.0, std, size=(n, 2))).astype(np.float32)
    info = DataInfo(name, (2,), n, True, "points", len(centers))
    return x, y, info


def _scale_pixels(x: np.ndarray, name: str) -> np.ndarray:
    """Maps image pixels to float32 in [-1, 1] with a channel axis."""
    if x.ndim == 3:
        x = x[..., None]
    if x.dtype == bool:
        # Binary images: False is background (-1), True is ink (1); not 0/255 pixel values.
        return np.where(x, 1.0, -1.0).astype(np.float32)
    if np.issubdtype(x.dtype, np.integer):
        if x.size and (x.min() < 0 or x.max() > 255):
            raise DataError(
                f"{name!r}: integer pixels must lie in 0..255, found {x.min()}..{x.max()}; "
                "store uint8 images."
            )
        return (x.astype(np.float32) / 127.5 - 1.0).astype(np.float32)
    x = x.astype(np.float32)
    if not x.size:
        return x
    low, high = float(x.min()), float(x.max())
    if low >= -1.0 and high <= 1.0 and low < 0.0:
        return x  # already in [-1, 1]
    if low >= 0.0 and high <= 1.0:
        return x * 2.0 - 1.0
    if low >= 0.0 and high <= 255.0:
        return x / 127.5 - 1.0
    raise DataError(
        f"{name!r}: float pixels lie in {low}..{high}; store them in [0, 255], [0, 1] or "
        "[-1, 1]."
    )


# --------------------------------------------------------------------------- IDX folders


def _idx_files(folder: Path, split: str) -> tuple[Path, Path | None]:
    """Finds the images (and labels) files of a split, falling back to the only split there."""
    found: dict[str, tuple[Path, Path | None]] = {}
    for name in SPLITS:
        for prefix in _IDX_PREFIXES[name]:
            images = _first_existing(folder, f"{prefix}-images-idx3-ubyte")
            if images is not None:
                found[name] = (images, _first_existing(folder, f"{prefix}-labels-idx1-ubyte"))
                break
    if not found:
        raise DataError(
            f"No MNIST IDX images in {str(folder)!r}: expected files named like "
            "'train-images-idx3-ubyte[.gz]' or 't10k-images-idx3-ubyte[.gz]'. Point source at "
            "such a folder, or use 'digits'."
        )
    if split in found:
        return found[split]
    # A folder with a single split (e.g. only MNIST's test files) serves it for any split.
    return next(iter(found.values()))


def _first_existing(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _read_idx(path: Path, magic: int, ndim: int) -> np.ndarray:
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise DataError(f"Corrupt IDX file {str(path)!r}: {err}. Re-download it.") from err
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(
            f"Corrupt IDX file {str(path)!r}: {len(raw)} bytes is shorter than its "
            f"{header}-byte header. Re-download it."
        )
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise DataError(
            f"Corrupt IDX file {str(path)!r}: magic number {found}, expected {magic}. "
            "Re-download it or check that images and labels files are not swapped."
        )
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    expected = header + math.prod(dims)
    if len(raw) != expected:
        raise DataError(
            f"Corrupt IDX file {str(path)!r}: header promises {dims} ({expected} bytes) but the "
            f"file holds {len(raw)} bytes. Re-download it."
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _load_idx(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray | None, DataInfo]:
    images_path, labels_path = _idx_files(folder, split)
    images = _read_idx(images_path, _IDX_IMAGES_MAGIC, 3)
    labels = None
    if labels_path is not None:
        labels = _read_idx(labels_path, _IDX_LABELS_MAGIC, 1).astype(np.int32)
        if len(labels) != len(images):
            raise DataError(
                f"{str(labels_path)!r} holds {len(labels)} labels but {str(images_path)!r} "
                f"holds {len(images)} images; use matching files."
            )
    x = _scale_pixels(images, str(folder))
    return x, labels, _image_info(str(folder), x, labels)


# --------------------------------------------------------------------------- .npz files


def _load_npz(path: Path, split: str) -> tuple[np.ndarray, np.ndarray | None, DataInfo]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except Exception as err:  # zipfile/pickle/format errors all mean an unreadable file
        raise DataError(f"Cannot read {str(path)!r} as a .npz file: {err}.") from err
    pairs = {
        name: (f"x_{name}", f"y_{name}") for name in SPLITS if f"x_{name}" in arrays
    }
    if "x" in arrays:
        pairs.setdefault("all", ("x", "y"))
    if not pairs:
        raise DataError(
            f"{str(path)!r} has arrays {sorted(arrays)}; expected x_train/y_train/x_test/y_test "
            "(keras mnist.npz layout) or x (and y). Rename the arrays."
        )
    # A file with one split (or plain x/y) serves it for any split.
    x_key, y_key = pairs.get(split) or next(iter(pairs.values()))
    x = arrays[x_key]
    y = arrays.get(y_key)
    if x.ndim < 2 or x.shape[0] == 0 or x.size == 0:
        raise DataError(
            f"{str(path)!r}: array {x_key!r} is empty (shape {x.shape}); store at least one "
            "example with shape (n, ...)."
        )
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise DataError(f"{str(path)!r}: array {x_key!r} has dtype {x.dtype}; store numbers.")
    if np.issubdtype(x.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(x)))
        if bad:
            raise DataError(
                f"{str(path)!r}: array {x_key!r} holds {bad} non-finite values (NaN/inf); "
                "clean or drop those examples."
            )
    if y is not None:
        y = _check_labels(path, y_key, y, len(x))
    kind = _kind_of(x, path, x_key)
    if kind == "points":
        # Points (e.g. 2-D coordinates) keep their raw values, whatever their number type.
        x = x.astype(np.float32)
        info = DataInfo(str(path), (int(x.shape[1]),), len(x), y is not None, "points",
                        None if y is None else int(y.max()) + 1)
        return x, y, info
    if x.ndim == 2:  # flattened square images, e.g. 784 = 28 x 28 values a row
        side = math.isqrt(x.shape[1])
        x = x.reshape(len(x), side, side)
    x = _scale_pixels(x, str(path))
    return x, y, _image_info(str(path), x, y)


def _kind_of(x: np.ndarray, path: Path, key: str) -> str:
    """Images or points, decided from the array's shape (never from its number type).

    `(n, h, w)` and `(n, h, w, c)` arrays are images; `(n, d)` arrays are points, except
    rows of a square number of values from 8 x 8 up (784 = 28 x 28), which are flattened
    grayscale images.
    """
    if x.ndim in (3, 4):
        return "image"
    if x.ndim != 2:
        raise DataError(
            f"{str(path)!r}: array {key!r} has shape {x.shape}; store images as (n, height, "
            "width) or (n, height, width, channels), or points as (n, dims)."
        )
    side = math.isqrt(x.shape[1])
    if side >= 8 and side * side == x.shape[1]:
        return "image"
    if x.dtype == bool:
        raise DataError(
            f"{str(path)!r}: array {key!r} holds booleans of shape {x.shape}: neither points "
            "(store coordinates as numbers) nor images (store binary images as (n, height, "
            "width))."
        )
    return "points"


def _check_labels(path: Path, key: str, y: np.ndarray, n: int) -> np.ndarray:
    y = np.asarray(y).reshape(-1) if np.ndim(y) > 1 and np.shape(y)[-1] == 1 else np.asarray(y)
    if y.ndim != 1 or len(y) != n:
        raise DataError(
            f"{str(path)!r}: labels {key!r} have shape {y.shape} but there are {n} examples; "
            "store one integer label per example."
        )
    if np.issubdtype(y.dtype, np.floating):
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise DataError(
                f"{str(path)!r}: labels {key!r} must be whole numbers; store integer classes."
            )
    elif not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{str(path)!r}: labels {key!r} have dtype {y.dtype}; store integers.")
    if len(y) and y.min() < 0:
        raise DataError(
            f"{str(path)!r}: labels {key!r} include {int(y.min())}; use class indices >= 0."
        )
    return y.astype(np.int32)


# --------------------------------------------------------------------------- reshaping


def _reshape(x: np.ndarray, info: DataInfo, shape: tuple[int, ...]) -> tuple[np.ndarray, DataInfo]:
    if math.prod(shape) != math.prod(info.shape):
        raise DataError(
            f"The generator makes samples of shape {shape} but {info.name!r} has samples of "
            f"shape {info.shape} ({math.prod(info.shape)} values, not {math.prod(shape)}). "
            f"Build the generator with data_shape={info.shape} (e.g. arch 'seed'), or pick a "
            f"source whose samples have shape {shape}."
        )
    return x.reshape((len(x), *shape)), dataclasses.replace(info, shape=shape)
