"""ravine: PyTorch optimizers written once, run per tensor or multi-tensor, exact to their references."""

from ravine import grads, schedules
from ravine.algorithms import (
    ADOPT,
    ASGD,
    LBFGS,
    SGD,
    Adadelta,
    Adafactor,
    Adagrad,
    Adam,
    Adamax,
    AdamW,
    AdEMAMix,
    Lion,
    Muon,
    MuonWithAuxAdam,
    NAdam,
    RAdam,
    RMSprop,
    Rprop,
    ScheduleFreeAdamW,
    ScheduleFreeRAdam,
    ScheduleFreeSGD,
    SparseAdam,
)
from ravine.engine import Optimizer, TensorList
from ravine.ewa import EWA
from ravine.factory import available_optimizers, create_optimizer
from ravine.fsdp import pack_shards
from ravine.groups import param_groups
from ravine.lookahead import Lookahead
from ravine.memory import state_bytes
from ravine.muon_routing import MuonGroups, muon_param_groups
from ravine.weight_ema import WeightEMA

__version__ = "0.1.0"

__all__ = [
    "ADOPT",
    "ASGD",
    "EWA",
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
    "Lookahead",
    "Muon",
    "MuonGroups",
    "MuonWithAuxAdam",
    "NAdam",
    "Optimizer",
    "RAdam",
    "RMSprop",
    "Rprop",
    "ScheduleFreeAdamW",
    "ScheduleFreeRAdam",
    "ScheduleFreeSGD",
    "SparseAdam",
    "TensorList",
    "WeightEMA",
    "__version__",
    "available_optimizers",
    "create_optimizer",
    "grads",
    "muon_param_groups",
    "pack_shards",
    "param_groups",
    "schedules",
    "state_bytes",
]
