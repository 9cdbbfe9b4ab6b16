"""rlhf_keras: tune Keras GANs with reinforcement learning.

Three rooms, imports flowing one way (model -> evidence -> search):

- the model: `GAN` (gan.py) and the articles' `architectures`;
- the evidence: `data` loaders, quality `metrics`, `reports` (pictures);
- the search: the REINFORCE `policy`, `ReinforceOracle` (a keras-tuner Oracle) and `RLHF`.
"""

from rlhf_keras import architectures, board, data, metrics, reports
from rlhf_keras.data import DataError, DataInfo
from rlhf_keras.finetune import RLHF
from rlhf_keras.gan import GAN
from rlhf_keras.hypermodel import default_search_space
from rlhf_keras.metrics import FIDCallback, fid, quality
from rlhf_keras.oracle import ReinforceOracle
from rlhf_keras.trajectory_oracle import TrajectoryOracle
from rlhf_keras.tuner import ContinuingTuner

__version__ = "0.1.0"
__all__ = [
    "GAN",
    "DataError",
    "DataInfo",
    "FIDCallback",
    "architectures",
    "board",
    "data",
    "fid",
    "metrics",
    "quality",
    "reports",
    "ReinforceOracle",
    "TrajectoryOracle",
    "ContinuingTuner",
    "RLHF",
    "default_search_space",
]
