"""Bennett acceptance ratio (BAR) between the forward and the reverse annealing passes.

For each stage k, the forward pass gives walkers at beta_k (weights ``W``) with the log ratio
``u = log q_{k+1}/q_k`` there; the reverse pass, started from the final resampled walkers and
run down the same schedule, gives walkers at beta_{k+1} with ``u`` there. BAR (Bennett 1976,
optimal bridge for equal sample sizes) solves for ``c = log Z_{k+1}/Z_k``

    sum_i W_i sigmoid(u_i - c) = sum_j W'_j sigmoid(c - u'_j),

and the stage estimates add up to ``log Z``. Its asymptotic variance per stage is
``(E[f^2]/E[f]^2 - 1)/n`` summed over both sides (``n`` the Kish ESS); stages are treated as
independent, so the total is an approximation. The forward SMC estimate is biased low and the
reverse one high when the annealing is too fast; BAR sits between and is far less biased.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from ..weights import normalize_log_weights

__all__ = ["bar_stage", "bar_log_z"]


def _norm(log_w, u):
    log_w = np.where(np.isfinite(u), log_w, -np.inf)
    W = np.exp(normalize_log_weights(log_w))
    return W, np.where(W > 0, u, 0.0)


def bar_stage(u_f, log_w_f, u_r, log_w_r, iters: int = 100):
    """Solve the BAR equation for each row (stages on the leading axes); returns (c, var)."""
    W_f, u_f = _norm(np.asarray(log_w_f, float), np.asarray(u_f, float))
    W_r, u_r = _norm(np.asarray(log_w_r, float), np.asarray(u_r, float))
    lo = np.minimum(u_f.min(-1), u_r.min(-1)) - 40.0
    hi = np.maximum(u_f.max(-1), u_r.max(-1)) + 40.0
    for _ in range(iters):
        c = 0.5 * (lo + hi)
        gap = np.sum(W_f * expit(u_f - c[..., None]), -1) - np.sum(
            W_r * expit(c[..., None] - u_r), -1)
        lo, hi = np.where(gap > 0, c, lo), np.where(gap > 0, hi, c)
    c = 0.5 * (lo + hi)
    var = 0.0
    for W, f in ((W_f, expit(u_f - c[..., None])), (W_r, expit(c[..., None] - u_r))):
        n = 1.0 / np.sum(W**2, -1)
        m1, m2 = np.sum(W * f, -1), np.sum(W * f * f, -1)
        var = var + np.maximum(m2 / np.maximum(m1, 1e-300) ** 2 - 1.0, 0.0) / n
    return c, var


def bar_log_z(forward, reverse, log_z0: float = 0.0):
    """``forward``: list of (increment, log_w) per stage from the forward pass; ``reverse``:
    the same from the reverse pass (stages in reverse order, increments log q_k/q_{k+1}).
    Returns (log Z, standard error)."""
    if len(forward) != len(reverse):
        raise ValueError("forward and reverse passes must have the same number of stages")
    u_f = np.stack([np.asarray(f[0]) for f in forward])
    lw_f = np.stack([np.asarray(f[1]) for f in forward])
    u_r = -np.stack([np.asarray(r[0]) for r in reverse[::-1]])
    lw_r = np.stack([np.asarray(r[1]) for r in reverse[::-1]])
    c, var = bar_stage(u_f, lw_f, u_r, lw_r)
    return float(log_z0 + np.sum(c)), float(np.sqrt(np.sum(var)))
