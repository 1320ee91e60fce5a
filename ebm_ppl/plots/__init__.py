"""Figures (matplotlib): every function returns a ``Figure`` and never calls ``show()``.

Seed figures (`seed`), MCMC diagnostics through ArviZ (`mcmc`),
and runs of the
evidence, training and spin parts (`runs`).
"""

from .compare import plot_evidence_comparison
from .mcmc import plot_bias_report, plot_rank, plot_trace
from .runs import ising_exact_curves, plot_evidence, plot_ising, plot_training
from .seed import kl_fisher_curves, plot_figure1, plot_kl_vs_fisher, plot_ula_covariance
from .stein import plot_step_size_selection

__all__ = [
    "plot_bias_report", "plot_rank", "plot_trace", "ising_exact_curves", "plot_evidence",
    "plot_ising", "plot_training", "kl_fisher_curves", "plot_figure1", "plot_kl_vs_fisher",
    "plot_ula_covariance", "plot_evidence_comparison", "plot_step_size_selection",
]
