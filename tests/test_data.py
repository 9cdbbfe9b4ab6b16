"""Tests of the data pipeline on real files: embedded sets, the shared MNIST folder, .npz, IDX."""

from __future__ import annotations

import gzip
import socket
import time
import warnings
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

from rlhf_keras import data
from rlhf_keras.data import DataError, DataInfo

MNIST_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"
# Class counts of the MNIST test split, from the folder's README.
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]

needs_mnist = pytest.mark.skipif(
    not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file(),
    reason=f"the shared MNIST test split is not at {MNIST_DIR}",
)


def _mnist_prepared() -> bool:
    return tfds.builder("mnist").is_prepared()


def _fashion_prepared() -> bool:
    return tfds.builder("fashion_mnist").is_prepared()


def _first_batch(dataset) -> np.ndarray:
    return next(iter(dataset)).numpy()


def _write_idx(path: Path, magic: int, array: np.ndarray) -> None:
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


# --------------------------------------------------------------------------- embedded sources


@pytest.mark.skipif(_mnist_prepared(), reason="TFDS mnist is prepared: load('mnist') uses it")
def test_embedded_mnist_is_the_real_test_split(monkeypatch):
    monkeypatch.setenv("RLHF_KERAS_OFFLINE", "1")  # the embedded copy needs no network
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "falling back" warning: MNIST is what was asked for
        x, y, info = data.load_arrays("mnist")
    assert info == DataInfo("mnist", (28, 28, 1), 10_000, True, "image", 10)
    assert x.shape == (10_000, 28, 28, 1) and x.dtype == np.float32
    assert x.min() == -1.0 and x.max() == 1.0
    assert y.dtype == np.int32 and np.bincount(y).tolist() == MNIST_TEST_COUNTS
    # The default source is MNIST too, from the same cache.
    default_x, default_y, default_info = data.load_arrays()
    assert default_info == info and default_x is x and default_y is y
    dataset, batch_info = data.load(batch_size=100, seed=0, labels=True, shape=(784,))
    images, labels = next(iter(dataset))
    assert batch_info.name == "mnist" and images.shape == (100, 784) and labels.shape == (100,)


@needs_mnist
@pytest.mark.skipif(_mnist_prepared(), reason="TFDS mnist is prepared: load('mnist') uses it")
def test_embedded_mnist_matches_the_shared_files():
    x, y, _ = data.load_arrays("mnist", split="test")
    shared_x, shared_y, _ = data.load_arrays(MNIST_DIR, split="test")
    assert np.array_equal(x, shared_x) and np.array_equal(y, shared_y)
    # Byte-identical package data, found the way an installed wheel finds it.
    folder = resources.files("rlhf_keras.datasets") / "mnist"
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        assert (folder / name).read_bytes() == (MNIST_DIR / name).read_bytes()
    notice = (folder / "NOTICE.md").read_text()
    assert "CC BY-SA 3.0" in notice and "LeCun" in notice


@needs_mnist
def test_embedded_mnist_is_always_the_shipped_copy_in_file_order():
    # What feature_net retrains on, even where TFDS (another order) serves load("mnist").
    x, y, info = data.embedded_mnist()
    shared_x, shared_y, _ = data.load_arrays(MNIST_DIR, split="test")
    assert info.name == "mnist" and np.array_equal(x, shared_x) and np.array_equal(y, shared_y)


def test_embedded_mnist_refuses_tfds_slicing():
    if _mnist_prepared():
        pytest.skip("TFDS mnist is prepared: slicing is TFDS's")
    with pytest.raises(DataError, match=r"'train' or 'test' for 'mnist'.*TFDS"):
        data.load_arrays("mnist", split="train[:10%]")


def test_digits_are_mnist_like_images_in_range():
    x, y, info = data.load_arrays("digits")
    assert info == DataInfo("digits", (28, 28, 1), 1797, True, "image", 10)
    assert x.shape == (1797, 28, 28, 1) and x.dtype == np.float32
    assert x.min() == -1.0 and x.max() == 1.0
    assert sorted(np.unique(y).tolist()) == list(range(10)) and y.dtype == np.int32
    # MNIST's 4-pixel empty border: the digit sits in the central 20x20 box.
    assert np.all(x[:, :4] == -1.0) and np.all(x[:, -4:] == -1.0)
    assert np.all(x[:, :, :4] == -1.0) and np.all(x[:, :, -4:] == -1.0)
    assert (x[:, 4:24, 4:24] > 0).mean() > 0.1


@pytest.mark.parametrize("name, k, std", [("ring8", 8, 0.01), ("grid25", 25, 0.05)])
def test_mixtures_match_their_modes(name, k, std):
    centers, mode_std = data.mixture_modes(name)
    assert centers.shape == (k, 2) and mode_std == std
    assert len({tuple(c) for c in centers.round(6)}) == k
    x, y, info = data.load_arrays(name, seed=0)
    assert info == DataInfo(name, (2,), 100_000, True, "points", k)
    assert x.shape == (100_000, 2) and x.dtype == np.float32
    assert np.bincount(y, minlength=k).min() > 100_000 / k * 0.9  # modes drawn uniformly
    residual = x - centers[y]
    assert np.allclose(residual.std(axis=0), std, rtol=0.05)
    assert np.allclose(residual.mean(axis=0), 0.0, atol=std / 10)
    test_x, _, test_info = data.load_arrays(name, split="test", seed=0)
    assert test_info.size == 10_000 and not np.array_equal(test_x, x[:10_000])


