"""Spin-flip kernels on {-1, +1}^N: Metropolis and heat-bath Gibbs sweeps (seed section 4).

Pure kernels with the library's signature ``step(key, state, potential_fn, step_size)``; one
step is one *sweep* (every site visited once); ``step_size`` is accepted and ignored.

* With a spin model (anything with ``flip_delta``, ``colors`` and the sweep cache, e.g.
  [`Ising`][ebm_ppl.spins.Ising]), the sweep updates the sites colour by colour: the sites of one
  colour do not interact, so all of them are updated at once from the local fields (the
  checkerboard for a lattice, fully vectorized). Without colours (dense couplings) it visits
  the sites one after the other, with a cache when the model has one (Curie-Weiss keeps the
  magnetization, so a sweep costs O(N)).
* With any other function U of a +-1 vector, the flip costs are ``U(s') - U(s)``, evaluated
  one site at a time (correct for any energy; two evaluations of U per site).

Metropolis flips site i with probability ``min(1, exp(-dU_i))``; heat-bath Gibbs draws s_i from
its conditional law, i.e. flips with probability ``1 / (1 + exp(dU_i))``. Both leave
exp(-U) / Z invariant, site by site; a sweep composes them.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


class SpinState(NamedTuple):
    position: Array          # +-1 as floats, shape (N,)
    potential_energy: Array  # U(position)


class SpinInfo(NamedTuple):
    accept_prob: Array   # mean flip probability over the sweep
    flip_rate: Array     # fraction of spins flipped
    is_divergent: Array  # always False (kept for the NumPyro adapter)


def spin_init(position: Array, potential_fn: Callable) -> SpinState:
    """Cache U at a +-1 configuration."""
    return SpinState(position, potential_fn(position))


def metropolis_prob(delta: Array) -> Array:
    """Metropolis flip probability min(1, exp(-dU))."""
    return jnp.exp(-jnp.maximum(delta, 0.0))


def heat_bath_prob(delta: Array) -> Array:
    """Heat-bath (Gibbs) flip probability 1 / (1 + exp(dU))."""
    return jax.nn.sigmoid(-delta)


def spin_sweep(key: Array, state: SpinState, potential_fn: Callable, flip_prob: Callable
               ) -> tuple[SpinState, SpinInfo]:
    """One sweep with the flip rule ``flip_prob(dU)`` (see
    [`metropolis_sweep`][ebm_ppl.spins.kernels.metropolis_sweep])."""
    s = state.position
    n = s.shape[-1]
    colors = getattr(potential_fn, "colors", None)
    has_fields = hasattr(potential_fn, "flip_delta")
    if colors is not None and has_fields:
        masks = jnp.asarray(np.asarray(colors, bool))
        u = jax.random.uniform(key, (n,), s.dtype)  # one uniform per site and sweep

        def update(s, mask):
            p = flip_prob(potential_fn.flip_delta(s))
            flip = mask & (u < p)
            return jnp.where(flip, -s, s), (jnp.sum(jnp.where(mask, p, 0.0)), jnp.sum(flip))

        s, (p_sum, n_flip) = jax.lax.scan(update, s, masks)
    else:
        if has_fields:
            cache = potential_fn.sweep_cache(s)
            site_delta, update_cache = potential_fn.cached_site_delta, potential_fn.update_cache
        else:  # any function of the spins: the cache is the configuration itself
            cache = s
            def site_delta(s_i, c, i):
                return potential_fn(c.at[i].multiply(-1.0)) - potential_fn(c)
            update_cache = lambda c, i, ds: c.at[i].add(ds)  # noqa: E731
        u = jax.random.uniform(key, (n,), s.dtype)

        def update(cache, inputs):
            s_i, u_i, i = inputs
            p = flip_prob(site_delta(s_i, cache, i))
            flip = u_i < p
            ds = jnp.where(flip, -2.0 * s_i, 0.0)
            return update_cache(cache, i, ds), (s_i + ds, p, flip)

        _, (s, p_sum, n_flip) = jax.lax.scan(update, cache, (s, u, jnp.arange(n)))
    new = SpinState(s, potential_fn(s))
    info = SpinInfo(jnp.sum(p_sum) / n, jnp.sum(n_flip) / n, jnp.zeros((), bool))
    return new, info


def metropolis_sweep(key: Array, state: SpinState, potential_fn: Callable, step_size=None
                     ) -> tuple[SpinState, SpinInfo]:
    """One sweep of single-spin-flip Metropolis (checkerboard on a lattice)."""
    return spin_sweep(key, state, potential_fn, metropolis_prob)


def gibbs_sweep(key: Array, state: SpinState, potential_fn: Callable, step_size=None
                ) -> tuple[SpinState, SpinInfo]:
    """One sweep of heat-bath Gibbs sampling (checkerboard on a lattice)."""
    return spin_sweep(key, state, potential_fn, heat_bath_prob)


def check_spins(name: str, value) -> np.ndarray:
    """Return ``value`` as a float array after checking every entry is -1 or +1."""
    arr = np.asarray(value)
    if not np.issubdtype(arr.dtype, np.number) or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty numeric array of -1/+1 spins")
    if not np.all(np.abs(arr) == 1):
        raise ValueError(f"{name} must contain only -1 and +1 (spins), got values "
                         f"{np.unique(arr)[:5].tolist()}")
    return arr.astype(np.result_type(float))
