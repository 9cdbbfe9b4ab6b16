"""Feature networks for image quality metrics (FID, classifier score, precision/recall).

The evidence room's eyes. FID needs an embedding in which real images cluster by content; the
Inception network that the original FID uses is far too slow and too large for 28x28 digits on a
CPU, so the project ships a small CNN classifier trained on real MNIST digits
(`rlhf_keras/assets/mnist_features.keras`, package data read through `importlib.resources`, so it
works from an installed wheel) and uses its penultimate layer, a `Dense(128)` named `"features"`,
as the embedding. FIDs computed with it are comparable with each other, not with published
Inception FIDs.

Re-train the shipped network (on the embedded MNIST test split) with::

    python -m rlhf_keras.feature_net

For other image data, `rlhf_keras.metrics.fid` uses a randomly initialised CNN embedding with a
fixed seed (`random_embedding`), which Naeem et al. (2020) found to be a usable embedding for
fidelity/diversity metrics; it never trains one. Training a network of the same design on other
labelled images is an explicit step: `rlhf_keras.metrics.train_feature_extractor`.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import keras
import numpy as np
from keras import layers

if TYPE_CHECKING:  # importlib.resources.abc is 3.11+; only the annotation needs it
    from importlib.resources.abc import Traversable

FEATURE_LAYER = "features"
FEATURE_DIM = 128
MODEL_FILENAME = "mnist_features.keras"
ASSETS_DIR = "assets"  # inside the rlhf_keras package
RETRAIN_COMMAND = "python -m rlhf_keras.feature_net"
# The real-MNIST split used by `main`: the first 8,000 test images train, the last 2,000 score.
TRAIN_SIZE = 8000
DEFAULT_SEED = 0
DEFAULT_EPOCHS = 20


class FeatureNetError(RuntimeError):
    """A feature network is missing or unusable; the message says how to get one."""


def shipped_model() -> Traversable:
    """The shipped MNIST feature network, as package data (`rlhf_keras/assets/`)."""
    return resources.files("rlhf_keras") / ASSETS_DIR / MODEL_FILENAME


def default_model_path() -> Path:
    """The shipped network's file on disk, where `main` writes a retrained one by default.

    A plain path in an editable or a regular install; reading goes through `shipped_model()`,
    which also works when the package is imported from a zip archive.
    """
    return Path(str(shipped_model()))


def build_feature_net(
    input_shape: Sequence[int] = (28, 28, 1), num_classes: int = 10, seed: int = DEFAULT_SEED
) -> keras.Model:
    """Builds the (untrained) feature CNN classifier.

    Two 3x3 conv blocks, then `Dense(128)` named `"features"` (the embedding), then a softmax.
    Inputs are images scaled to [-1, 1].

    Args:
        input_shape: Shape of one image, `(height, width, channels)`.
        num_classes: Number of classes of the softmax.
        seed: Seed of the weight initialisation.

    Returns:
        A `keras.Model` mapping images to class probabilities.

    Raises:
        ValueError: If `input_shape` is not an image shape or `num_classes < 2`.
    """
    input_shape = tuple(int(d) for d in input_shape)
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise ValueError(
            f"A feature net needs images shaped (height, width, channels), got {input_shape}. "
            "Reshape flat samples, e.g. (784,) -> (28, 28, 1)."
        )
    if int(num_classes) < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}.")
    init = keras.initializers.GlorotUniform

    def conv(filters: int, k: int) -> layers.Layer:
        return layers.Conv2D(
            filters, 3, padding="same", activation="relu", kernel_initializer=init(seed + k)
        )

    # Small inputs (e.g. 8x8) cannot take two poolings; pool only while the side is >= 8.
    side = min(input_shape[:2])
    blocks: list[layers.Layer] = [conv(32, 1)]
    if side >= 8:
        blocks.append(layers.MaxPooling2D())
    blocks.append(conv(64, 2))
    if side >= 16:
        blocks.append(layers.MaxPooling2D())
    blocks.append(layers.Conv2D(64, 3, strides=2, padding="same", activation="relu",
                                kernel_initializer=init(seed + 3)))
    return keras.Sequential(
        [
            keras.Input(input_shape),
            *blocks,
            layers.Flatten(),
            layers.Dense(FEATURE_DIM, activation="relu", name=FEATURE_LAYER,
                         kernel_initializer=init(seed + 4)),
            layers.Dropout(0.3, seed=seed),
            layers.Dense(int(num_classes), activation="softmax", name="probabilities",
                         kernel_initializer=init(seed + 5)),
        ],
        name="feature_net",
    )


def train_feature_net(
    x: np.ndarray,
    y: np.ndarray,
    num_classes: int | None = None,
    epochs: int = DEFAULT_EPOCHS,
    batch_size: int = 128,
    augment: bool = True,
    seed: int = DEFAULT_SEED,
    verbose: int = 0,
) -> keras.Model:
    """Trains a feature CNN classifier on labelled images.

    Args:
        x: Images in [-1, 1], shape `(N, height, width, channels)`; `(N, 784)` is read as 28x28x1.
        y: Integer labels, shape `(N,)`.
        num_classes: Number of classes; defaults to `max(y) + 1`.
        epochs: Training epochs.
        batch_size: Batch size.
        augment: Random shifts of up to 2 pixels (10%) during training, which helps small
            training sets.
        seed: Seed of the initialisation, the shuffling, the dropout and the augmentation.
        verbose: Passed to `fit`.

    Returns:
        The trained classifier (images -> class probabilities); its layer `"features"` is the
        embedding.

    Raises:
        ValueError: If `x` and `y` do not fit together or are not images and integer labels.
    """
    x = _as_images(x)
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != len(x):
        raise ValueError(
            f"Labels must be a 1-D array with one label per image; got labels of shape {y.shape} "
            f"for {len(x)} images."
        )
    if len(x) < 2 or not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
        raise ValueError(
            "train_feature_net needs at least 2 images and non-negative integer labels "
            f"(got {len(x)} images, labels of dtype {y.dtype}). Pass labels as ints 0..K-1."
        )
    num_classes = int(num_classes or int(y.max()) + 1)
    keras.utils.set_random_seed(seed)
    classifier = build_feature_net(x.shape[1:], num_classes, seed=seed)
    trainer: keras.Model = classifier
    if augment:
        # The augmentation lives in a training-only wrapper, so the saved classifier has none.
        trainer = keras.Sequential(
            [
                keras.Input(x.shape[1:]),
                layers.RandomTranslation(0.1, 0.1, fill_mode="constant", fill_value=-1.0,
                                         seed=seed),
                classifier,
            ]
        )
    trainer.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    steps = max(1, int(np.ceil(len(x) / batch_size))) * epochs
    # Cosine decay to zero: the last epochs settle the weights, which lifts held-out accuracy.
    trainer.optimizer.learning_rate = keras.optimizers.schedules.CosineDecay(1e-3, steps)
    trainer.fit(x, y.astype("int32"), batch_size=batch_size, epochs=epochs, shuffle=True,
                verbose=verbose)
    return classifier


def accuracy(
    classifier: keras.Model, x: np.ndarray, y: np.ndarray, batch_size: int = 1000
) -> float:
    """Fraction of images whose most probable class is the label.

    Args:
        classifier: A model mapping images to class probabilities.
        x: Images in [-1, 1].
        y: Integer labels.
        batch_size: Images per forward pass.

    Returns:
        Accuracy in [0, 1].
    """
    x = _as_images(x)
    probs = np.concatenate(
        [np.asarray(classifier(x[i : i + batch_size], training=False))
         for i in range(0, len(x), batch_size)]
    )
    return float(np.mean(np.argmax(probs, axis=1) == np.asarray(y)))


def load_feature_net(path: str | os.PathLike | None = None) -> keras.Model:
    """Loads a saved feature classifier, by default the shipped MNIST one.

    Args:
        path: A `.keras` file; defaults to the shipped `rlhf_keras/assets/mnist_features.keras`.

    Returns:
        The classifier (images -> class probabilities).

    Raises:
        FeatureNetError: If the file is missing or has no `"features"` layer.
    """
    if path is None:
        # as_file gives a real file even when the package is imported from a zip archive.
        with resources.as_file(shipped_model()) as shipped:
            return load_feature_net(shipped)
    path = Path(path)
    if not path.is_file():
        raise FeatureNetError(
            f"No feature network at {path}. Re-train the MNIST one with `{RETRAIN_COMMAND}` "
            "(trains on the embedded MNIST test split, about 1 minute), reinstall rlhf-keras if "
            "the shipped one is missing, or pass feature_model=."
        )
    model = keras.saving.load_model(path, compile=False)
    try:
        model.get_layer(FEATURE_LAYER)
    except ValueError as err:
        raise FeatureNetError(
            f"{path} has no layer named {FEATURE_LAYER!r}; it is not a feature network made by "
            f"rlhf_keras.feature_net. Re-train it with `{RETRAIN_COMMAND}`."
        ) from err
    return model


def embedding(classifier: keras.Model, layer: str = FEATURE_LAYER) -> keras.Model:
    """The sub-model mapping images to the activations of `layer` (the FID features).

    Args:
        classifier: A classifier built by `build_feature_net` (trained or not).
        layer: Name of the embedding layer.

    Returns:
        A `keras.Model` images -> features.
    """
    return keras.Model(classifier.inputs, classifier.get_layer(layer).output,
                       name=f"{classifier.name}_{layer}")


def random_embedding(input_shape: Sequence[int], seed: int = DEFAULT_SEED) -> keras.Model:
    """A randomly initialised CNN embedding with a fixed seed, for unlabelled image data.

    Naeem et al. (2020, "Reliable Fidelity and Diversity Metrics for Generative Models") show
    that random CNN embeddings give meaningful precision/recall/density/coverage when no trained
    network fits the data. Values are comparable only for the same `input_shape` and `seed`.

    Args:
        input_shape: Shape of one image.
        seed: Seed of the weights; fixed so every evaluation uses the same embedding.

    Returns:
        A `keras.Model` images -> 128 features.
    """
    return embedding(build_feature_net(input_shape, num_classes=2, seed=seed))


def _as_images(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype="float32")
    if x.ndim == 2 and x.shape[1] == 784:
        x = x.reshape(-1, 28, 28, 1)
    elif x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise ValueError(
            f"Expected images shaped (N, height, width, channels) or (N, 784); got {x.shape}."
        )
    return x


def main(argv: Sequence[str] | None = None) -> int:
    """Trains the shipped MNIST feature network and prints its held-out accuracy.

    Trains on the first 8,000 images of the MNIST test split (file order; by default the copy
    embedded in the package) and scores the last 2,000, then saves the classifier over the
    shipped `rlhf_keras/assets/mnist_features.keras` (or `--out`).

    Args:
        argv: Command-line arguments (`--data`, `--epochs`, `--seed`, `--out`).

    Returns:
        0 on success, 1 if the held-out accuracy is below 98%.
    """
    parser = argparse.ArgumentParser(prog="python -m rlhf_keras.feature_net",
                                     description=main.__doc__.splitlines()[0])
    parser.add_argument("--data", default=None,
                        help="folder with the MNIST t10k IDX gzip files (10,000 images); "
                             "default: the MNIST test split embedded in the package")
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--out", default=str(default_model_path()))
    args = parser.parse_args(argv)
    from rlhf_keras import data as data_lib

    # File order, not shuffled: the split is exactly "first 8,000 / last 2,000". The embedded
    # copy, not load("mnist"): TFDS (when prepared) stores the test split in another order.
    if args.data is None:
        x, y, _ = data_lib.embedded_mnist()
    else:
        x, y, _ = data_lib.load_arrays(args.data, split="test")
    classifier = train_feature_net(x[:TRAIN_SIZE], y[:TRAIN_SIZE], num_classes=10,
                                   epochs=args.epochs, seed=args.seed, verbose=2)
    acc = accuracy(classifier, x[TRAIN_SIZE:], y[TRAIN_SIZE:])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    classifier.save(out)
    print(json.dumps({"held_out_accuracy": round(acc, 4), "train_images": TRAIN_SIZE,
                      "held_out_images": len(x) - TRAIN_SIZE, "epochs": args.epochs,
                      "seed": args.seed, "path": str(out),
                      "size_bytes": out.stat().st_size}))
    return 0 if acc >= 0.98 else 1


if __name__ == "__main__":
    raise SystemExit(main())
