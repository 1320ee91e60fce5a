"""ebm_ppl: energy-based models for probabilistic programming on NumPyro/JAX.

An energy U(x) defines rho(x) = exp(-U(x)) / Z. This package samples rho with kernels that
plug into ``numpyro.infer.MCMC`` and estimates log Z (the evidence of a NumPyro model).
"""

from . import kernels, targets
from . import diagnostics, plots
from .energy import Energy, ModelEnergy, as_energy, energy_from_fn, energy_from_model
from .errors import SamplingDivergedError
from .evidence import EvidenceResult, log_evidence, log_partition
from .mcmc import MALA, RWMH, ULA, Jarzynski, PureKernelSampler, SamplerState
from . import training
from .training import (EnergyFamily, TrainResult, gaussian_mixture_energy, mlp_energy,
                       train)

__version__ = "0.1.0"

__all__ = [
    "Energy", "ModelEnergy", "as_energy", "energy_from_fn", "energy_from_model",
    "SamplingDivergedError", "MALA", "RWMH", "ULA", "PureKernelSampler", "SamplerState",
    "EvidenceResult", "log_evidence", "log_partition", "Jarzynski",
    "training", "train", "TrainResult", "EnergyFamily", "gaussian_mixture_energy", "mlp_energy",
    "kernels", "targets", "diagnostics", "plots", "__version__",
]

# spin systems and replica exchange (issue 5)
from . import spins, tempering  # noqa: E402
from .tempering import ParallelTempering, parallel_tempering  # noqa: E402

__all__ += ["spins", "tempering", "ParallelTempering", "parallel_tempering"]

# evidence from posterior draws and model comparison (issue 16)
from .evidence import BridgeResult, bridge_sampling, compare_evidence  # noqa: E402

__all__ += ["bridge_sampling", "BridgeResult", "compare_evidence"]
