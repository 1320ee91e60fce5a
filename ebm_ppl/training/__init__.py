"""EBM training (seed sections 2.1, 6.1, 6.2): ``ep.train`` with a gradient estimator --
Jarzynski-reweighted ULA (eq. 102-106), CD, PCD, score matching (exact/Hutchinson), DSM, SSM
or NCE, each configured by its own factory the optax way -- feeding an unchanged optax
optimizer; plus energy families to start from."""

import sys as _sys

from . import estimators, loop
from .checkpoint import CheckpointError
from .estimators import (METHODS, Estimator, cd, denoising_score_matching, jarzynski, nce, pcd,
                         score_matching, sliced_score_matching)
from .families import EnergyFamily, gaussian_mixture_energy, mixture_weights, mlp_energy
from .loop import train
from .result import TrainResult

# The driver module was ``ebm_ppl.training.train``, a name the function ``train`` shadows;
# it is ``ebm_ppl.training.loop`` now. The old module path still imports.
_sys.modules.setdefault(__name__ + ".train", loop)

__all__ = ["train", "TrainResult", "METHODS", "CheckpointError", "EnergyFamily",
           "gaussian_mixture_energy", "mixture_weights", "mlp_energy", "Estimator", "jarzynski",
           "cd", "pcd", "score_matching", "denoising_score_matching", "sliced_score_matching",
           "nce", "estimators"]
