"""The optimizer race: ravine's real optimizers descending 2-D loss surfaces."""

from ravine.race.run import CONTESTANTS, Trajectory, race, tune_all, tuned_lrs
from ravine.race.surfaces import SURFACES, Surface

__all__ = ["CONTESTANTS", "SURFACES", "Surface", "Trajectory", "race", "tune_all", "tuned_lrs"]
