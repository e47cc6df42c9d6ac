"""How any algorithm runs: the contract and step driver, the eager and fused runners, and what updates see."""

from ravine.engine.optimizer import PATHS_BY_KIND, MathKind, Optimizer
from ravine.engine.tensorlist import TensorList
from ravine.engine.views import Hyper, StateView

__all__ = ["PATHS_BY_KIND", "Hyper", "MathKind", "Optimizer", "StateView", "TensorList"]