def test_ring8_centers_on_unit_circle_and_grid25_on_grid():
    ring, _ = data.mixture_modes("ring8")
    assert np.allclose(np.linalg.norm(ring, axis=1), 1.0, atol=1e-6)
    grid, _ = data.mixture_modes("grid25")
    assert sorted(set(grid[:, 0].tolist())) == [-4.0, -2.0, 0.0, 2.0, 4.0]
    with pytest.raises(DataError, match="'ring8' or 'grid25'"):
        data.mixture_modes("digits")


def test_mixture_samples_depend_on_seed():
    a, _, _ = data.load_arrays("ring8", seed=1)
    b, _, _ = data.load_arrays("ring8", seed=1)
    c, _, _ = data.load_arrays("ring8", seed=2)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_cached_arrays_are_read_only():
    x, y, _ = data.load_arrays("digits")
    with pytest.raises(ValueError):
        x[0, 0, 0, 0] = 5.0
    with pytest.raises(ValueError):
        y[0] = 3
    again, _, _ = data.load_arrays("digits")
    assert again[0, 0, 0, 0] == -1.0


# --------------------------------------------------------------------------- real MNIST folder


@needs_mnist
def test_shared_mnist_folder_loads_test_split():
    x, y, info = data.load_arrays(MNIST_DIR, split="test")
    assert info == DataInfo(str(MNIST_DIR), (28, 28, 1), 10_000, True, "image", 10)
    assert x.shape == (10_000, 28, 28, 1) and x.dtype == np.float32
    assert x.min() == -1.0 and x.max() == 1.0
    assert np.bincount(y).tolist() == MNIST_TEST_COUNTS
    # Only t10k-* is there, so "train" serves the same split.
    train_x, _, train_info = data.load_arrays(str(MNIST_DIR), split="train")
    assert train_info.size == 10_000 and np.array_equal(train_x, x)


@needs_mnist
def test_reshape_to_flat_generator_output():
    x, _, info = data.load_arrays(MNIST_DIR, shape=(784,))
    assert x.shape == (10_000, 784) and info.shape == (784,)
    dataset, info = data.load(MNIST_DIR, batch_size=50, shape=(784,), seed=0)
    batch = _first_batch(dataset)
    assert batch.shape == (50, 784) and batch.dtype == np.float32


# --------------------------------------------------------------------------- the Dataset


def test_dataset_batches_labels_and_drops_remainder():
    dataset, info = data.load("digits", batch_size=500, seed=0, labels=True)
    batches = list(dataset)
    assert len(batches) == 1797 // 500  # remainder dropped: equal batch shapes
    images, labels = batches[0]
    assert images.shape == (500, 28, 28, 1) and images.dtype.name == "float32"
    assert labels.shape == (500,) and labels.dtype.name == "int32"
    assert info.size == 1797


def test_shuffle_order_follows_seed():
    first = _first_batch(data.load("ring8", batch_size=256, seed=7)[0])
    same = _first_batch(data.load("ring8", batch_size=256, seed=7)[0])
    other = _first_batch(data.load("ring8", batch_size=256, seed=8)[0])
    assert np.array_equal(first, same)
    assert not np.array_equal(first, other)
    unshuffled = _first_batch(data.load("ring8", batch_size=256, seed=7, shuffle=False)[0])
    x, _, _ = data.load_arrays("ring8", seed=7)
    assert np.array_equal(unshuffled, x[:256])


def test_reshuffles_every_epoch():
    dataset, _ = data.load("digits", batch_size=64, seed=3)
    epoch1, epoch2 = _first_batch(dataset), _first_batch(dataset)
    assert not np.array_equal(epoch1, epoch2)


# --------------------------------------------------------------------------- .npz and IDX files


