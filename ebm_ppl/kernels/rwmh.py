"""Random-walk Metropolis-Hastings (seed Definition 4.2) with a Gaussian proposal.

The proposal ``x' = x + s xi`` is symmetric, so the acceptance ratio of eq. 60 reduces to
``exp(U(x) - U(x'))``. One energy evaluation per step, no gradient.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from .langevin import StepInfo
from .metric import Metric, scale_noise

Array = jax.Array


class RWState(NamedTuple):
    position: Array
    potential_energy: Array


def rwmh_init(position: Array, potential_fn: Callable[[Array], Array]) -> RWState:
    return RWState(position, potential_fn(position))


def rwmh_step(key: Array, state: RWState, potential_fn: Callable[[Array], Array],
              step_size, metric: Metric | None = None) -> tuple[RWState, StepInfo]:
    """One random-walk MH step with proposal scale ``step_size``: ``x' = x + s xi``, or
    ``x' = x + s M^-1/2 xi`` with a ``metric`` (still symmetric, so the ratio is unchanged)."""
    key_move, key_accept = jax.random.split(key)
    x = state.position
    proposal_x = x + step_size * scale_noise(metric, jax.random.normal(key_move, x.shape, x.dtype))
    proposal_u = potential_fn(proposal_x)
    log_ratio = state.potential_energy - proposal_u
    log_ratio = jnp.where(jnp.isfinite(log_ratio), log_ratio, -jnp.inf)
    log_u = jnp.log(jax.random.uniform(key_accept, dtype=log_ratio.dtype))
    accepted = log_u < log_ratio
    new = RWState(jnp.where(accepted, proposal_x, x),
                  jnp.where(accepted, proposal_u, state.potential_energy))
    accept_prob = jnp.minimum(1.0, jnp.exp(log_ratio))
    return new, StepInfo(accept_prob, accepted, ~jnp.isfinite(proposal_u))
