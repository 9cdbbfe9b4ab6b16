"""rlhf_keras: tune Keras GANs with reinforcement learning."""

from rlhf_keras.gan import GAN

__version__ = "0.1.0"
__all__ = ["GAN"]
