"""The Jarzynski kernel: ULA moves along a protocol of energies with exact log weights.

Seed section 6.1, eq. 102-104. Walkers move by ULA under the current energy U_k and carry
a log weight A updated by

    A_{k+1} = A_k - alpha_{k+1}(X_{k+1}, X_k) + alpha_k(X_k, X_{k+1}),
    alpha_k(x, y) = U_k(x) + (y - x) . grad U_k(x) / 2 + h |grad U_k(x)|^2 / 4,

so that for any protocol, weighted averages are exact expectations under exp(-U_k)/Z_k and
Z_k = Z_0 E[exp(A_k)] (eq. 104), although ULA alone is biased. The increment equals the
MALA log acceptance ratio with the reverse move taken under U_{k+1}
([`langevin_log_ratio`][ebm_ppl.kernels.langevin.langevin_log_ratio]); one step costs one
``value_and_grad`` of the *next* energy, whose gradient then drives the next move.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from .langevin import MAX_DELTA_ENERGY, LangevinState, langevin_log_ratio, ula_move
from .metric import Metric

Array = jax.Array


class JarzynskiState(NamedTuple):
    """A walker: position, U_k and grad U_k there (k = current energy), and log weight A_k."""

    position: Array
    potential_energy: Array
    grad: Array
    log_weight: Array


class JarzynskiInfo(NamedTuple):
    log_weight_increment: Array
    accept_prob: Array  # the MALA acceptance the same move would have had (a diagnostic)
    is_divergent: Array


def jarzynski_init(position: Array, potential_fn: Callable[[Array], Array],
                   log_weight=0.0) -> JarzynskiState:
    """Start a walker at ``position`` (drawn from exp(-U_0)/Z_0) with log weight A_0."""
    energy, grad = jax.value_and_grad(potential_fn)(position)
    return JarzynskiState(position, energy, grad, jnp.asarray(log_weight, energy.dtype))


def jarzynski_step(key: Array, state: JarzynskiState, next_potential_fn: Callable[[Array], Array],
                   step_size, metric: Metric | None = None) -> tuple[JarzynskiState, JarzynskiInfo]:
    """Move by ULA under the cached U_k, then update A with eq. 102-103 using U_{k+1}.

    Pass the same function as ``next_potential_fn`` at every step for a fixed energy: the
    weights then correct ULA's bias at that energy (seed Example 4.1). A fixed ``metric``
    preconditions the move and enters both proposal densities of the increment, so the
    weights stay exact.
    """
    old = LangevinState(state.position, state.potential_energy, state.grad)
    new = ula_move(key, old, next_potential_fn, step_size, metric)
    increment = langevin_log_ratio(old, new, step_size, metric)
    divergent = (~jnp.isfinite(new.potential_energy) | ~jnp.all(jnp.isfinite(new.grad))
                 | (increment < -MAX_DELTA_ENERGY))
    increment = jnp.where(divergent, -jnp.inf, increment)  # a dead walker: weight zero
    log_weight = state.log_weight + increment
    accept_prob = jnp.minimum(1.0, jnp.exp(increment))
    return (JarzynskiState(new.position, new.potential_energy, new.grad, log_weight),
            JarzynskiInfo(increment, accept_prob, divergent))
