"""EBM training (seed sections 2.1, 6.1, 6.2): ``ep.train`` with CD, PCD, Jarzynski-reweighted
ULA (eq. 102-106), score matching (exact/Hutchinson), DSM, SSM and NCE, each a gradient
estimator feeding an unchanged optax optimizer; plus energy families to start from."""

from .checkpoint import CheckpointError
from .families import EnergyFamily, gaussian_mixture_energy, mixture_weights, mlp_energy
from .result import TrainResult
from .train import METHODS, train

__all__ = ["train", "TrainResult", "METHODS", "CheckpointError", "EnergyFamily",
           "gaussian_mixture_energy", "mixture_weights", "mlp_energy"]
