"""Pure kernels: ``init(position, potential_fn) -> state`` and
``step(key, state, potential_fn, step_size) -> (state, info)`` on a flat position.

State carries only what the next step needs (position, energy, gradient); ``info`` carries
diagnostics. Each gradient kernel costs exactly one ``value_and_grad`` per step.
"""

import warnings

from .langevin import (
    MAX_DELTA_ENERGY,
    LangevinState,
    StepInfo,
    langevin_init,
    langevin_log_ratio,
    mala_step,
    ula_move,
    ula_step,
)
from .jarzynski import JarzynskiInfo, JarzynskiState, jarzynski_init, jarzynski_step
from .metric import Metric, make_metric
from .rwmh import RWState, rwmh_init, rwmh_step

__all__ = [
    "MAX_DELTA_ENERGY", "LangevinState", "StepInfo", "langevin_init", "langevin_log_ratio", "mala_step",
    "ula_move", "ula_step", "RWState", "rwmh_init", "rwmh_step",
    "JarzynskiState", "JarzynskiInfo", "jarzynski_init", "jarzynski_step", "Metric", "make_metric",
]


def __getattr__(name):
    if name == "MoveInfo":  # renamed: the evidence engine's MoveInfo is a different class
        warnings.warn("ebm_ppl.kernels.MoveInfo is now ebm_ppl.kernels.StepInfo (the per-step "
                      "info of a kernel); ebm_ppl.evidence.MoveInfo is the annealing moves' info",
                      DeprecationWarning, stacklevel=2)
        return StepInfo
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
