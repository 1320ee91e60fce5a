"""Parallel tempering (replica exchange) over any kernel of the library (seed section 4).

R replicas of a pure kernel run at inverse temperatures ``betas[0] = 1 > betas[1] > ...``, each
on the tempered energy ``beta_r U`` (a spin model keeps its fast local fields through its
``tempered`` method). After every round of moves, neighbouring rungs propose to exchange their
configurations with probability ``min(1, exp((beta_r - beta_{r+1}) (U(x_r) - U(x_{r+1}))))``;
even and odd pairs alternate (the deterministic even-odd scheme of Okabe et al. 2001 / Syed et
al. 2019, non-reversible, with better round trips than random pair choice). The kernel state
caches U (and grad U) of *its* temperature, so a swapped state is rescaled by beta_new /
beta_old when that is all it caches (Langevin, random-walk and spin kernels: a round costs one
kernel step per rung) and re-initialised at its new temperature otherwise.

Diagnostics: swap acceptance per neighbouring pair, and round trips: a configuration that
leaves the target rung (slot 0), reaches the hottest rung and comes back completes one.

* :func:`pt_init` / :func:`pt_step` -- the pure pair, for any ``(init, step)`` kernel.
* :func:`parallel_tempering` -- a driver (chains, warmup with per-replica step adaptation,
  progress bar) returning :class:`PTResult`.
* :class:`ParallelTempering` -- a ``numpyro.infer.MCMC`` kernel whose draws are the target rung.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .errors import check_finite_array, check_positive

Array = jax.Array


def geometric_ladder(num_replicas: int = 8, beta_min: float = 0.1) -> np.ndarray:
    """``beta_r = beta_min^(r / (R - 1))``: from 1 (the target) down to ``beta_min``."""
    num_replicas = check_positive("num_replicas", num_replicas, integer=True)
    beta_min = check_positive("beta_min", beta_min)
    if num_replicas < 2 or beta_min >= 1.0:
        raise ValueError("a ladder needs num_replicas >= 2 and 0 < beta_min < 1, got "
                         f"num_replicas={num_replicas}, beta_min={beta_min}")
    return beta_min ** (np.arange(num_replicas) / (num_replicas - 1))


def check_ladder(betas) -> np.ndarray:
    """Validate a ladder: 1-D, finite, starts at 1, strictly decreasing, >= 0."""
    b = check_finite_array("betas", betas, ndim=1).astype(np.float64)
    if b.size < 2 or b[0] != 1.0 or np.any(np.diff(b) >= 0) or b[-1] < 0:
        raise ValueError("betas must start at 1 (the target) and strictly decrease to a value "
                         f">= 0 (at least 2 rungs), got {b.tolist()}")
    return b


def tempered(potential_fn: Callable, beta) -> Callable:
    """``beta * U``; uses ``potential_fn.tempered(beta)`` when the energy has one (spin models)."""
    method = getattr(potential_fn, "tempered", None)
    if method is not None:
        return method(beta)
    return lambda x: beta * potential_fn(x)


class PTState(NamedTuple):
    """State of one replica-exchange chain. ``replicas`` is a batch of kernel states (slot r
    runs at ``betas[r]``); ``position``/``potential_energy`` repeat slot 0 (the target)."""

    position: Array
    potential_energy: Array
    replicas: Any
    energies: Array            # (R,) untempered U at each slot
    walker_at_slot: Array      # (R,) which configuration (walker id) sits at slot r
    walker_label: Array        # (R,) per walker: 1 last extreme was cold, -1 hot after cold
    round_trips: Array         # completed cold -> hot -> cold trips
    swap_accept_sum: Array     # (R-1,) summed swap acceptance probabilities per pair
    swap_attempts: Array       # (R-1,) number of attempts per pair
    num_rounds: Array


class PTInfo(NamedTuple):
    accept_prob: Array          # mean inner acceptance over replicas
    replica_accept_prob: Array  # (R,)
    swap_accept_prob: Array     # (R-1,), 0 where no swap was attempted this round
    is_divergent: Array


def pt_init(positions: Array, potential_fn: Callable, betas, kernel_init: Callable) -> PTState:
    """Start R replicas at ``positions`` (shape ``(R, dim)``)."""
    betas = jnp.asarray(betas, positions.dtype)
    r = betas.shape[0]
    replicas = jax.vmap(lambda x, b: kernel_init(x, tempered(potential_fn, b)))(positions, betas)
    energies = jax.vmap(potential_fn)(positions)
    ids = jnp.arange(r, dtype=jnp.int32)
    zeros = jnp.zeros(r - 1, positions.dtype)
    return PTState(positions[0], energies[0], replicas, energies, ids,
                   jnp.zeros(r, jnp.int32).at[0].set(1), jnp.zeros((), jnp.int32), zeros,
                   zeros, jnp.zeros((), jnp.int32))


_LINEAR_FIELDS = ("potential_energy", "grad")  # cached quantities proportional to beta


def _positive_ladder(betas):
    """The ladder as numpy when it is concrete and every rung has beta > 0, else None."""
    try:
        b = np.asarray(betas, np.float64)
    except jax.errors.TracerArrayConversionError:
        return None
    return b if np.all(b > 0) else None


def _rescalable(replicas) -> bool:
    """Kernel states whose only potential-dependent fields are U and grad U (Langevin,
    random-walk, spin states): moved to another rung, they are rescaled, not re-initialised."""
    fields = getattr(type(replicas), "_fields", None)
    return (fields is not None and "potential_energy" in fields
            and set(fields) <= {"position", *_LINEAR_FIELDS})


def pt_step(key: Array, state: PTState, potential_fn: Callable, step_size, *, betas,
            kernel_step: Callable, kernel_init: Callable) -> tuple[PTState, PTInfo]:
    """One round: a kernel step in every replica, then one even or odd swap sweep.

    ``step_size`` is a scalar or one step per replica. When the ladder is concrete with all
    beta > 0 and the kernel state caches only U and grad U (Langevin, random-walk and spin
    kernels), the untempered energies are read from the states (``U = U_beta / beta``) and a
    swapped state is rescaled by ``beta_new / beta_old``: a round then costs one kernel step
    per rung. Otherwise U is evaluated at every rung and swapped rungs are re-initialised.
    """
    ladder = _positive_ladder(betas)
    betas = jnp.asarray(betas, state.energies.dtype)
    r = betas.shape[0]
    steps = jnp.broadcast_to(jnp.asarray(step_size, betas.dtype), (r,))
    key_move, key_swap = jax.random.split(key)

    def move(k, s, b, h):
        return kernel_step(k, s, tempered(potential_fn, b), h)

    replicas, info = jax.vmap(move)(jax.random.split(key_move, r), state.replicas, betas, steps)
    fast = ladder is not None and _rescalable(replicas)
    positions = replicas.position
    if fast:
        u = replicas.potential_energy / betas
    else:
        u = jax.vmap(potential_fn)(positions)

    pair = jnp.arange(r - 1)
    attempt = (pair % 2) == (state.num_rounds % 2)
    log_ratio = (betas[:-1] - betas[1:]) * (u[:-1] - u[1:])
    log_ratio = jnp.where(jnp.isnan(log_ratio), -jnp.inf, log_ratio)
    log_unif = jnp.log(jax.random.uniform(key_swap, (r - 1,), u.dtype))
    accept = attempt & (log_unif < log_ratio)
    src = jnp.arange(r)
    src = src.at[:-1].set(jnp.where(accept, pair + 1, src[:-1]))
    src = src.at[1:].set(jnp.where(accept, pair, src[1:]))
    changed = src != jnp.arange(r)

    positions, u = positions[src], u[src]
    moved = jax.tree.map(lambda a: a[src], replicas)
    if fast:
        ratio = betas / betas[src]
        replicas = moved._replace(**{
            f: getattr(moved, f) * ratio.reshape((r,) + (1,) * (getattr(moved, f).ndim - 1))
            for f in _LINEAR_FIELDS if f in type(moved)._fields})
    else:
        fresh = jax.vmap(lambda x, b: kernel_init(x, tempered(potential_fn, b)))(positions, betas)
        replicas = jax.tree.map(
            lambda a, b: jnp.where(changed.reshape((r,) + (1,) * (a.ndim - 1)), a, b),
            fresh, moved)

    walkers = state.walker_at_slot[src]
    label = state.walker_label
    trip = label[walkers[0]] == -1
    label = label.at[walkers[0]].set(1)
    label = label.at[walkers[-1]].set(jnp.where(label[walkers[-1]] == 1, -1, label[walkers[-1]]))
    swap_p = jnp.where(attempt, jnp.exp(jnp.minimum(log_ratio, 0.0)), 0.0)
    new = PTState(positions[0], u[0], replicas, u, walkers, label,
                  state.round_trips + trip.astype(jnp.int32), state.swap_accept_sum + swap_p,
                  state.swap_attempts + attempt.astype(u.dtype), state.num_rounds + 1)
    acc = info.accept_prob.astype(u.dtype)
    return new, PTInfo(jnp.mean(acc), acc, swap_p, jnp.any(info.is_divergent))


def swap_diagnostics(state: PTState) -> dict:
    """Swap acceptance per pair, round trips and round trips per round (batch dims allowed)."""
    rounds = np.maximum(np.asarray(state.num_rounds), 1)
    return {
        "swap_acceptance": np.asarray(state.swap_accept_sum)
        / np.maximum(np.asarray(state.swap_attempts), 1),
        "round_trips": np.asarray(state.round_trips),
        "round_trip_rate": np.asarray(state.round_trips) / rounds,
    }


_DRIVER = ("parallel_tempering", "PTResult", "ParallelTempering", "resolve_kernel")


def __getattr__(name):  # the driver imports this module: load it on first use
    if name in _DRIVER:
        from . import _tempering_driver
        return getattr(_tempering_driver, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["geometric_ladder", "check_ladder", "tempered", "PTState", "PTInfo", "pt_init",
           "pt_step", "swap_diagnostics", "parallel_tempering", "PTResult", "ParallelTempering"]
