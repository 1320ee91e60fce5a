"""Moves for the annealing engine on a :class:`~ebm_ppl.evidence.paths.LinearPath`.

Each factory returns ``move(key, state, beta, step_size) -> (state, MoveInfo)`` acting on a
batch of walkers (:class:`~ebm_ppl.evidence.paths.PathState`, leading axis N) with per-walker
step sizes. All moves work in coordinates ``y = x / s`` where ``s`` is the walkers' per-coordinate
robust scale (:func:`walker_scale`; ``precondition=False`` uses ``s = 1``): a fixed
linear change of variables leaves every acceptance ratio and Jarzynski increment exact.

* :func:`jarzynski_move` -- ULA (seed eq. 67) with the log weight increment of eq. 102-103 at
  fixed energy, i.e. the log Metropolis ratio that ULA skips (shared with MALA through
  :func:`~ebm_ppl.kernels.langevin_log_ratio`); one gradient per step, never rejects.
* :func:`mala_move` -- the same proposal with the Metropolis test (invariant).
* :func:`hmc_move` -- batched leapfrog HMC with ``num_leapfrog`` steps (invariant).
* :func:`nuts_move` -- NumPyro's NUTS (``numpyro.infer.hmc.hmc(..., algo="NUTS")``) per walker.

A move is a ``jax.tree_util.Partial`` of a module-level function over the path (a pytree), so
the engine's compiled stage is reused across calls with the same energy and options.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.tree_util import Partial

from ..kernels import MAX_DELTA_ENERGY, LangevinState, langevin_log_ratio
from .engine import MoveInfo
from .paths import LinearPath, PathState

__all__ = ["walker_scale", "jarzynski_move", "mala_move", "hmc_move", "nuts_move", "MOVES"]


def walker_scale(positions, precondition: bool = True, max_points: int = 128):
    """Robust per-coordinate scale of the walkers: 1.4826 x the median absolute deviation
    (the std for a Gaussian, but not inflated by a few far walkers: the mouth of a funnel, a
    distant mode); ones without preconditioning. It uses an evenly strided subset of at most
    ``max_points`` walkers (every group is represented; a sort of all N walkers per move would
    cost more than a cheap energy's gradient), and ignores non-finite positions."""
    if not precondition:
        return jnp.ones(positions.shape[-1], positions.dtype)
    n = positions.shape[0]
    x = positions[:: max(1, n // max_points)]
    x = jnp.where(jnp.isfinite(x), x, jnp.nan)
    med = jnp.nanmedian(x, axis=0)
    mad = 1.4826 * jnp.nanmedian(jnp.abs(x - med), axis=0)
    mad = jnp.where(jnp.isfinite(mad), mad, 1.0)
    return jnp.maximum(mad, 1e-8 * jnp.maximum(jnp.max(mad), 1e-30))


def _view(st: PathState, beta, s) -> LangevinState:
    return LangevinState(st.position / s, st.potential(beta), s * st.grad(beta))


def _select(pred, a, b):
    return jax.tree.map(lambda u, v: jnp.where(pred, u, v), a, b)


def _batched(one, precondition, bulk, path, key, state: PathState, beta, step_size):
    """vmap a per-walker move over walkers with a shared scale. With ``bulk`` the random
    numbers (one normal vector and one log-uniform per walker) are drawn for all walkers at
    once: on the CPU, per-walker keys cost more than a cheap energy's gradient."""
    s = walker_scale(state.position, precondition)
    n, d = state.position.shape
    if bulk:
        k_n, k_u = jax.random.split(key)
        dtype = state.position.dtype
        rnd = (jax.random.normal(k_n, (n, d), dtype),
               jnp.log(jax.random.uniform(k_u, (n,), dtype)))
    else:
        rnd = jax.random.split(key, n)
    new, acc, inc, grads = jax.vmap(one, in_axes=(None, 0, 0, None, 0, None))(
        path, rnd, state, beta, step_size, s)
    return new, MoveInfo(acc, inc, jnp.sum(grads))


def _langevin_one(adjusted, path, rnd, st, beta, h, s):
    noise, log_u = rnd
    old = _view(st, beta, s)
    y = old.position - h * old.grad + jnp.sqrt(2.0 * h) * noise
    prop = path.evaluate(s * y)
    log_ratio = langevin_log_ratio(old, _view(prop, beta, s), h)
    finite = jnp.isfinite(prop.potential(beta)) & jnp.all(jnp.isfinite(prop.grad(beta)))
    # non-finite, or exploding (a log ratio below -MAX_DELTA_ENERGY, NUTS's divergence bound):
    # an unadjusted walker dies there (weight zero); an adjusted one rejects
    finite = finite & (log_ratio >= -MAX_DELTA_ENERGY)
    log_ratio = jnp.where(finite, log_ratio, -jnp.inf)
    acc = jnp.minimum(1.0, jnp.exp(log_ratio))
    if adjusted:
        accept = log_u < log_ratio
        return _select(accept, prop, st), acc, jnp.zeros_like(log_ratio), 1
    # ULA always moves; a non-finite proposal kills the walker's weight (kept in place)
    return _select(finite, prop, st), acc, log_ratio, 1


def _hmc_one(num_leapfrog, path, rnd, st, beta, h, s):
    p0, log_u = rnd
    y0 = st.position / s
    h0 = st.potential(beta) + 0.5 * jnp.sum(p0 * p0)
    p = p0 - 0.5 * h * s * st.grad(beta)

    def body(i, carry):
        y, p, _ = carry
        y = y + h * p
        new = path.evaluate(s * y)
        p = p - jnp.where(i == num_leapfrog - 1, 0.5, 1.0) * h * s * new.grad(beta)
        return y, p, new

    _, p, new = jax.lax.fori_loop(0, num_leapfrog, body, (y0, p, st))
    log_ratio = h0 - new.potential(beta) - 0.5 * jnp.sum(p * p)
    log_ratio = jnp.where(jnp.isfinite(log_ratio), log_ratio, -jnp.inf)
    accept = log_u < log_ratio
    acc = jnp.minimum(1.0, jnp.exp(log_ratio))
    return _select(accept, new, st), acc, jnp.zeros_like(log_ratio), num_leapfrog


@functools.lru_cache(maxsize=None)
def _move_fn(kind: str, precondition: bool, option: int = 0):
    """One stable function object per configuration (so jit caches hit across calls)."""
    one = {"jarzynski": functools.partial(_langevin_one, False),
           "mala": functools.partial(_langevin_one, True),
           "hmc": functools.partial(_hmc_one, option),
           "nuts": functools.partial(_nuts_one, option)}[kind]
    return functools.partial(_batched, one, precondition, kind != "nuts")


def jarzynski_move(path: LinearPath, precondition: bool = True):
    """ULA at ``beta`` carrying the eq. 102-103 log weight increment (not invariant)."""
    return Partial(_move_fn("jarzynski", bool(precondition)), path)


def mala_move(path: LinearPath, precondition: bool = True):
    """MALA at ``beta`` (invariant; no weight increment)."""
    return Partial(_move_fn("mala", bool(precondition)), path)


def hmc_move(path: LinearPath, num_leapfrog: int = 5, precondition: bool = True):
    """HMC with ``num_leapfrog`` leapfrog steps at ``beta`` (invariant); identity mass in y.

    Written as a batched leapfrog rather than NumPyro's ``hmc`` so that every walker takes the
    same number of gradient steps (vectorized at full efficiency) and the path cache is kept.
    """
    num_leapfrog = int(num_leapfrog)
    if num_leapfrog < 1:
        raise ValueError(f"num_leapfrog must be >= 1, got {num_leapfrog}")
    return Partial(_move_fn("hmc", bool(precondition), num_leapfrog), path)


def _nuts_potential(beta, path):
    if path is None:  # the template built once in _nuts_kernel never evaluates it
        return lambda x: jnp.zeros((), x.dtype)
    return path.potential(beta)


@functools.lru_cache(maxsize=None)
def _nuts_kernel(max_tree_depth: int, dim: int, dtype: str):
    from numpyro.infer.hmc import hmc
    from numpyro.infer.util import ParamInfo

    init_kernel, sample_kernel = hmc(potential_fn_gen=_nuts_potential, algo="NUTS")
    zero = jnp.zeros(dim, dtype)
    template = init_kernel(ParamInfo(zero, jnp.zeros((), dtype), zero), num_warmup=0,
                           step_size=0.1, adapt_step_size=False, adapt_mass_matrix=False,
                           max_tree_depth=int(max_tree_depth), model_args=(0.0, None),
                           rng_key=jax.random.key(0))
    return sample_kernel, template


def _nuts_one(max_tree_depth, path, key, st, beta, h, s):
    from numpyro.infer.hmc import HMCState

    sample_kernel, template = _nuts_kernel(max_tree_depth, st.position.shape[-1],
                                           str(st.position.dtype))
    adapt = template.adapt_state._replace(
        step_size=h, inverse_mass_matrix=s * s, mass_matrix_sqrt=1.0 / s, mass_matrix_sqrt_inv=s)
    u = st.potential(beta)
    state = HMCState(
        i=template.i, z=st.position, z_grad=st.grad(beta), potential_energy=u, energy=u, r=None,
        trajectory_length=template.trajectory_length, num_steps=template.num_steps,
        accept_prob=jnp.zeros_like(h), mean_accept_prob=jnp.zeros_like(h),
        diverging=jnp.array(False), adapt_state=adapt, rng_key=key)
    out = sample_kernel(state, model_args=(beta, path))
    new = path.evaluate(out.z)
    return new, out.accept_prob, jnp.zeros_like(h), out.num_steps + 1


def nuts_move(path: LinearPath, max_tree_depth: int = 6, precondition: bool = True):
    """NumPyro's NUTS at ``beta``, one transition per walker (invariant), diagonal mass ``s^-2``.

    Uses NumPyro's functional ``hmc(potential_fn_gen=..., algo="NUTS")`` with beta and the path
    passed as model arguments, so one compiled kernel serves every stage. Under ``vmap`` all
    walkers wait for the longest tree; the gradient count reports each walker's own steps (+1
    to refresh the path cache).
    """
    _nuts_kernel(int(max_tree_depth), path.dim, str(jnp.result_type(float)))  # outside any trace
    return Partial(_move_fn("nuts", bool(precondition), int(max_tree_depth)), path)


MOVES = {"jarzynski": jarzynski_move, "mala": mala_move, "hmc": hmc_move, "nuts": nuts_move}
