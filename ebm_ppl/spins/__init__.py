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

__all__ = [
    "T_CRITICAL", "SpinExact", "curie_weiss_exact", "curie_weiss_log_z", "enumerate_exact",
    "ising_exact", "ising_log_z", "ising_transfer_matrix", "onsager_magnetization",
    "SpinInfo", "SpinState", "check_spins", "gibbs_sweep", "heat_bath_prob", "metropolis_prob",
    "metropolis_sweep", "spin_init", "spin_sweep",
    "BoltzmannMachine", "CurieWeiss", "Ising", "SpinModel", "TemperedSpinModel",
    "greedy_coloring", "SpinGibbs", "SpinMetropolis",
    "Hopfield", "corrupt", "random_patterns", "retrieval_curve",
    "log_partition", "spin_move", "SpinWalkers",
]
