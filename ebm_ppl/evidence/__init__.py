"""Evidence and log Z: annealed importance sampling / SMC with Jarzynski or MCMC moves.

Modules: :mod:`.resampling` (weights, ESS, systematic resampling).
"""

from .resampling import (
    conditional_ess,
    ess,
    ess_fraction,
    log_mean_exp,
    normalize_log_weights,
    resample_if,
    systematic_resample,
)

__all__ = [
    "conditional_ess", "ess", "ess_fraction", "log_mean_exp", "normalize_log_weights",
    "resample_if", "systematic_resample",
]
