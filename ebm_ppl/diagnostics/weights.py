"""Importance weights: Kish ESS, Pareto k-hat, weighted means with standard errors, resampling.

ArviZ has no weighted-sample support (arviz issue #2035), so these sit next to it and hand
back ArviZ objects where that makes sense ([`resample`][ebm_ppl.diagnostics.weights.resample] returns a
``DataTree``).
Weights are always given as *log* weights of shape ``(n,)``; they need not be normalized and
may contain ``-inf`` (a walker with zero weight), never NaN or ``+inf``.

The self-normalized estimate of E_p[f] from draws x_i ~ q with w_i = p(x_i)/q(x_i) (the
weights of seed eq. 104, or any importance weights) is ``sum_i wbar_i f(x_i)`` with
``wbar = w / sum w``; its delta-method variance is ``sum_i wbar_i^2 (f_i - mean)^2``.
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import jax
import numpy as np

from .. import weights as _w
from ..errors import check_key, check_positive
from ..weights import logsumexp


class ImportanceWeightWarning(UserWarning):
    """Pareto k-hat of the weights is above 0.5 (noisy) or 0.7 (unreliable)."""


class Estimate(NamedTuple):
    """A Monte Carlo estimate with its standard error (arrays of the same shape)."""

    value: np.ndarray
    se: np.ndarray

    def z_score(self, truth) -> np.ndarray:
        """(value - truth) / se: how many standard errors away ``truth`` is."""
        return (np.asarray(self.value) - np.asarray(truth)) / np.asarray(self.se)

    def __str__(self) -> str:
        v, s = np.asarray(self.value), np.asarray(self.se)
        if v.ndim == 0:
            return f"{float(v):.6g} +- {float(s):.2g}"
        return "[" + ", ".join(f"{a:.6g} +- {b:.2g}" for a, b in zip(v.ravel(), s.ravel())) + "]"


class ParetoKHat(NamedTuple):
    """Pareto k-hat of importance weights (PSIS, Vehtari et al. 2024).

    ``diagnosis`` is "good" (k < 0.5: finite variance, the estimates converge at the usual
    rate), "ok" (0.5 <= k < 0.7: infinite variance, slow but usable), "bad" (k >= 0.7:
    the estimates are unreliable) or "undetermined" (the fit failed). ``se`` is the
    asymptotic standard error (1 + k)/sqrt(M) of the generalized Pareto shape fitted to the
    M largest weights.
    """

    khat: float
    se: float
    tail_size: int
    diagnosis: str


KHAT_GOOD, KHAT_BAD = 0.5, 0.7


def check_log_weights(log_weights, n: int | None = None, name: str = "log_weights") -> np.ndarray:
    """Return ``log_weights`` as a float64 vector; reject NaN, +inf, all -inf and wrong length."""
    lw = np.asarray(log_weights, dtype=np.float64)
    if lw.ndim != 1:
        raise ValueError(f"{name} must be a vector of shape (n,), got shape {lw.shape}")
    if lw.size == 0:
        raise ValueError(f"{name} is empty")
    if n is not None and lw.size != n:
        raise ValueError(f"{name} has {lw.size} entries but there are {n} samples")
    if np.any(np.isnan(lw)) or np.any(lw == np.inf):
        raise ValueError(f"{name} contains NaN or +inf")
    if np.all(lw == -np.inf):
        raise ValueError(f"{name} are all -inf: every weight is zero")
    return lw


def normalized_weights(log_weights) -> np.ndarray:
    """wbar_i = w_i / sum_j w_j computed stably from log weights."""
    return np.exp(_w.normalize_log_weights(check_log_weights(log_weights)))


def kish_ess(log_weights) -> float:
    """Kish's effective sample size (sum w)^2 / sum w^2 = 1 / sum wbar^2, in [1, n]."""
    return float(_w.ess(check_log_weights(log_weights)))


def _tail_size(n: int, r_eff: float) -> int:
    """Number of largest weights the generalized Pareto is fitted to (as ``psislw`` does)."""
    return int(math.floor(3 * math.sqrt(n / r_eff))) if n * r_eff > 225 else n // 5


def psis(log_weights, *, r_eff: float = 1.0) -> tuple[np.ndarray, float]:
    """Pareto-smoothed log weights (normalized) and k-hat, via ``arviz_stats``' ``psislw``.

    ``psislw`` is written for PSIS-LOO, where the weights are 1/p(y|theta): it expects the
    NEGATED log weights. Passing them un-negated silently fits the wrong tail (k ~ -0.9).
    When the largest weights take fewer than 5 distinct values (equal weights after
    resampling, or group-wise constant ones) there is no tail to fit: the weights are
    bounded, k-hat is reported as -inf and nothing is smoothed.
    """
    from arviz_stats.base import array_stats

    lw = check_log_weights(log_weights)
    finite = np.isfinite(lw)
    smoothed = np.full_like(lw, -np.inf)
    top = np.sort(lw[finite])[-max(_tail_size(int(finite.sum()), r_eff), 1):]
    if np.unique(top).size < 5:
        smoothed[finite] = lw[finite] - logsumexp(lw[finite])
        return smoothed, -math.inf
    sm, khat = array_stats.psislw(-lw[finite], r_eff=r_eff)
    sm = np.asarray(sm, dtype=np.float64)
    smoothed[finite] = sm - logsumexp(sm)
    return smoothed, float(khat)


