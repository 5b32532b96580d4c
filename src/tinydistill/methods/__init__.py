"""Methods: which tasks each method trains and the weighted loss terms it sums (:mod:`.registry`, ``METHODS``);
the :class:`Objective` protocol the loop calls; white-box and choice KD objectives."""

from .objective import Objective
from .registry import METHODS, build_method

__all__ = ["METHODS", "Objective", "build_method"]
