"""Architecture builders and width scaling."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import layers

from rlhf_keras import GAN, architectures


def widths(model: keras.Sequential) -> list[int]:
    return [
        getattr(layer, "units", None) or layer.filters
        for layer in model.layers
        if isinstance(layer, (layers.Dense, layers.Conv2D, layers.Conv2DTranspose))
    ]


def test_seed_mlp_is_the_first_articles_model():
    generator, discriminator = architectures.seed_mlp()
    assert widths(generator) == [256, 512, 1024, 784]
    assert widths(discriminator) == [1024, 512, 256, 1]
    assert generator.layers[-1].activation.__name__ == "tanh"
    assert discriminator.layers[-1].activation.__name__ == "sigmoid"
    assert generator.input_shape == (None, 100)


def test_small_mlp_is_the_second_articles_model_and_width_scales_hidden_only():
    generator, discriminator = architectures.small_mlp(width=0.5)
    assert widths(generator) == [64, 64, 784]
    assert widths(discriminator) == [64, 64, 1]


def test_points_get_a_linear_output_images_a_tanh():
    generator, _ = architectures.small_mlp(data_shape=(2,))
    assert generator.layers[-1].activation.__name__ == "linear"
    generator, _ = architectures.small_mlp(data_shape=(784,))
    assert generator.layers[-1].activation.__name__ == "tanh"
    generator, _ = architectures.small_mlp(data_shape=(2,), output_activation="tanh")
    assert generator.layers[-1].activation.__name__ == "tanh"


def test_image_shaped_mlp_reshapes_its_output():
    generator, discriminator = architectures.seed_mlp(data_shape=(28, 28, 1), width=0.25)
    assert generator.output_shape == (None, 28, 28, 1)
    assert GAN(generator, discriminator).data_shape == (28, 28, 1)


@pytest.mark.parametrize("factor", [0.25, 0.3, 2.0])
def test_scale_widths_keeps_the_output_layer_and_shapes(factor):
    generator, discriminator = architectures.dcgan(latent_dim=16)
    scaled_g = architectures.scale_widths(generator, factor)
    scaled_d = architectures.scale_widths(discriminator, factor)
    assert scaled_g.output_shape == (None, 28, 28, 1)
    assert scaled_d.output_shape == (None, 1)
    assert widths(scaled_d)[0] == max(1, round(32 * factor))
    assert widths(scaled_g)[-1] == 1
    z = np.zeros((2, 16), "float32")
    assert scaled_d(scaled_g(z)).shape == (2, 1)


def test_scale_widths_of_unbuilt_article_models():
    generator = keras.Sequential([layers.Dense(256, activation="relu"), layers.Dense(784)])
    scaled = architectures.scale_widths(generator, 2)
    assert not scaled.built
    scaled.build((None, 100))
    assert widths(scaled) == [512, 784]


def test_scale_widths_by_one_keeps_trained_weights():
    generator, _ = architectures.small_mlp(data_shape=(2,), latent_dim=4)
    clone = architectures.scale_widths(generator, 1)
    assert clone is not generator
    for a, b in zip(generator.get_weights(), clone.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_scale_widths_rejects_bad_input():
    with pytest.raises(ValueError, match="must be > 0"):
        architectures.scale_widths(keras.Sequential([layers.Dense(2)]), 0)
    with pytest.raises(TypeError, match="needs a keras.Sequential"):
        architectures.scale_widths(object(), 1)
    with pytest.raises(ValueError, match="Unknown architecture 'vae'"):
        architectures.build("vae", (784,))
