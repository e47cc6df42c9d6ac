"""ravine: PyTorch optimizers written once, run per tensor or multi-tensor, exact to their references."""

from ravine.algorithms import ADOPT, SGD, Adagrad, Adam, AdamW, Lion, RMSprop
from ravine.engine import Optimizer, TensorList
from ravine.lookahead import Lookahead

__version__ = "0.1.0"

__all__ = [
    "ADOPT",
    "SGD",
    "Adagrad",
    "Adam",
    "AdamW",
    "Lion",
    "Lookahead",
    "Optimizer",
    "RMSprop",
    "TensorList",
    "__version__",
]
