"""What each algorithm computes: one short file each, readable as its paper's pseudo-code."""

from ravine.algorithms.adadelta import Adadelta
from ravine.algorithms.adafactor import Adafactor
from ravine.algorithms.adagrad import Adagrad
from ravine.algorithms.adam import Adam, AdamW
from ravine.algorithms.adamax import Adamax
from ravine.algorithms.ademamix import AdEMAMix
from ravine.algorithms.adopt import ADOPT
from ravine.algorithms.asgd import ASGD
from ravine.algorithms.lbfgs import LBFGS
from ravine.algorithms.lion import Lion
from ravine.algorithms.muon import Muon
from ravine.algorithms.muon_with_aux_adam import MuonWithAuxAdam
from ravine.algorithms.nadam import NAdam
from ravine.algorithms.radam import RAdam
from ravine.algorithms.rmsprop import RMSprop
from ravine.algorithms.rprop import Rprop
from ravine.algorithms.schedule_free import ScheduleFreeAdamW, ScheduleFreeRAdam, ScheduleFreeSGD
from ravine.algorithms.sgd import SGD
from ravine.algorithms.sparse_adam import SparseAdam

__all__ = [
    "ADOPT",
    "ASGD",
    "LBFGS",
    "SGD",
    "AdEMAMix",
    "Adadelta",
    "Adafactor",
    "Adagrad",
    "Adam",
    "AdamW",
    "Adamax",
    "Lion",
    "Muon",
    "MuonWithAuxAdam",
    "NAdam",
    "RAdam",
    "RMSprop",
    "Rprop",
    "ScheduleFreeAdamW",
    "ScheduleFreeRAdam",
    "ScheduleFreeSGD",
    "SparseAdam",
]
