"""Pure kernels: ``init(position, potential_fn) -> state`` and
``step(key, state, potential_fn, step_size) -> (state, info)`` on a flat position.

State carries only what the next step needs (position, energy, gradient); ``info`` carries
diagnostics. Each gradient kernel costs exactly one ``value_and_grad`` per step.
"""

from .langevin import (
    MAX_DELTA_ENERGY,
    LangevinState,
    MoveInfo,
    langevin_init,
    langevin_log_ratio,
    mala_step,
    ula_move,
    ula_step,
)
from .jarzynski import JarzynskiInfo, JarzynskiState, jarzynski_init, jarzynski_step
from .rwmh import RWState, rwmh_init, rwmh_step

__all__ = [
    "MAX_DELTA_ENERGY", "LangevinState", "MoveInfo", "langevin_init", "langevin_log_ratio", "mala_step",
    "ula_move", "ula_step", "RWState", "rwmh_init", "rwmh_step",
    "JarzynskiState", "JarzynskiInfo", "jarzynski_init", "jarzynski_step",
]
