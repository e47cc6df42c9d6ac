"""ravine: PyTorch optimizers written once, run per tensor or multi-tensor, exact to their references."""

from ravine import grads, schedules
from ravine.algorithms import ADOPT, SGD, Adagrad, Adam, AdamW, Lion, RMSprop
from ravine.engine import Optimizer, TensorList
from ravine.ewa import EWA
from ravine.factory import available_optimizers, create_optimizer
from ravine.groups import param_groups
from ravine.lookahead import Lookahead

__version__ = "0.1.0"

__all__ = [
    "ADOPT",
    "EWA",
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
    "available_optimizers",
    "create_optimizer",
    "grads",
    "param_groups",
    "schedules",
]
