"""Importance-weight arithmetic, in one place: log-mean-exp, normalization, Kish ESS,
conditional ESS, systematic resampling and when to resample.

Every function takes *log* weights along the last axis (walkers). Each works on JAX arrays
(pure and jittable, computed by ``jax.scipy.special.logsumexp`` in the array's dtype) and on
anything else (lists, NumPy arrays: computed in float64 by ``scipy.special.logsumexp`` and
returned as NumPy), so the annealing engine, training, diagnostics, BAR and results share it.

Conventions:

* ``log_w`` need not be normalized; a normalizing-constant ratio from weights
  ``w_i = exp(log_w_i)`` is ``log_mean_exp(log_w)`` (seed eq. 2 and eq. 104).
* Kish's effective sample size of weights is ``(sum w)^2 / sum w^2``, between 1 and n
  (0 when every weight is zero); [`ess_fraction`][ebm_ppl.weights.ess_fraction] divides it by n.
* ``resample_threshold`` has one meaning throughout the library: resample when the ESS
  fraction falls below it ([`should_resample`][ebm_ppl.weights.should_resample]; ``>= 1`` resamples every
  time, ``0`` never).
  (Training used to say "relative weight variance ``E[w^2]/E[w]^2 - 1`` above ``t``", which is
  the ESS fraction below ``1 / (1 + t)``:
  [`threshold_from_variance`][ebm_ppl.weights.threshold_from_variance].)
* Systematic resampling draws one uniform and costs O(n) with ``searchsorted`` (a categorical
  draw over n logits would be O(n^2)).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import scipy.special
from jax.scipy.special import logsumexp as _jax_logsumexp

__all__ = ["logsumexp", "log_mean_exp", "normalize_log_weights", "ess", "ess_fraction",
           "conditional_ess", "systematic_resample", "should_resample", "threshold_from_variance"]


def _is_jax(x) -> bool:
    return isinstance(x, jax.Array)  # tracers included


def _np(x):
    return np.asarray(x, dtype=np.float64)


def logsumexp(log_w, axis: int = -1, keepdims: bool = False):
    """``log(sum(exp(log_w)))`` along ``axis``, stable; ``-inf`` when every weight is zero."""
    if _is_jax(log_w):
        return _jax_logsumexp(log_w, axis=axis, keepdims=keepdims)
    return scipy.special.logsumexp(_np(log_w), axis=axis, keepdims=keepdims)


def log_mean_exp(log_w, axis: int = -1):
    """``log(mean(exp(log_w)))`` along ``axis``, stable; ``-inf`` when every weight is zero."""
    n = np.shape(log_w)[axis]
    if _is_jax(log_w):
        return _jax_logsumexp(log_w, axis=axis) - jnp.log(n)
    return logsumexp(log_w, axis=axis) - np.log(n)


def normalize_log_weights(log_w, axis: int = -1):
    """Log of the normalized weights ``w_i / sum_j w_j``."""
    if not _is_jax(log_w):
        log_w = _np(log_w)
    return log_w - logsumexp(log_w, axis=axis, keepdims=True)


def ess(log_w, axis: int = -1):
    """Kish effective sample size ``(sum w)^2 / sum w^2`` (0 when every weight is zero)."""
    if _is_jax(log_w):
        value = jnp.exp(2.0 * _jax_logsumexp(log_w, axis=axis)
                        - _jax_logsumexp(2.0 * log_w, axis=axis))
        return jnp.where(jnp.isfinite(value), value, 0.0)
    log_w = _np(log_w)
    with np.errstate(invalid="ignore"):
        value = np.exp(2.0 * logsumexp(log_w, axis=axis) - logsumexp(2.0 * log_w, axis=axis))
    return np.where(np.isfinite(value), value, 0.0)


def ess_fraction(log_w, axis: int = -1):
    """Kish ESS divided by the number of walkers, in (0, 1] (0 when every weight is zero)."""
    return ess(log_w, axis=axis) / np.shape(log_w)[axis]


def conditional_ess(log_w, log_increment, axis: int = -1):
    """Conditional ESS fraction of an increment given current weights (Zhou et al. 2016):
    ``(sum_i W_i v_i)^2 / sum_i W_i v_i^2`` with ``W`` normalized and ``v = exp(increment)``.

    With equal current weights it is the ESS fraction of the increments alone. It measures the
    step ``beta -> beta'`` only, whatever the weights accumulated before.
    """
    xp = jnp if _is_jax(log_w) or _is_jax(log_increment) else np
    if xp is np:
        log_w, log_increment = _np(log_w), _np(log_increment)
    log_W = normalize_log_weights(log_w, axis=axis)
    num = 2.0 * logsumexp(log_W + log_increment, axis=axis)
    den = logsumexp(log_W + 2.0 * log_increment, axis=axis)
    value = xp.exp(num - den)
    return xp.where(xp.isfinite(value), value, 0.0)


def systematic_resample(key, log_w, num_samples: int | None = None) -> jax.Array:
    """Indices of a systematic resample of walkers with log weights ``log_w`` (1-D).

    One uniform ``u``; walker ``i`` is copied ``floor`` or ``ceil`` of ``n W_i`` times.
    O(n) via ``searchsorted`` on the cumulative weights; jittable. When every weight is zero
    the identity is returned (the caller decides what a dead population means).
    """
    log_w = jnp.asarray(log_w)
    n = log_w.shape[-1]
    m = n if num_samples is None else int(num_samples)
    dead = ~jnp.isfinite(_jax_logsumexp(log_w))
    weights = jnp.exp(normalize_log_weights(jnp.where(dead, 0.0, log_w)))
    cdf = jnp.cumsum(weights)
    cdf = cdf / cdf[-1]
    u = (jax.random.uniform(key, (), dtype=cdf.dtype) + jnp.arange(m, dtype=cdf.dtype)) / m
    idx = jnp.clip(jnp.searchsorted(cdf, u, side="right"), 0, n - 1)
    identity = jnp.arange(m) % n
    return jnp.where(dead, identity, idx)


def should_resample(log_w, threshold):
    """Whether to resample: the ESS fraction of ``log_w`` is below ``threshold`` (or
    ``threshold >= 1``, which resamples every time up to round-off). Jittable."""
    frac = ess_fraction(log_w)
    if _is_jax(frac) or _is_jax(threshold):
        return jnp.logical_or(frac < threshold, threshold >= 1.0)
    return bool(frac < threshold or threshold >= 1.0)


def threshold_from_variance(relative_variance: float) -> float:
    """The ESS-fraction threshold equivalent to "resample when the relative variance of the
    weights ``E[w^2]/E[w]^2 - 1`` exceeds ``relative_variance``": ``n/ESS - 1 > t`` is
    ``ESS/n < 1/(1 + t)``."""
    return 1.0 / (1.0 + float(relative_variance))
