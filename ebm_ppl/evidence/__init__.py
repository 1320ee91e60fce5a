"""Evidence and log Z: annealing with Jarzynski or MCMC moves, honest errors, BAR check.

* `resampling` -- log-mean-exp, ESS, systematic and multinomial resampling, the
  genealogy variance of log Z (shared with spins).
* `schedules` -- fixed and adaptive (conditional-ESS) schedules.
* `paths` -- geometric path from a reference; likelihood tempering of a model.
* `options` -- ``AnnealOptions``, the validated options of a run, passed whole.
* `engine` -- the one annealing loop ``anneal`` (reweight, resample, move).
* `moves` -- Jarzynski (ULA, eq. 102-103), MALA, HMC and NUTS moves.
* `reference` -- automatic multi-mode reference (Laplace mixture, or a GMM
fitted to a
  pilot run).
* `bar` -- BAR between forward and reverse passes.
* `api` -- ``log_partition`` and ``log_evidence`` (input checks, options, path, reference);
  the run itself in the private `_run` (with `_walkers`, the bias probe and verdict of
  `_probe`, the pilot of `_pilot`, a model's extras in `_model_result`); `result` --
  ``EvidenceResult``.
* `batch` -- ``log_evidence_batch``: one model's evidence on K data sets in one compiled run.
* `sbc` -- ``bayes_factor_calibration``: simulation-based calibration of Bayes factors.
* `bridge` -- ``bridge_sampling``: the evidence from posterior draws you already
have.
* `compare` -- ``compare_evidence``: the table of log Z, Bayes factors,
probabilities.
* `fingerprint` -- the observed-data fingerprint every evidence result
records.
* `conjugate` -- conjugate models with exact evidence (tests, teaching).
"""

from .api import DEFAULT_METHOD, METHODS, log_evidence, log_partition
from .batch import EvidenceBatch, log_evidence_batch
from .sbc import BayesFactorCalibration, bayes_factor_calibration
from .engine import AnnealOutput, MoveInfo, anneal
from .options import AnnealOptions
from .paths import LinearPath, PathState, geometric_path, tempering_path
from .reference import auto_reference, find_modes, fit_gaussian_mixture, pilot_reference
from .resampling import (
    conditional_ess,
    ess,
    ess_fraction,
    genealogy_relative_variance,
    log_mean_exp,
    mode_guarded_resample_if,
    multinomial_resample,
    normalize_log_weights,
    resample_if,
    systematic_resample,
)
from .result import EvidenceResult
from .bridge import BridgeResult, bridge_sampling
from .compare import compare_evidence, evidence_error
from .fingerprint import observed_fingerprint
from .schedules import Adaptive

__all__ = [
    "log_partition", "log_evidence", "log_evidence_batch", "EvidenceBatch", "EvidenceResult",
    "bayes_factor_calibration", "BayesFactorCalibration", "METHODS", "DEFAULT_METHOD",
    "anneal", "AnnealOptions", "AnnealOutput", "MoveInfo", "LinearPath", "PathState", "geometric_path",
    "tempering_path", "auto_reference", "find_modes", "fit_gaussian_mixture", "pilot_reference",
    "Adaptive",
    "conditional_ess", "ess", "ess_fraction", "log_mean_exp", "normalize_log_weights",
    "resample_if", "systematic_resample", "multinomial_resample", "genealogy_relative_variance",
    "mode_guarded_resample_if",
    "bridge_sampling", "BridgeResult", "observed_fingerprint", "compare_evidence",
    "evidence_error",
]
