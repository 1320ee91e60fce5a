"""The walkers of a run before the first stage: exact draws from the path's reference with
their energies cached, a stable first step size, and constrained samples of the last walkers.

Shared by the run ([`ebm_ppl.evidence.log_partition`][ebm_ppl.evidence.log_partition]), its
bias probe and its pilot; every function here is compiled once per path structure.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import SamplingDivergedError
from ..sharding import sharded_jit, to_host
from . import moves as _moves
from .paths import LinearPath

__all__ = ["path_delta", "initial_state", "initial_step", "samples"]


def path_delta(state):
    """``V = dU_t / dt`` of the walkers (the engine's ``delta_fn`` for every path)."""
    return state.delta


@jax.jit
def _evaluate_batch(path, xs):
    """The walkers' state at ``xs`` and whether the energy is finite at any of them (in the
    same program: eagerly, the check compiled three more on a first call)."""
    state = path.evaluate_batch(xs)
    finite = jnp.isfinite(state.delta)
    if hasattr(state, "u0"):
        finite = finite & jnp.isfinite(state.u0)
    return state, jnp.any(finite)


def _sample_base(path, key, n):
    return path.sample_base(key, n)


_sample_compiled = jax.jit(_sample_base, static_argnums=2)


def initial_state(path: LinearPath, key, n, sharding=None):
    """Exact draws from the reference with U_0, V and gradients cached. A model's prior is
    sampled by one compiled program per model structure (NumPyro's ``Predictive`` run eagerly
    would build, and compile, a new scan every call); a reference distribution eagerly (its
    operations are compiled once per shape and cached)."""
    if sharding is None:
        model = getattr(path, "target_data", None) is not None
        x0 = _sample_compiled(path, key, n) if model else path.sample_base(key, n)
        state, any_finite = _evaluate_batch(path, x0)
    else:  # drawn in place: each device makes only its own walkers (same values)
        x0 = sharded_jit(_sample_base, sharding, static_argnums=(2,))(path, key, n)
        state, any_finite = _evaluate_batch(path, x0)
    if not bool(any_finite):
        raise SamplingDivergedError("the energy is not finite at any draw from the reference")
    return state


@functools.partial(jax.jit, static_argnums=2)
def _whitened_grad_trace(position, grad_u0, precondition):
    """Mean of |g_y|^2 over the walkers with a finite whitened gradient (one compiled
    program instead of a dozen eager operations, each compiled on a first call)."""
    g = grad_u0 * _moves.walker_scale(position, precondition)
    ok = jnp.all(jnp.isfinite(g), axis=-1)
    return jnp.sum(jnp.where(ok[:, None], g * g, 0.0)) / jnp.maximum(jnp.sum(ok), 1)


def initial_step(state, method, default, precondition):
    """A stable first step from the reference's whitened gradients: E|g_y|^2 = tr(A_y) bounds
    the stiffest curvature, so h = 1/tr (Langevin: stable below 2/lambda_max) or
    1/sqrt(tr) (leapfrog: stable below 2/sqrt(lambda_max)), never above the default."""
    tr = float(_whitened_grad_trace(state.position, state.grad_u0, precondition))
    if not np.isfinite(tr) or tr <= 0:
        return default
    bound = 1.0 / tr if method in ("mala", "jarzynski") else 1.0 / math.sqrt(tr)
    return float(min(default, bound))


@jax.jit
def _constrain_batch(path, positions):
    return jax.vmap(path.constrain)(positions)


def samples(path, positions):
    """The walkers in the model's constrained space, on the host (dict of sites for a model)."""
    return to_host(_constrain_batch(path, positions))
