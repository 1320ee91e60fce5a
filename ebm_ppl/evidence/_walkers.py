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

__all__ = ["path_delta", "initial_state", "initial_walkers", "initial_step", "samples"]


def path_delta(state):
    """``V = dU_t / dt`` of the walkers (the engine's ``delta_fn`` for every path)."""
    return state.delta


def _evaluate(path, xs):
    """The walkers' state at ``xs`` and whether the energy is finite at any of them (in the
    same program: eagerly, the check compiled three more on a first call)."""
    state = path.evaluate_batch(xs)
    finite = jnp.isfinite(state.delta)
    if hasattr(state, "u0"):
        finite = finite & jnp.isfinite(state.u0)
    return state, jnp.any(finite)


_evaluate_batch = jax.jit(_evaluate)


def _sample_base(path, key, n):
    return path.sample_base(key, n)


_sample_compiled = jax.jit(_sample_base, static_argnums=2)


@functools.partial(jax.jit, static_argnums=2)
def _evaluate_draws(path, xs, precondition):
    """`_evaluate_batch` and `initial_step`'s whitened gradient trace of a model's prior
    draws, as one compiled program (two on a first call before). The draws stay a program of
    their own: compiled together with the evaluation, XLA rewrote the gradients in their last
    bits for some models (1e-13 on the conjugate regression), which the annealing amplifies."""
    state, any_finite = _evaluate(path, xs)
    return state, any_finite, _grad_trace(state.position, state.grad_u0, precondition)


def initial_state(path: LinearPath, key, n, sharding=None, precondition: bool = True):
    """Exact draws from the reference with U_0, V and gradients cached. A model's prior is
    sampled by one compiled program per model structure (NumPyro's ``Predictive`` run eagerly
    would build, and compile, a new scan every call); a reference distribution eagerly (its
    operations are compiled once per shape and cached)."""
    return initial_walkers(path, key, n, sharding, precondition)[0]


def initial_walkers(path: LinearPath, key, n, sharding=None, precondition: bool = True):
    """`initial_state` and the mean squared whitened gradient of the draws (``precondition``
    as the moves' option) for `initial_step`, computed in the draws' program for a model's
    prior (None otherwise: `initial_step` then computes it). A run and its bias probe pass
    the same ``precondition`` so that the probe's draws reuse the run's program."""
    trace = None
    if sharding is None:
        if getattr(path, "target_data", None) is not None:  # a model's prior
            state, any_finite, trace = _evaluate_draws(path, _sample_compiled(path, key, n),
                                                       bool(precondition))
        else:
            state, any_finite = _evaluate_batch(path, path.sample_base(key, n))
    else:  # drawn in place: each device makes only its own walkers (same values)
        x0 = sharded_jit(_sample_base, sharding, static_argnums=(2,))(path, key, n)
        state, any_finite = _evaluate_batch(path, x0)
    if not bool(any_finite):
        raise SamplingDivergedError("the energy is not finite at any draw from the reference")
    return state, trace


def _grad_trace(position, grad_u0, precondition):
    """Mean of |g_y|^2 over the walkers with a finite whitened gradient."""
    g = grad_u0 * _moves.walker_scale(position, precondition)
    ok = jnp.all(jnp.isfinite(g), axis=-1)
    return jnp.sum(jnp.where(ok[:, None], g * g, 0.0)) / jnp.maximum(jnp.sum(ok), 1)


_whitened_grad_trace = jax.jit(_grad_trace, static_argnums=2)  # one program, not a dozen


def initial_step(state, method, default, precondition, trace=None):
    """A stable first step from the reference's whitened gradients: E|g_y|^2 = tr(A_y) bounds
    the stiffest curvature, so h = 1/tr (Langevin: stable below 2/lambda_max) or
    1/sqrt(tr) (leapfrog: stable below 2/sqrt(lambda_max)), never above the default.
    ``trace``: that mean as `initial_walkers` computed it (else computed here)."""
    if trace is None:
        trace = _whitened_grad_trace(state.position, state.grad_u0, precondition)
    tr = float(trace)
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
