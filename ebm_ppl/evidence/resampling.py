"""Importance weights: log-mean-exp, effective sample sizes, resampling, genealogy variance.

Every function works on *log* weights along the last axis (walkers) and is pure and jittable,
so the annealing engine, the spin free-energy code and users can share it. Conventions:

* ``log_w`` need not be normalized; an estimate of a normalizing-constant ratio from weights
  ``w_i = exp(log_w_i)`` is ``log_mean_exp(log_w)`` (seed eq. 2 and eq. 104).
* The Kish effective sample size of weights is ``(sum w)^2 / sum w^2`` (between 1 and n).
* Systematic resampling draws one uniform and costs O(n) with ``searchsorted`` (a categorical
  draw over n logits would be O(n^2)); [`resample_if`][ebm_ppl.evidence.resampling.resample_if] runs it under
  ``lax.cond`` only when
  the ESS falls below a threshold and folds the discarded normalization into ``log Z``.
* Multinomial resampling (also O(n)) is the scheme under which the one-run variance estimate
  of ``Z`` from the walkers' genealogy,
  `genealogy_relative_variance`, is exact.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from ..weights import systematic_resample  # noqa: F401  (one copy: re-exported here)

Array = jax.Array

__all__ = [
    "log_mean_exp", "normalize_log_weights", "ess", "ess_fraction", "conditional_ess",
    "systematic_resample", "multinomial_resample", "RESAMPLING_SCHEMES", "ResampleResult",
    "resample_if", "genealogy_relative_variance", "coalescence_log_factors",
    "relative_variance_from_log_factors", "MODE_SHARE", "mode_guarded_resample_if",
]

RESAMPLING_SCHEMES = ("multinomial", "systematic")


def log_mean_exp(log_w: Array, axis: int = -1) -> Array:
    """``log(mean(exp(log_w)))`` along ``axis``, stable; ``-inf`` when every weight is zero."""
    log_w = jnp.asarray(log_w)
    n = log_w.shape[axis]
    return logsumexp(log_w, axis=axis) - jnp.log(n)


def normalize_log_weights(log_w: Array, axis: int = -1) -> Array:
    """Log of the normalized weights ``w_i / sum_j w_j``."""
    return log_w - logsumexp(log_w, axis=axis, keepdims=True)


def ess(log_w: Array, axis: int = -1) -> Array:
    """Kish effective sample size ``(sum w)^2 / sum w^2`` (0 when every weight is zero)."""
    value = jnp.exp(2.0 * logsumexp(log_w, axis=axis) - logsumexp(2.0 * log_w, axis=axis))
    return jnp.where(jnp.isfinite(value), value, 0.0)


def ess_fraction(log_w: Array, axis: int = -1) -> Array:
    """Kish ESS divided by the number of walkers, in (0, 1]."""
    return ess(log_w, axis=axis) / jnp.shape(log_w)[axis]


def conditional_ess(log_w: Array, log_increment: Array, axis: int = -1) -> Array:
    """Conditional ESS fraction of an increment given current weights (Zhou et al. 2016):
    ``(sum_i W_i v_i)^2 / sum_i W_i v_i^2`` with ``W`` normalized and ``v = exp(increment)``.

    With equal current weights it is the ESS fraction of the increments alone. It measures the
    step ``beta -> beta'`` only, whatever the weights accumulated before.
    """
    log_W = normalize_log_weights(log_w, axis=axis)
    num = 2.0 * logsumexp(log_W + log_increment, axis=axis)
    den = logsumexp(log_W + 2.0 * log_increment, axis=axis)
    value = jnp.exp(num - den)
    return jnp.where(jnp.isfinite(value), value, 0.0)


def multinomial_resample(key: Array, log_w: Array, num_samples: int | None = None) -> Array:
    """Indices of ``m`` independent draws from the weights ``W_i`` (1-D ``log_w``), O(m + n).

    The sorted uniforms are the normalized partial sums of ``m + 1`` standard exponentials
    (the order statistics of ``m`` uniforms), looked up with ``searchsorted`` on the cumulative
    weights; a categorical draw over n logits would be O(n m). The indices come out sorted,
    which is the same multiset as ``m`` iid draws. This is the scheme under which the
    genealogy variance estimator
    (`genealogy_relative_variance`) is exact. When
    every
    weight is zero the identity is returned.
    """
    n = log_w.shape[-1]
    m = n if num_samples is None else int(num_samples)
    dead = ~jnp.isfinite(logsumexp(log_w))
    weights = jnp.exp(normalize_log_weights(jnp.where(dead, 0.0, log_w)))
    cdf = jnp.cumsum(weights)
    cdf = cdf / cdf[-1]
    e = jnp.cumsum(jax.random.exponential(key, (m + 1,), dtype=cdf.dtype))
    u = e[:-1] / e[-1]
    idx = jnp.clip(jnp.searchsorted(cdf, u, side="right"), 0, n - 1)
    return jnp.where(dead, jnp.arange(m) % n, idx)


def genealogy_relative_variance(log_w: Array, eve: Array, num_resamplings: Array) -> Array:
    """Estimated relative variance ``Var(Z_hat) / Z^2`` of an SMC estimate of Z from ONE run.

    Lee & Whiteley (2018, Biometrika 105, eq. for ``V_n^N``), with the final weights
    ``W_i`` (normalized, 1-D ``log_w``) and each walker's Eve index ``eve_i`` (which of the
    n initial walkers it descends from, in ``0..n-1``)::

        V / Z_hat^2 = 1 - (n / (n - 1))^(R + 1) * (1 - sum_k S_k^2),   S_k = sum_{i: eve_i = k} W_i

    with ``R`` the number of resampling events. Exact in expectation (unbiased for
    ``Var(Z_hat)``) with multinomial resampling and any Markov moves; Du & Guyader (2021, Ann.
    Appl. Probab.) show it stays consistent when the tempering schedule is chosen adaptively
    from the walkers (our adaptive schedule). With no resampling (R = 0) it is the usual
    ``(n sum W^2 - 1) / (n - 1)`` of importance sampling. It estimates nothing about mass that
    no walker reached, and it degrades when the genealogy collapses (few distinct Eves carry
    the weight; ``anneal`` reports their number). Being unbiased it can come out negative when
    the true variance is below its resolution (few walkers, many resamplings); callers clip.
    """
    n = log_w.shape[-1]
    dead = ~jnp.isfinite(logsumexp(log_w))
    w = jnp.exp(normalize_log_weights(jnp.where(dead, 0.0, log_w)))
    s = jax.ops.segment_sum(w, eve, num_segments=n)
    c = jnp.exp((num_resamplings + 1.0) * jnp.log(n / (n - 1.0)))
    value = 1.0 - c * (1.0 - jnp.sum(s * s))
    return jnp.where(dead, jnp.inf, value)


def coalescence_log_factors(log_w: Array, ancestors: Array) -> Array:
    """Per-generation factors of the genealogy variance estimate, from weighted walkers and
    their ancestors ``1..L`` resamplings back (the fixed-lag estimator of Olsson & Douc 2019,
    Bernoulli 25, applied to the normalizing constant).

    ``log_w`` (n,) are the walkers' current log weights; ``ancestors`` (L, n) int holds, in row
    ``j - 1``, the index of each walker's ancestor ``j`` resamplings back. With
    ``C_j = sum_m (sum_{i: a_j(i) = m} W_i)^2`` (``C_0 = sum W^2``) the probability that two
    walkers drawn by weight share their lag-``j`` ancestor, the conditional coalescence at
    generation ``j`` is ``c_j = (C_j - C_{j-1}) / (1 - C_{j-1})`` and its factor
    ``log((n / (n - 1)) (1 - c_j))`` (returned for ``j = 0..L``, shape (L + 1,)). Under
    neutral multinomial resampling ``c_j = 1/n`` and the factor is 0; selection raises
    ``c_j`` and lowers it. The Lee & Whiteley estimator
    (`genealogy_relative_variance`) is ``1 - exp(sum of all R + 1 factors)`` with every
    generation read from the final walkers (the sum telescopes to their Eve formula); the
    fixed-lag estimator reads generation ``s`` from the walkers ``L`` stages later instead,
    where their genealogy has not yet collapsed: a small bias (dependence beyond ``L``
    stages is dropped) for a variance that stays resolvable with few walkers. The
    ``j = 0`` factor, ``log((n / (n - 1)) (1 - sum W^2))``, is never positive: the
    ideal-mixing (perfect moves) variance of one importance-sampling step.
    """
    n = log_w.shape[-1]
    dead = ~jnp.isfinite(logsumexp(log_w))
    w = jnp.exp(normalize_log_weights(jnp.where(dead, 0.0, log_w)))
    sums = jax.vmap(lambda a: jax.ops.segment_sum(w, a, num_segments=n))(ancestors)
    c = jnp.concatenate([jnp.sum(w * w)[None], jnp.sum(sums * sums, axis=-1)])
    log_free = jnp.log(jnp.clip(1.0 - c, 0.0, 1.0))   # log(1 - C_j), -inf when collapsed
    prev = jnp.concatenate([jnp.zeros((1,), log_free.dtype), log_free[:-1]])
    value = jnp.log(n / (n - 1.0)) + log_free - jnp.where(jnp.isfinite(prev), prev, 0.0)
    return jnp.where(dead, -jnp.inf, value)


def relative_variance_from_log_factors(log_factors: Array) -> Array:
    """``1 - exp(sum of log factors)`` (last axis), the relative variance ``Var(Z_hat) / Z^2``
    estimated from per-generation coalescence factors (`coalescence_log_factors`)."""
    return -jnp.expm1(jnp.sum(log_factors, axis=-1))


class ResampleResult(NamedTuple):
    """Outcome of [`resample_if`][ebm_ppl.evidence.resampling.resample_if].

    ``indices``: which walker each slot copies (identity when nothing was resampled);
    ``log_w``: the new log weights (zeros after a resample); ``log_z_increment``: what
    resampling moved out of the weights into the running log Z (``log_mean_exp(log_w)`` or 0);
    ``resampled``: whether it happened.
    """

    indices: Array
    log_w: Array
    log_z_increment: Array
    resampled: Array


def resample_if(key: Array, log_w: Array, threshold: float = 0.5,
                scheme: str = "systematic") -> ResampleResult:
    """Resampling (``scheme`` "systematic" or "multinomial") when
    ``ess_fraction(log_w) < threshold`` (1-D ``log_w``).

    ``threshold >= 1`` resamples at every call (up to round-off), ``threshold <= 0`` never.
    The running estimate ``log Z = acc + log_mean_exp(log_w)`` is unchanged by the call when
    ``acc`` is increased by ``log_z_increment``. Under ``vmap`` both branches run (a select).
    """
    def draw(k, lw):
        return _scheme(scheme)(k, lw), jnp.zeros_like(lw)

    return _resample_when(key, log_w, threshold, draw)


def _scheme(name: str):
    """The index-drawing function of a resampling scheme."""
    return multinomial_resample if name == "multinomial" else systematic_resample


def _resample_when(key: Array, log_w: Array, threshold: float, draw) -> ResampleResult:
    """``draw(key, log_w) -> (indices, new log weights)`` under ``lax.cond`` when
    ``ess_fraction(log_w) < threshold`` (or ``threshold >= 1``), the identity otherwise; the
    log normalization it moves into ``log Z`` is ``log_mean_exp(log_w)``."""
    n = log_w.shape[-1]
    do = jnp.logical_or(ess_fraction(log_w) < threshold, threshold >= 1.0)

    def _resample(operand):
        k, lw = operand
        idx, new = draw(k, lw)
        return idx, new, log_mean_exp(lw)

    def _keep(operand):
        _, lw = operand
        return jnp.arange(n), lw, jnp.zeros((), lw.dtype)

    idx, new_log_w, inc = jax.lax.cond(do, _resample, _keep, (key, log_w))
    return ResampleResult(idx, new_log_w, inc, do)


MODE_SHARE = 0.8  # mode-guarded resampling: the share of slots spread evenly over the modes


def mode_guarded_resample_if(key: Array, log_w: Array, labels: Array, num_modes: int,
                             threshold: float = 0.5, share: float = MODE_SHARE,
                             scheme: str = "multinomial") -> ResampleResult:
    """Resampling that keeps every mode's walkers (1-D ``log_w``; ``labels`` in
    ``0..num_modes-1`` says which mode each walker is nearest).

    Plain resampling gives a mode slots in proportion to its weight ``W_k``, so a mode whose
    share dips along the path (a narrow mode under a broad reference) keeps a handful of
    walkers and, once its share grows back, descends from those few. Here slot ``j`` picks
    walker ``i`` with probability ``q_i = a_k W_i / W_k`` (``k`` its mode), from the mode
    allocation ``a_k = (1 - share) W_k + share / M`` (``M`` the modes holding weight), and
    carries the weight ``W_i / q_i = W_k / a_k``: an importance-sampling correction, so that
    ``E[sum_j w_j f(x_j)] = sum_i W_i f(x_i)`` and the estimate of Z stays unbiased (any
    resampling that is unbiased in this sense is, e.g. Whiteley, Lee & Heine 2016). With one
    mode, or ``share = 0``, it is ordinary resampling (weights 0 after it). The one-run
    genealogy variance (`genealogy_relative_variance`) assumes ordinary resampling and does not
    hold: take the error from independent groups. Resamples when
    ``ess_fraction(log_w) < threshold`` (or ``threshold >= 1``), as `resample_if`.
    """
    dead = ~jnp.isfinite(logsumexp(log_w))
    log_W = normalize_log_weights(jnp.where(dead, 0.0, log_w))
    log_mode = jax.ops.segment_max(log_W, labels, num_segments=num_modes)  # stable per-mode sums
    log_mode = jnp.where(jnp.isfinite(log_mode), log_mode, 0.0)
    mode_w = jax.ops.segment_sum(jnp.exp(log_W - log_mode[labels]), labels,
                                 num_segments=num_modes)
    log_mode_w = jnp.log(mode_w) + log_mode                     # log W_k (-inf: no weight)
    held = jnp.isfinite(log_mode_w)
    alloc = (1.0 - share) * jnp.exp(log_mode_w) + share * held / jnp.maximum(jnp.sum(held), 1)
    log_ratio = jnp.log(alloc) - jnp.where(held, log_mode_w, 0.0)  # log(a_k / W_k)

    def draw(k, lw):
        idx = _scheme(scheme)(k, log_W + log_ratio[labels])
        return idx, -log_ratio[labels[idx]]

    return _resample_when(key, log_w, threshold, draw)
