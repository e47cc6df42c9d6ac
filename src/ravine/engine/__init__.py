"""How any algorithm runs: the optimizer base class, multi-tensor lists, state and hyperparameter views."""

from ravine.engine.optimizer import Optimizer
from ravine.engine.tensorlist import TensorList
from ravine.engine.views import Hyper, StateView

__all__ = ["Hyper", "Optimizer", "StateView", "TensorList"]
