"""What each algorithm computes: one short file each, readable as its paper's pseudo-code."""

from ravine.algorithms.adagrad import Adagrad
from ravine.algorithms.adam import Adam, AdamW
from ravine.algorithms.adopt import ADOPT
from ravine.algorithms.lion import Lion
from ravine.algorithms.rmsprop import RMSprop
from ravine.algorithms.sgd import SGD

__all__ = ["ADOPT", "SGD", "Adagrad", "Adam", "AdamW", "Lion", "RMSprop"]