def test_npz_in_keras_layout(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "mnist.npz"
    np.savez(
        path,
        x_train=rng.integers(0, 256, (30, 28, 28), dtype=np.uint8),
        y_train=rng.integers(0, 10, 30),
        x_test=np.full((12, 28, 28), 255, np.uint8),
        y_test=np.arange(12) % 3,
    )
    x, y, info = data.load_arrays(path)
    assert x.shape == (30, 28, 28, 1) and info.size == 30 and info.kind == "image"
    assert -1.0 <= x.min() and x.max() <= 1.0
    test_x, test_y, test_info = data.load_arrays(path, split="test")
    assert np.all(test_x == 1.0) and test_y.tolist() == (np.arange(12) % 3).tolist()
    assert test_info.num_classes == 3


def test_npz_with_plain_x_and_no_labels(tmp_path):
    path = tmp_path / "points.npz"
    np.savez(path, x=np.array([[0.5, -3.0], [2.0, 7.0]], np.float32))
    x, y, info = data.load_arrays(path)
    assert y is None and info.kind == "points" and info.shape == (2,)
    assert x.tolist() == [[0.5, -3.0], [2.0, 7.0]]  # points keep their raw coordinates
    with pytest.raises(DataError, match="has no labels"):
        data.load(path, batch_size=2, labels=True)


def test_npz_with_nan_names_file_and_count(tmp_path):
    path = tmp_path / "bad.npz"
    x = np.zeros((5, 28, 28), np.float32)
    x[0, 0, :3] = np.nan
    x[1, 1, 1] = np.inf
    np.savez(path, x=x)
    with pytest.raises(DataError, match=r"bad\.npz.*4 non-finite values"):
        data.load_arrays(path)


def test_empty_npz(tmp_path):
    path = tmp_path / "empty.npz"
    np.savez(path, x_train=np.zeros((0, 28, 28), np.uint8), y_train=np.zeros(0, np.int64))
    with pytest.raises(DataError, match=r"empty\.npz.*empty"):
        data.load_arrays(path)


def test_npz_without_known_arrays(tmp_path):
    path = tmp_path / "odd.npz"
    np.savez(path, images=np.zeros((3, 2)))
    with pytest.raises(DataError, match=r"\['images'\].*x_train"):
        data.load_arrays(path)


def test_idx_folder_written_here(tmp_path):
    images = np.arange(4 * 28 * 28).reshape(4, 28, 28) % 256
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", 2051, images)
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", 2049, np.array([3, 1, 4, 1]))
    x, y, info = data.load_arrays(tmp_path)
    assert y.tolist() == [3, 1, 4, 1] and info.size == 4
    assert np.allclose(x[..., 0], images / 127.5 - 1.0, atol=1e-6)


@pytest.mark.parametrize(
    "payload, match",
    [
        (b"not a gzip stream at all", "Corrupt IDX file"),
        ((2049).to_bytes(4, "big") + b"\0" * 12, "magic number 2049, expected 2051"),
        ((2051).to_bytes(4, "big") + (5).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2,
         "header promises"),
    ],
)
def test_corrupt_idx_names_the_file(tmp_path, payload, match):
    bad = tmp_path / "t10k-images-idx3-ubyte.gz"
    if payload.startswith(b"not"):
        bad.write_bytes(payload)
    else:
        with gzip.open(bad, "wb") as handle:
            handle.write(payload)
    with pytest.raises(DataError, match=match) as err:
        data.load_arrays(tmp_path)
    assert str(bad) in str(err.value)


def test_folder_without_idx_files(tmp_path):
    with pytest.raises(DataError, match="No MNIST IDX images"):
        data.load_arrays(tmp_path)


# --------------------------------------------------------------------------- bad requests


def test_shape_mismatch_names_both_shapes_and_fix():
    with pytest.raises(DataError) as err:
        data.load_arrays("ring8", shape=(784,))
    message = str(err.value)
    assert "(784,)" in message and "(2,)" in message and "data_shape=(2,)" in message


def test_batch_larger_than_data():
    with pytest.raises(DataError, match="batch_size=2000 is larger than the 1797 examples"):
        data.load("digits", batch_size=2000)
    with pytest.raises(DataError, match="positive integer"):
        data.load("digits", batch_size=0)


def test_unknown_source_lists_choices():
    with pytest.raises(DataError) as err:
        data.load_arrays("not_a_dataset_anywhere")
    message = str(err.value)
    for choice in ("'mnist'", "'digits'", "'ring8'", "'grid25'", "IDX", ".npz"):
        assert choice in message


def test_missing_path():
    with pytest.raises(DataError, match="does not exist"):
        data.load_arrays("/nonexistent/folder/data.npz")


def test_non_image_tfds_dataset_is_refused():
    with pytest.raises(DataError, match="not an image dataset"):
        data.load_arrays("imdb_reviews")


# --------------------------------------------------------------------------- offline TFDS


def _host_resolves() -> bool:
    try:
        socket.getaddrinfo("storage.googleapis.com", 443)
        return True
    except OSError:
        return False


@pytest.mark.skipif(_fashion_prepared(), reason="TFDS fashion_mnist is prepared here")
def test_offline_env_var_gives_clear_error(monkeypatch):
    monkeypatch.setenv("RLHF_KERAS_OFFLINE", "1")
    with pytest.raises(DataError, match=r"'fashion_mnist' is not prepared.*no internet.*'mnist'"):
        data.load_arrays("fashion_mnist")


@pytest.mark.skipif(
    _fashion_prepared() or _host_resolves(),
    reason="TFDS fashion_mnist is prepared or downloadable here",
)
def test_offline_tfds_error_does_not_hang(monkeypatch):
    monkeypatch.delenv("RLHF_KERAS_OFFLINE", raising=False)
    start = time.monotonic()
    with pytest.raises(DataError) as err:
        data.load_arrays("fashion_mnist", split="test")
    # A correctness bound ("fails instead of retrying for minutes"), not a speed target.
    assert time.monotonic() - start < 15
    message = str(err.value)
    assert "no internet" in message
    for alternative in ("'mnist'", "'digits'", "IDX", ".npz", "'ring8'"):
        assert alternative in message
