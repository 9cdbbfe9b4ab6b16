"""The articles' import path: `from rlhf import RLHF` is `rlhf_keras.RLHF`."""

from rlhf_keras import *  # noqa: F403
from rlhf_keras import __all__  # noqa: F401
