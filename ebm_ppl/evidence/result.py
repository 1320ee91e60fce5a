"""The result of a log Z / evidence computation: a small frozen dataclass of plain arrays."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpyro.infer import log_likelihood

from ..diagnostics.summary import weighted_datatree
from ..persist import load_result, register, save_result

from ..weights import ess_fraction, normalize_log_weights
from .reference import fitted_to_pilot

__all__ = ["EvidenceResult", "group_standard_error", "with_log_likelihood"]


def group_standard_error(group_log_z) -> tuple[float, float]:
    """``log mean_g Z_g`` and its delta-method standard error from independent group estimates
    (``se = std(Z_g) / (sqrt(G) mean(Z_g))``)."""
    g = np.asarray(group_log_z, float)
    top = np.max(g)
    if not np.isfinite(top):
        return float("-inf"), float("inf")
    r = np.exp(g - top)
    mean = r.mean()
    se = r.std(ddof=1) / np.sqrt(r.size) / mean if r.size > 1 else float("inf")
    return float(top + np.log(mean)), float(se)


@register
@dataclass(frozen=True)
class EvidenceResult:
    """log Z (or log evidence) with an honest standard error, weighted walkers and history.

    Attributes:
        log_z: the estimate. For the annealing methods ("hmc", "mala", "jarzynski", "nuts")
            and "is": ``log_mean_exp(log_weights)`` over the groups (seed eq. 104). For
            ``method="ti"``: thermodynamic integration ``log Z_0 - int_0^1 E_beta[V] dbeta``
            by the trapezoid rule over ``schedule`` (averaged over the groups); the weights
            then belong to the SMC estimate of the same run, quoted in ``messages``.
        log_z_se: standard error from the spread of ``num_groups`` independent walker groups
            (for "ti", of the groups' TI estimates, without the quadrature error).
        samples: final walkers in the user's structure (constrained values for models).
        log_weights: their log weights; self-normalized averages are exact expectations.
        ess: Kish ESS fraction of the weights at each stage, before resampling.
        schedule: the betas, from 0 to 1.
        num_resamples: stages at which the walkers were resampled.
        num_gradient_evals: target gradient evaluations, all walkers, every pass, plus the
            automatic reference's optimization.
        log_z_bar: the BAR and reverse-pass
            estimates (``bar=True``); ``bar_consistent`` is False when either disagrees with
            ``log_z`` beyond 3 combined standard errors (the reverse estimate is biased high
            and the forward one low when the protocol is too fast: hysteresis).
        log_z_bar_se: See `log_z_bar`.
        log_z_reverse: See `log_z_bar`.
        log_z_reverse_se: See `log_z_bar`.
        walkers: the final walkers as a flat ``(num_walkers, dim)`` ``jax.Array`` in the
            sampler's (unconstrained) coordinates, left on the device(s): sharded over the
            ``"walkers"`` mesh axis when the run had ``devices=`` or ``mesh=``.
        num_dead: walkers whose energy or gradient became non-finite
            (weight zero, removed at the next resampling), in total and per stage.
        num_dead_per_stage: See `num_dead`.
        compile_time: the part of ``wall_time`` spent tracing and compiling (JAX's own
            compile events, [`CompileClock`][ebm_ppl.compilation.CompileClock]); the rest is
            run time. Near zero when a call reuses compiled programs.
        data_fingerprint: a hash of the model's observed data
            ([`log_evidence`][ebm_ppl.evidence.api.log_evidence] only), so
            that [`ebm_ppl.compare_evidence`][ebm_ppl.compare_evidence] refuses evidences of different data.
        log_likelihood: for [`log_evidence`][ebm_ppl.log_evidence], the pointwise log-likelihood of
            each observed site at the walkers (dict of ``(num_walkers, ...)`` arrays).
    """

    log_z: float
    log_z_se: float
    samples: Any
    log_weights: np.ndarray
    ess: np.ndarray
    schedule: np.ndarray
    num_resamples: int
    num_gradient_evals: int
    method: str = ""
    num_walkers: int = 0
    group_log_z: np.ndarray = field(default_factory=lambda: np.zeros(0))
    acceptance: np.ndarray = field(default_factory=lambda: np.zeros(0))
    step_size: np.ndarray = field(default_factory=lambda: np.zeros(0))
    num_dead: int = 0
    num_dead_per_stage: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    log_z_bar: float | None = None
    log_z_bar_se: float | None = None
    log_z_reverse: float | None = None
    log_z_reverse_se: float | None = None
    bar_consistent: bool | None = None
    reference: Any = None
    reference_info: dict = field(default_factory=dict)
    wall_time: float = 0.0
    compile_time: float = 0.0
    messages: tuple = ()
    walkers: Any = None
    log_z_err: float | None = None
    log_z_bias: float | None = None
    log_z_bias_se: float | None = None
    log_z_probe: float | None = None
    log_z_probe_se: float | None = None
    probe_walkers: int = 0
    reliable: bool | None = None

    @property
    def total_error(self) -> float:
        """``log_z_err`` when a bias check ran, else ``log_z_se``."""
        return float(self.log_z_se if self.log_z_err is None else self.log_z_err)
    data_fingerprint: str | None = None  # of the observed data (log_evidence; see .fingerprint)
    log_likelihood: Any = None

    @property
    def num_stages(self) -> int:
        return max(len(self.schedule) - 1, 0)

    @property
    def final_ess(self) -> float:
        """Kish ESS fraction of the final log weights."""
        return float(ess_fraction(np.asarray(self.log_weights, float)))

    @property
    def weights(self) -> np.ndarray:
        """Normalized importance weights of ``samples``."""
        return np.exp(normalize_log_weights(np.asarray(self.log_weights, float)))

    def __str__(self) -> str:
        lines = [
            f"EvidenceResult(method={self.method!r}, walkers={self.num_walkers}, "
            f"groups={len(self.group_log_z)})",
            f"  log Z            = {self.log_z:.5f} +- {self.total_error:.5f}"
            + ("" if self.log_z_bias is None else
               f"   (se {self.log_z_se:.5f}, bias {self.log_z_bias:+.5f} +- "
               f"{self.log_z_bias_se:.5f} from probe pools of {self.probe_walkers} walkers)"),
        ]
        if self.reliable is not None:
            lines.append(f"  reliable         = {self.reliable}")
        if self.log_z_bar is not None:
            lines.append(f"  log Z (BAR)      = {self.log_z_bar:.5f} +- {self.log_z_bar_se:.5f}")
            lines.append(f"  log Z (reverse)  = {self.log_z_reverse:.5f} +- "
                         f"{self.log_z_reverse_se:.5f}   consistent: {self.bar_consistent}")
        stage_ess = f"{np.min(self.ess):.2f}" if len(self.ess) else "n/a"
        lines += [
            f"  stages           = {self.num_stages} (resampled at {self.num_resamples}), "
            f"min ESS {stage_ess}, final ESS {self.final_ess:.2f}",
            f"  gradient evals   = {self.num_gradient_evals:,}   wall time {self.wall_time:.2f} s "
            f"({self.compile_time:.2f} s compiling)",
        ]
        if len(self.acceptance):
            lines.append(f"  acceptance       = {np.mean(self.acceptance):.2f} (mean), "
                         f"final step {self.step_size[-1]:.3g}")
        kind = self.reference_info.get("kind", "given")
        info = self.reference_info
        if kind == "auto":
            shape = ("Laplace Gaussian" if info["defensive_weight"] == 0 else
                     f"Laplace mixture + {info['defensive_weight']:.2f} defensive Gaussian")
            lines.append(f"  reference        = auto: {len(info['modes'])} mode(s) from "
                         f"{info['num_starts']} starts ({shape})")
        elif fitted_to_pilot(info):
            k = len(info["pilot_components"]["weights"])
            df = info.get("defensive_df")  # None: a Gaussian (results of earlier releases)
            tail = ("Gaussian" if df is None else "Cauchy" if df == 1.0
                    else f"Student-t (df {df:g})")
            lines.append(f"  reference        = auto: no Laplace mode; {k}-component mixture "
                         f"fitted to a pilot of {info['pilot_walkers']} walkers + "
                         f"{info['defensive_weight']:.2f} broad {tail}")
        else:
            lines.append(f"  reference        = {kind}")
        lines += [f"  note: {m}" for m in self.messages]
        return "\n".join(lines)

    def save(self, path):
        """Write this result to a netCDF file (an ArviZ ``DataTree``: ``posterior`` and
        ``sample_stats`` as in `to_arviz`, plus every field, weights included, stored
        exactly; the ``reference`` object is stored as its description). Returns the path."""
        return save_result(self, path, arviz_tree=self.to_arviz())

    @classmethod
    def load(cls, path) -> "EvidenceResult":
        """Read a result written by `save`; every array and number is bit-identical
        (``reference`` comes back as its description string)."""
        return load_result(path, cls)

    def to_arviz(self):
        """An ArviZ DataTree by the library's rule for weighted results
        ([`ebm_ppl.diagnostics.weighted_datatree`][ebm_ppl.diagnostics.weighted_datatree]): ``posterior`` is
        an equal-weight
        resample of the walkers of size round(Kish ESS), so ``az.summary`` / ``az.loo`` on it
        are right; ``weighted_posterior`` holds every walker with its ``log_weight`` and
        ``weight`` (``ep.diagnostics.summary`` of the tree reads it); ``log_likelihood``
        (results of [`log_evidence`][ebm_ppl.log_evidence]) the pointwise log-likelihood at the
        resampled draws. log Z, the schedule and the stage ESS go in the attributes."""
        attrs = dict(log_z=self.log_z, log_z_se=self.log_z_se, log_z_err=self.total_error,
                     method=self.method,
                     num_gradient_evals=int(self.num_gradient_evals),
                     num_stages=int(self.num_stages))
        if self.log_z_bar is not None:
            attrs.update(log_z_bar=self.log_z_bar, log_z_bar_se=self.log_z_bar_se)
        if self.log_z_bias is not None:
            attrs.update(log_z_bias=self.log_z_bias, log_z_bias_se=self.log_z_bias_se)
        if self.reliable is not None:
            attrs.update(reliable=int(self.reliable))
        dt = weighted_datatree(self.samples, self.log_weights, log_likelihood=self.log_likelihood)
        dt.attrs.update(attrs)
        dt["sample_stats"].attrs.update(
            schedule=np.asarray(self.schedule), stage_ess=np.asarray(self.ess))
        return dt


def with_log_likelihood(result: EvidenceResult, model, model_args=(), model_kwargs=None):
    """``result`` with the pointwise log-likelihood of ``model``'s observed sites at its
    (constrained) walkers, for ``to_arviz()``'s ``log_likelihood`` group (``az.loo``)."""
    if not isinstance(result.samples, dict):
        return result
    try:
        values = log_likelihood(model, result.samples, *model_args, batch_ndims=1,
                                **(model_kwargs or {}))
    except Exception:  # noqa: BLE001 - a model the vectorized replay cannot handle: no group
        return result
    return dataclasses.replace(result, log_likelihood={k: np.asarray(v) for k, v in values.items()})
