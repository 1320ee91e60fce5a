"""Energy families to start training from: a Gaussian mixture and a small MLP.

Each factory returns an [`EnergyFamily`][ebm_ppl.training.families.EnergyFamily]:
``energy_fn(params, x) -> scalar`` on a flat
point ``x`` of shape ``(dim,)``, initial ``params`` (a plain pytree of arrays, no flax needed)
and, where it exists in closed form, ``log_z_fn(params)`` -- the exact log Z_theta.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from ..errors import check_finite_array, check_key, check_positive

LOG_2PI = math.log(2.0 * math.pi)


class EnergyFamily(NamedTuple):
    """A parametric energy: ``energy_fn(params, x)``, initial ``params``, ``dim``, exact log Z."""

    energy_fn: Callable[[Any, jax.Array], jax.Array]
    params: Any
    dim: int
    log_z_fn: Callable[[Any], jax.Array] | None = None


def gaussian_mixture_energy(means, log_weights=None, *, scale: float = 1.0) -> EnergyFamily:
    """U_theta(x) = -log sum_j exp(log_weights_j - |x - a_j|^2 / (2 scale^2)).

    The seed's running example (eq. 4, and the student of Carbone et al. used with eq. 102-106):
    learnable means ``a_j`` (rows of ``means``, shape ``(K, d)``) and log-weights (shape ``(K,)``,
    zeros when omitted). The weight of component j is ``softmax(log_weights)_j`` -- in the seed's
    notation ``z_j = -log_weights_j`` -- and
    log Z = (d/2) log(2 pi scale^2) + logsumexp(log_weights).
    """
    means = check_finite_array("means", means, ndim=2).astype(float)
    k, d = means.shape
    log_weights = np.zeros(k) if log_weights is None else check_finite_array(
        "log_weights", log_weights, ndim=1).astype(float)
    if log_weights.shape != (k,):
        raise ValueError(f"log_weights must have shape ({k},) to match means, "
                         f"got {log_weights.shape}")
    scale = check_positive("scale", scale)

    def energy_fn(params, x):
        sq = jnp.sum((x - params["means"]) ** 2, axis=-1)
        return -logsumexp(params["log_weights"] - sq / (2.0 * scale**2))

    def log_z_fn(params):
        return 0.5 * d * (LOG_2PI + 2.0 * math.log(scale)) + logsumexp(params["log_weights"])

    params = {"means": jnp.asarray(means), "log_weights": jnp.asarray(log_weights)}
    return EnergyFamily(energy_fn, params, int(d), log_z_fn)


def mixture_weights(params) -> jax.Array:
    """Mode masses of a [`gaussian_mixture_energy`][ebm_ppl.training.families.gaussian_mixture_energy] (equal
    widths): softmax(log_weights)."""
    return jax.nn.softmax(params["log_weights"])


def mlp_energy(key, dim: int, hidden: Sequence[int] = (32, 32), *, confinement: float = 0.01,
               activation: Callable = jax.nn.softplus) -> EnergyFamily:
    """U_theta(x) = MLP_theta(x) + confinement |x|^2 / 2, a small neural energy.

    ``params`` is a list of ``(W, b)`` pairs (LeCun-normal init); the last layer maps to one
    scalar. The quadratic ``confinement`` (> 0) keeps exp(-U) integrable for every theta, so
    log Z_theta exists while training; set it to 0 only if your data and method allow it.
    """
    key = check_key(key)
    dim = check_positive("dim", dim, integer=True)
    hidden = tuple(check_positive("hidden", h, integer=True) for h in hidden)
    if confinement != 0:
        confinement = check_positive("confinement", confinement)
    sizes = (dim, *hidden, 1)
    params = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        w = jax.random.normal(jax.random.fold_in(key, i), (n_in, n_out)) / math.sqrt(n_in)
        params.append((w, jnp.zeros(n_out, w.dtype)))

    def energy_fn(params, x):
        h = x
        for w, b in params[:-1]:
            h = activation(h @ w + b)
        w, b = params[-1]
        return (h @ w + b)[0] + 0.5 * confinement * jnp.sum(x * x)

    return EnergyFamily(energy_fn, params, dim, None)