def pareto_khat(log_weights, *, r_eff: float = 1.0, warn: bool = True) -> ParetoKHat:
    """Pareto k-hat of the importance weights, with its diagnosis and a warning above 0.5/0.7.

    If w = p/q has a tail P(w > t) ~ t^(-1/k), k-hat estimates k: e.g. q = N(0, 1),
    p = N(0, s^2) with s > 1 gives k = 1 - 1/s^2 (infinite variance from s^2 = 2 on).
    A k-hat that cannot be fitted (NaN) is diagnosed "undetermined" and warned about.
    """
    lw = check_log_weights(log_weights)
    r_eff = check_positive("r_eff", r_eff)
    n = int(np.isfinite(lw).sum())
    if n < 10:
        raise ValueError(f"log_weights has only {n} finite entries; k-hat needs at least 10")
    _, khat = psis(lw, r_eff=r_eff)
    tail = _tail_size(n, r_eff)
    se = (1.0 + min(max(khat, -0.5), 2.0)) / math.sqrt(max(tail, 1))
    if math.isnan(khat):
        diagnosis = "undetermined"
    else:
        diagnosis = "good" if khat < KHAT_GOOD else ("ok" if khat < KHAT_BAD else "bad")
    if warn and diagnosis != "good":
        msg = {"bad": f"Pareto k-hat = {khat:.2f} >= {KHAT_BAD}: importance weights are too "
                      "heavy-tailed, the weighted estimates are unreliable",
               "ok": f"Pareto k-hat = {khat:.2f} >= {KHAT_GOOD}: the weights have infinite "
                     "variance, weighted estimates converge slowly",
               "undetermined": "Pareto k-hat could not be fitted to the largest weights"}[diagnosis]
        warnings.warn(msg, ImportanceWeightWarning, stacklevel=2)
    return ParetoKHat(khat, se, tail, diagnosis)


def weighted_mean(values, log_weights=None, *, chains: bool = False) -> Estimate:
    """Mean of ``values`` (shape ``(n, ...)``) with its standard error.

    * ``log_weights`` given: self-normalized importance sampling, se by the delta method
      (it treats the draws as independent: for SMC walkers that share ancestors after
      resampling it is optimistic; compare independent walker groups instead).
    * ``chains=True``: ``values`` has shape ``(chain, draw, ...)`` from MCMC; the se is
      ArviZ's MCSE (autocorrelation-aware; a chain stuck in one mode inflates it).
    * otherwise: independent draws, se = sd / sqrt(n).
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 0 or v.shape[0] == 0:
        raise ValueError(f"values must have a leading sample dimension, got shape {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError("values contains NaN or infinite entries")
    if chains:
        from arviz_stats.base import array_stats

        if log_weights is not None:
            raise ValueError("give either log_weights or chains=True, not both")
        if v.ndim < 2 or v.shape[1] < 4:
            raise ValueError("chains=True needs values of shape (chain, draw>=4, ...), "
                             f"got {v.shape}")
        moved = np.moveaxis(v, (0, 1), (-2, -1))
        return Estimate(v.mean(axis=(0, 1)),
                        np.asarray(array_stats.mcse(moved, chain_axis=-2, draw_axis=-1)))
    n = v.shape[0]
    if log_weights is None:
        if n < 2:
            raise ValueError("need at least 2 samples for a standard error")
        return Estimate(v.mean(axis=0), v.std(axis=0, ddof=1) / math.sqrt(n))
    w = normalized_weights(check_log_weights(log_weights, n))
    wb = w.reshape((n,) + (1,) * (v.ndim - 1))
    mean = np.sum(wb * v, axis=0)
    se = np.sqrt(np.sum(wb**2 * (v - mean) ** 2, axis=0))
    return Estimate(mean, se)


def systematic_indices(key, log_weights, num_samples: int | None = None) -> np.ndarray:
    """Indices of a systematic resample (one uniform, O(n) with searchsorted;
    [`ebm_ppl.weights.systematic_resample`][ebm_ppl.weights.systematic_resample])."""
    lw = check_log_weights(log_weights)
    m = lw.size if num_samples is None else check_positive("num_samples", num_samples, integer=True)
    return np.asarray(_w.systematic_resample(check_key(key), jax.numpy.asarray(lw), m))


def resample(samples, log_weights, *, key, num_samples: int | None = None, var_name: str = "x"):
    """Weighted draws -> an unweighted ArviZ ``DataTree`` (one chain) by systematic resampling.

    ``samples`` is an array with leading dimension n or a dict of such arrays; the result's
    ``posterior`` holds each variable with dims (chain=1, draw=num_samples, ...). Resampled
    draws are correlated (duplicates): their ESS is at most the Kish ESS of the weights.
    """
    import arviz as az

    data = dict(samples) if isinstance(samples, dict) else {var_name: samples}
    data = {k: np.asarray(v) for k, v in data.items()}
    sizes = {v.shape[0] if v.ndim else 0 for v in data.values()}
    if len(sizes) != 1:
        raise ValueError(f"samples must share one leading dimension, got sizes {sorted(sizes)}")
    n = sizes.pop()
    lw = check_log_weights(log_weights, n)
    idx = systematic_indices(key, lw, num_samples)
    post = {k: v[idx][None] for k, v in data.items()}
    dt = az.from_dict({"posterior": post})
    dt.attrs.update({"resampled_from": n, "kish_ess": kish_ess(lw)})
    return dt
