"""ebm_ppl: energy-based models for probabilistic programming on NumPyro/JAX.

An energy U(x) defines rho(x) = exp(-U(x)) / Z. This package samples rho with kernels that
plug into ``numpyro.infer.MCMC`` and estimates log Z (the evidence of a NumPyro model).
"""

from . import diagnostics, kernels, persist, plots, spins, targets, tempering, training, weights
from .compilation import CompileClock, _enable_from_environment, enable_compilation_cache
from .energy import Energy, ModelEnergy, as_energy, energy_from_fn, energy_from_model
from .errors import SamplingDivergedError
from .evidence import (BayesFactorCalibration, BridgeResult, EvidenceBatch, EvidenceResult, bridge_sampling,
                       compare_evidence, log_evidence, log_evidence_batch, log_partition,
                       bayes_factor_calibration)
from .mcmc import (MALA, RWMH, ULA, Jarzynski, LangevinSamplerState, NonFiniteDrawWarning,
                   PureKernelSampler, SamplerState, StateFieldError)
from .tempering import ParallelTempering, parallel_tempering
from .training import (EnergyFamily, TrainResult, gaussian_mixture_energy, mlp_energy,
                       train)

__version__ = "0.1.0"

__all__ = [
    "Energy", "ModelEnergy", "as_energy", "energy_from_fn", "energy_from_model",
    "SamplingDivergedError", "MALA", "RWMH", "ULA", "PureKernelSampler", "SamplerState",
    "LangevinSamplerState", "NonFiniteDrawWarning", "StateFieldError",
    "EvidenceResult", "log_evidence", "log_partition", "Jarzynski", "log_evidence_batch",
    "EvidenceBatch", "bayes_factor_calibration", "BayesFactorCalibration",
    "training", "train", "TrainResult", "EnergyFamily", "gaussian_mixture_energy", "mlp_energy",
    "kernels", "targets", "diagnostics", "plots", "weights", "spins", "tempering", "persist",
    "ParallelTempering", "parallel_tempering", "bridge_sampling", "BridgeResult",
    "compare_evidence", "__version__", "CompileClock", "enable_compilation_cache",
]

_enable_from_environment()  # EBM_PPL_COMPILATION_CACHE=dir turns on the persistent cache
