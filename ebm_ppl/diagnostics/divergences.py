"""Divergences between two densities estimated from samples (seed eq. 46-48, Remark 3.1).

With x_i ~ rho1 (or weighted draws targeting rho1):

    D_KL(rho1 || rho2) ~ mean_i log[rho1(x_i) / rho2(x_i)]                      (eq. 48)
    D_F(rho1 || rho2)  ~ mean_i |grad log rho1(x_i) - grad log rho2(x_i)|^2      (eq. 46, 48)

KL needs *normalized* log densities; Fisher only needs scores (gradients), which is why it is
blind to the relative mass of separated modes: its integrand lives where rho1 has almost no
samples (Remark 3.1). The standard errors are honest only if the samples visit the regions
that carry the integral; for D_F of well-separated modes, use weighted draws from a proposal
that covers the valley (pass ``log_weights``).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ..targets import GaussianMixture
from .weights import Estimate, weighted_mean


def _as_points(samples) -> jnp.ndarray:
    x = jnp.asarray(samples)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"samples must have shape (n,) or (n, dim) with n >= 2, got {x.shape}")
    if not bool(jnp.all(jnp.isfinite(x))):
        raise ValueError("samples contains NaN or infinite values")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    return x


def _check_fn(name, fn):
    if not callable(fn):
        raise ValueError(f"{name} must be a callable log density of one point, "
                         f"got {type(fn).__name__}")


def log_density(target) -> Callable:
    """The normalized log density -U(x) - log Z of a target that knows its ``log_z``."""
    if not (callable(target) and hasattr(target, "log_z")):
        raise ValueError("target must be callable as U(x) and have a log_z attribute")
    log_z = float(target.log_z)
    return lambda x: -target(x) - log_z


def kl_divergence(samples, log_p: Callable, log_q: Callable, *, log_weights=None) -> Estimate:
    """Monte Carlo D_KL(p || q) from draws of p (seed eq. 48), with its standard error.

    ``log_p``, ``log_q``: normalized log densities of one point of shape ``(dim,)``.
    """
    _check_fn("log_p", log_p)
    _check_fn("log_q", log_q)
    x = _as_points(samples)
    log_ratio = jax.vmap(lambda xi: log_p(xi) - log_q(xi))(x)
    return weighted_mean(np.asarray(log_ratio), log_weights)


def fisher_divergence(samples, log_p: Callable, log_q: Callable, *, log_weights=None) -> Estimate:
    """Monte Carlo D_F(p || q) = E_p |grad log p - grad log q|^2 (seed eq. 46, 48) with its se.

    Normalizing constants do not matter (only gradients are used).
    """
    _check_fn("log_p", log_p)
    _check_fn("log_q", log_q)
    x = _as_points(samples)
    diff = jax.vmap(jax.grad(lambda xi: log_p(xi) - log_q(xi)))(x)
    return weighted_mean(np.asarray(jnp.sum(diff * diff, axis=-1)), log_weights)


def divergences_by_quadrature(log_p: Callable, log_q: Callable, lo: float, hi: float,
                              num: int = 200_001) -> tuple[float, float]:
    """Exact (KL, Fisher) of two 1-D densities by the trapezoid rule on [lo, hi]."""
    _check_fn("log_p", log_p)
    _check_fn("log_q", log_q)
    if not lo < hi:
        raise ValueError(f"need lo < hi, got lo={lo}, hi={hi}")
    grid = jnp.linspace(lo, hi, int(num))[:, None]
    lp = jax.vmap(log_p)(grid)
    lq = jax.vmap(log_q)(grid)
    score = jax.vmap(jax.grad(lambda xi: log_p(xi) - log_q(xi)))(grid)[:, 0]
    p = np.exp(np.asarray(lp))
    xs = np.asarray(grid[:, 0])
    kl = np.trapezoid(p * np.asarray(lp - lq), xs)
    fisher = np.trapezoid(p * np.asarray(score) ** 2, xs)
    return float(kl), float(fisher)


def remark31_mixtures(z: float) -> tuple[GaussianMixture, GaussianMixture]:
    """The pair of seed eq. 47: rho1 = 0.5 N(-5,1) + 0.5 N(5,1), rho2 = s N(-5,1) + (1-s) N(5,1)
    with s = sigmoid(z). Use [`log_density`][ebm_ppl.diagnostics.divergences.log_density] to get their
    normalized log densities."""
    s = 1.0 / (1.0 + np.exp(-float(z)))
    means, scales = np.array([[-5.0], [5.0]]), np.ones(2)
    return (GaussianMixture(means=means, scales=scales, weights=np.array([0.5, 0.5])),
            GaussianMixture(means=means, scales=scales, weights=np.array([s, 1.0 - s])))
