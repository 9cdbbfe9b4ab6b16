"""Generator/discriminator builders from the articles, and `scale_widths` for the tuner.

Every builder returns `(generator, discriminator)` as two `keras.Sequential` models whose
hidden layers are multiplied by `width`; output layers are never scaled.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras
from keras import layers

ARCHITECTURES = ("seed", "small", "dcgan")


def _units(n: int, width: float) -> int:
    return max(1, int(round(n * width)))


def _flat_size(data_shape: Sequence[int]) -> int:
    return int(math.prod(data_shape))


def is_points(data_shape: Sequence[int]) -> bool:
    """Low-dimensional points (2-D/3-D coordinates) rather than images or feature vectors."""
    return len(data_shape) == 1 and int(data_shape[0]) <= 3


def seed_mlp(
    data_shape: Sequence[int] = (784,),
    latent_dim: int = 100,
    width: float = 1.0,
    output_activation: str | None = None,
) -> tuple[keras.Sequential, keras.Sequential]:
    """The first article's MLPs: G Dense 256-512-1024-out (tanh), D Dense 1024-512-256-1 (sigmoid).

    Args:
        data_shape: Shape of one sample, e.g. `(784,)`, `(28, 28, 1)` or `(2,)`.
        latent_dim: Size of the generator's input.
        width: Multiplier of every hidden layer's units.
        output_activation: The generator's output activation. None: `"tanh"` for images
            (data in [-1, 1], as in the articles), `"linear"` for 2-D/3-D points, whose
            coordinates are unbounded (grid25's modes sit at +-4).

    Returns:
        `(generator, discriminator)`, built for `latent_dim` and `data_shape`.
    """
    return _mlp_pair(
        data_shape, latent_dim, [256, 512, 1024], [1024, 512, 256], width, output_activation
    )


def small_mlp(
    data_shape: Sequence[int] = (784,),
    latent_dim: int = 100,
    width: float = 1.0,
    hidden: int = 128,
    output_activation: str | None = None,
) -> tuple[keras.Sequential, keras.Sequential]:
    """The second article's MLPs: two hidden ReLU layers of `hidden` units, tanh / sigmoid outputs.

    Args:
        data_shape: Shape of one sample.
        latent_dim: Size of the generator's input (the article's `input_size` = 100).
        width: Multiplier of every hidden layer's units.
        hidden: Hidden units before scaling (the article's `hidden_size` = 128).
        output_activation: As for `seed_mlp`.

    Returns:
        `(generator, discriminator)`, built for `latent_dim` and `data_shape`.
    """
    return _mlp_pair(
        data_shape, latent_dim, [hidden, hidden], [hidden, hidden], width, output_activation
    )


def _mlp_pair(
    data_shape: Sequence[int],
    latent_dim: int,
    g_hidden: Sequence[int],
    d_hidden: Sequence[int],
    width: float,
    output_activation: str | None,
) -> tuple[keras.Sequential, keras.Sequential]:
    data_shape = tuple(int(d) for d in data_shape)
    if output_activation is None:
        output_activation = "linear" if is_points(data_shape) else "tanh"
    g_layers: list[layers.Layer] = [keras.Input((latent_dim,))]
    g_layers += [layers.Dense(_units(n, width), activation="relu") for n in g_hidden]
    g_layers.append(layers.Dense(_flat_size(data_shape), activation=output_activation))
    if len(data_shape) > 1:
        g_layers.append(layers.Reshape(data_shape))
    d_layers: list[layers.Layer] = [keras.Input(data_shape)]
    if len(data_shape) > 1:
        d_layers.append(layers.Flatten())
    d_layers += [layers.Dense(_units(n, width), activation="relu") for n in d_hidden]
    d_layers.append(layers.Dense(1, activation="sigmoid"))
    return (
        keras.Sequential(g_layers, name="generator"),
        keras.Sequential(d_layers, name="discriminator"),
    )


def dcgan(
    data_shape: Sequence[int] = (28, 28, 1), latent_dim: int = 100, width: float = 1.0
) -> tuple[keras.Sequential, keras.Sequential]:
    """A small DCGAN-style convolutional pair for 28x28 images.

    Args:
        data_shape: `(28, 28, channels)`.
        latent_dim: Size of the generator's input.
        width: Multiplier of every hidden layer's filters/units.

    Returns:
        `(generator, discriminator)`; D outputs a logit.
    """
    data_shape = tuple(int(d) for d in data_shape)
    if len(data_shape) != 3 or data_shape[:2] != (28, 28):
        raise ValueError(
            f"The dcgan architecture makes 28x28 images; the data has shape {data_shape}. "
            "Use arch 'seed' or 'small' (MLPs) for other shapes."
        )
    f1, f2 = _units(64, width), _units(32, width)
    generator = keras.Sequential(
        [
            keras.Input((latent_dim,)),
            layers.Dense(7 * 7 * f1),
            layers.LeakyReLU(0.2),
            layers.Reshape((7, 7, f1)),
            layers.Conv2DTranspose(f2, 4, strides=2, padding="same"),
            layers.LeakyReLU(0.2),
            layers.Conv2DTranspose(data_shape[-1], 4, strides=2, padding="same", activation="tanh"),
        ],
        name="generator",
    )
    discriminator = keras.Sequential(
        [
            keras.Input(data_shape),
            layers.Conv2D(f2, 4, strides=2, padding="same"),
            layers.LeakyReLU(0.2),
            layers.Conv2D(f1, 4, strides=2, padding="same"),
            layers.LeakyReLU(0.2),
            layers.Flatten(),
            layers.Dense(1),
        ],
        name="discriminator",
    )
    return generator, discriminator


def build(
    arch: str, data_shape: Sequence[int], latent_dim: int = 100, width: float = 1.0
) -> tuple[keras.Sequential, keras.Sequential]:
    """Builds a named architecture: `"seed"` (first article), `"small"` (second) or `"dcgan"`."""
    builders = {"seed": seed_mlp, "small": small_mlp, "dcgan": dcgan}
    if arch not in builders:
        raise ValueError(
            f"Unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}."
        )
    return builders[arch](data_shape=data_shape, latent_dim=latent_dim, width=width)


_SCALABLE = {
    layers.Dense: "units",
    layers.Conv1D: "filters",
    layers.Conv2D: "filters",
    layers.Conv2DTranspose: "filters",
    layers.Conv3D: "filters",
}


def scale_widths(
    model: keras.Sequential, factor: float, keep_weights: bool = True
) -> keras.Sequential:
    """Clones a Sequential with every Dense/Conv layer's units or filters scaled, except the last.

    The output layer keeps its size, so the clone still produces (or accepts) the same shapes.
    Layers that depend on the previous width (e.g. a `Reshape` after a Dense) must be
    width-agnostic. The clone has fresh weights, except with `factor == 1` and
    `keep_weights`, where a built original's weights are copied.

    Args:
        model: A `keras.Sequential`, built or not.
        factor: Width multiplier (> 0).
        keep_weights: At `factor == 1`, copy the original's weights (fine-tuning) instead of
            initialising afresh.

    Returns:
        A new `keras.Sequential`.
    """
    if not isinstance(model, keras.Sequential):
        raise TypeError(f"scale_widths needs a keras.Sequential, got {type(model).__name__}.")
    if not factor > 0:
        raise ValueError(f"The width factor must be > 0, got {factor}.")
    scalable = [i for i, layer in enumerate(model.layers) if type(layer) in _SCALABLE]
    last_scalable = scalable[-1] if scalable else -1
    input_shape = _sequential_input_shape(model)
    new_layers: list[layers.Layer] = [keras.Input(input_shape[1:])] if input_shape else []
    for i, layer in enumerate(model.layers):
        config = layer.get_config()
        attr = _SCALABLE.get(type(layer))
        reshape = _following_reshape(model.layers, i)
        if attr and i != last_scalable and reshape is not None:
            # A Dense that projects into a Reshape (the DCGAN stem) scales the channel axis only.
            channels = _units(reshape.target_shape[-1], factor)
            config[attr] = math.prod(reshape.target_shape[:-1]) * channels
        elif attr and i != last_scalable:
            config[attr] = _units(config[attr], factor)
        elif isinstance(layer, layers.Reshape) and i < last_scalable:
            target = tuple(config["target_shape"])
            config["target_shape"] = (*target[:-1], _units(target[-1], factor))
        new_layers.append(type(layer).from_config(config))
    clone = keras.Sequential(new_layers, name=model.name)
    if keep_weights and factor == 1 and model.built and input_shape:
        clone.set_weights(model.get_weights())
    return clone


def _following_reshape(model_layers: list, index: int) -> layers.Reshape | None:
    """The Reshape fed by the Dense at `index`, before any other scalable layer, if any."""
    if not isinstance(model_layers[index], layers.Dense):
        return None
    for layer in model_layers[index + 1 :]:
        if isinstance(layer, layers.Reshape):
            return layer
        if type(layer) in _SCALABLE:
            return None
    return None


def _sequential_input_shape(model: keras.Sequential) -> tuple | None:
    if not model.built:
        return None
    try:
        return tuple(model.input_shape)
    except (AttributeError, ValueError):
        return None
