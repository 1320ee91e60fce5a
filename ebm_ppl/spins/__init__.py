"""Spin systems on {-1, +1}^N: energies with exact answers, spin-flip kernels, free energies.

Seed Appendix A (eq. 107-110), section 4 (Gibbs sampling, parallel tempering) and section 5
(free energy). Parallel tempering over any kernel lives in [`ebm_ppl.tempering`][ebm_ppl.tempering].
"""

from .exact import (
    T_CRITICAL,
    SpinExact,
    curie_weiss_exact,
    curie_weiss_log_z,
    enumerate_exact,
    ising_exact,
    ising_log_z,
    ising_transfer_matrix,
    onsager_magnetization,
)
from .free_energy import SpinWalkers, log_partition, spin_move
from .hopfield import Hopfield, corrupt, random_patterns, retrieval_curve
from .kernels import (
    SpinInfo,
    SpinState,
    check_spins,
    gibbs_sweep,
    heat_bath_prob,
    metropolis_prob,
    metropolis_sweep,
    spin_init,
    spin_sweep,
)
from .models import (
    BoltzmannMachine,
    CurieWeiss,
    Ising,
    SpinModel,
    TemperedSpinModel,
    greedy_coloring,
)
from .samplers import SpinGibbs, SpinMetropolis

# Public entry points first (the API page renders in this order): models, exact answers, free
# energies and samplers; then results and the kernels' building blocks.
__all__ = [
    "Ising", "CurieWeiss", "BoltzmannMachine", "Hopfield", "SpinModel",
    "ising_exact", "ising_log_z", "T_CRITICAL", "onsager_magnetization", "curie_weiss_exact",
    "curie_weiss_log_z", "enumerate_exact", "ising_transfer_matrix", "log_partition",
    "SpinGibbs", "SpinMetropolis", "random_patterns", "corrupt", "retrieval_curve",
    "SpinExact", "SpinState", "SpinInfo", "SpinWalkers", "TemperedSpinModel",
    "gibbs_sweep", "metropolis_sweep", "spin_sweep", "spin_init", "heat_bath_prob",
    "metropolis_prob", "check_spins", "spin_move", "greedy_coloring",
]
