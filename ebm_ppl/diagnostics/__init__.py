"""Diagnostics built on ArviZ >= 1: MCMC summaries, importance-weight checks, divergences from
samples (seed eq. 48), mode masses, the sampler-bias report (seed Example 4.1) and kernel
Stein discrepancies (bias measured from the score alone, issue 19)."""

from .bias import BiasReport, sampler_bias_report
from .divergences import (divergences_by_quadrature, fisher_divergence, kl_divergence,
                          log_density, remark31_mixtures)
from .modes import mode_masses
from .stein import SteinDiscrepancy, make_preconditioner, stein_discrepancy
from .stein_gof import SteinTest, stein_test
from .stein_thinning import stein_thin
from .step_size import StepSizeSelection, select_step_size
from .summary import (convergence, is_weighted, summary, to_datatree, weighted_datatree,
                      weighted_summary)
from .weights import (KHAT_BAD, KHAT_GOOD, Estimate, ImportanceWeightWarning, ParetoKHat,
                      kish_ess, normalized_weights, pareto_khat, psis, resample,
                      systematic_indices, weighted_mean)

# Public entry points first (the API page renders in this order), then result classes, then
# building blocks.
__all__ = [
    "summary", "convergence", "mode_masses", "sampler_bias_report", "kish_ess", "pareto_khat",
    "psis", "weighted_mean", "stein_discrepancy", "stein_test", "stein_thin", "select_step_size",
    "kl_divergence", "fisher_divergence", "divergences_by_quadrature", "weighted_summary",
    "weighted_datatree", "to_datatree", "is_weighted",
    "Estimate", "ParetoKHat", "BiasReport", "SteinDiscrepancy", "SteinTest", "StepSizeSelection",
    "ImportanceWeightWarning", "KHAT_GOOD", "KHAT_BAD",
    "normalized_weights", "resample", "systematic_indices", "log_density", "remark31_mixtures",
    "make_preconditioner",
]
