"""Sampling-based gradient estimators of the cross-entropy: CD, PCD and Jarzynski (seed 6.1).

All three estimate eq. 94, ``dH/dtheta = E_*[dU/dtheta] - E_theta[dU/dtheta]``; they differ
only in how the walkers that stand in for rho_theta are produced:

* ``cd``  (Algorithm 1): walkers re-drawn from the data every ``reinit_every`` iterations,
  then ULA steps under U_theta; uniform weights.
* ``pcd`` (Algorithm 2): persistent ULA walkers started at the data; uniform weights.
* ``jarzynski`` (eq. 102-106): persistent ULA walkers with log weights A_k from the existing
  [`jarzynski_step`][ebm_ppl.kernels.jarzynski_step], whose "next energy" is U_{theta_{k+1}}. The model
  term is the weighted average (eq. 104-105), log Z_theta_k = log Z_0 + log mean e^{A_k}
  (eq. 104) and the cross-entropy is eq. 106. Systematic resampling when the ESS fraction of
  the weights falls below ``resample_threshold``
  ([`ebm_ppl.weights.should_resample`][ebm_ppl.weights.should_resample]).

Each estimator is an ``(init, estimate, advance)`` triple of pure functions. Iteration k:
``estimate`` at (theta_k, X_k, A_k) -> gradient; the optimizer gives theta_{k+1};
``advance`` moves X_k -> X_{k+1} with grad U_{theta_k} (cached) and evaluates U_{theta_{k+1}}
(value and x-gradient, one evaluation per walker) at the new point.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from ..weights import ess as kish_ess
from ..weights import log_mean_exp, should_resample, systematic_resample
from ..kernels import (JarzynskiState, LangevinState, jarzynski_init, jarzynski_step,
                       langevin_init, mala_step, ula_step)


class EstimatorFns(NamedTuple):
    """``init(key, params) -> state``; ``estimate(key, params, state, idx) -> (grads, state,
    metrics)`` with ``idx`` the data rows of this iteration (None: all);
    ``advance(key, params_next, state, k) -> (state, metrics)``."""

    init: Callable
    estimate: Callable
    advance: Callable


class WalkerState(NamedTuple):
    """CD/PCD walkers (ULA states under the current theta)."""

    walkers: LangevinState


class JarzynskiWalkers(NamedTuple):
    """Weighted walkers plus the constant log Z_theta_0 that anchors the absolute log Z."""

    walkers: JarzynskiState
    log_z0: jax.Array


def rows(data, idx):
    """The data batch of an iteration: all rows when ``idx`` is None."""
    return data if idx is None else data[idx]


def batch_energy(energy_fn, params, xs):
    return jax.vmap(energy_fn, in_axes=(None, 0))(params, xs)


def contrastive_grad(energy_fn, params, batch, walkers_x, weights):
    """Gradient of eq. 94 with a weighted walker average; also returns E_batch[U_theta]."""

    def surrogate(p):
        data_u = jnp.mean(batch_energy(energy_fn, p, batch))
        model_u = jnp.sum(weights * batch_energy(energy_fn, p, walkers_x))
        return data_u - model_u, data_u

    (gap, data_u), grads = jax.value_and_grad(surrogate, has_aux=True)(params)
    return grads, data_u, gap


def alive_walkers(state) -> jax.Array:
    """Walkers whose position, energy and gradient are finite (and weight, if they carry one,
    is non-zero); the others are dead: weight zero in every average."""
    alive = (jnp.all(jnp.isfinite(state.position), axis=-1) & jnp.isfinite(state.potential_energy)
             & jnp.all(jnp.isfinite(state.grad), axis=-1))
    log_weight = getattr(state, "log_weight", None)
    return alive if log_weight is None else alive & jnp.isfinite(log_weight)


def _safe_positions(x, alive, batch):
    """Dead walkers' positions replaced by a data point (their weight is zero), so that a NaN
    position cannot leak into the gradient through 0 * NaN."""
    return jnp.where(alive[:, None], x, batch[0])


def _respawn_dead(key, walkers, diverged):
    """Copy live walkers over dead ones (systematic resampling over the live ones); a no-op
    (the same walkers, bit for bit) when none died or none is alive."""
    alive = alive_walkers(walkers) & ~diverged

    def respawn(w):
        idx = systematic_resample(key, jnp.where(alive, 0.0, -jnp.inf))
        src = jnp.where(alive, jnp.arange(alive.shape[0]), idx)
        return jax.tree.map(lambda leaf: leaf[src], w)

    return lax.cond(jnp.any(~alive) & jnp.any(alive), respawn, lambda w: w, walkers)


def _death_metrics(before, after, diverged=None) -> dict:
    alive_before, alive_after = alive_walkers(before), alive_walkers(after)
    if diverged is not None:
        alive_after = alive_after & ~diverged
    return {"num_dead": jnp.sum(alive_before & ~alive_after), "num_alive": jnp.sum(alive_after)}


def draw_rows(key, data, num):
    n = data.shape[0]
    if num <= n:
        return data[jax.random.permutation(key, n)[:num]]
    return data[jax.random.randint(key, (num,), 0, n)]


def _ula_steps(key, state, potential, step_size, num_steps, step_fn=ula_step):
    """``num_steps`` moves of every walker; also returns which walkers diverged on the way."""
    def one(carry, k):
        s, diverged = carry
        s, info = jax.vmap(step_fn, in_axes=(0, 0, None, None))(
            jax.random.split(k, s.position.shape[0]), s, potential, step_size)
        return (s, diverged | info.is_divergent), None

    diverged = jnp.zeros(state.position.shape[0], bool)
    (state, diverged), _ = lax.scan(one, (state, diverged), jax.random.split(key, num_steps))
    return state, diverged


def equilibrate(key, energy_fn, params, start, step_size, num_steps):
    """Walkers for theta_0 by MALA from ``start`` (used when ``init_walkers`` is not given)."""
    potential = lambda x: energy_fn(params, x)  # noqa: E731
    state = jax.vmap(langevin_init, in_axes=(0, None))(start, potential)
    return _ula_steps(key, state, potential, step_size, num_steps, step_fn=mala_step)[0].position


def contrastive_divergence(energy_fn, data, *, num_walkers: int, step_size, num_steps: int = 1,
                           persistent: bool = False, reinit_every: int = 1) -> EstimatorFns:
    """CD (Algorithm 1; ``reinit_every`` > 1 restarts from the data every so many iterations)
    or PCD (Algorithm 2, ``persistent=True``)."""

    def reset(key, params):
        key_rows, key_move = jax.random.split(key)
        potential = lambda x: energy_fn(params, x)  # noqa: E731
        start = jax.vmap(langevin_init, in_axes=(0, None))(
            draw_rows(key_rows, data, num_walkers), potential)
        if persistent:
            return start
        return _ula_steps(key_move, start, potential, step_size, num_steps)[0]

    def init(key, params):
        return WalkerState(reset(key, params))

    def estimate(key, params, state, idx):
        batch = rows(data, idx)
        alive = alive_walkers(state.walkers)  # dead walkers (non-finite) get weight zero
        x = _safe_positions(state.walkers.position, alive, batch)
        weights = jnp.where(alive, 1.0 / jnp.maximum(jnp.sum(alive), 1), 0.0).astype(x.dtype)
        grads, data_u, gap = contrastive_grad(energy_fn, params, batch, x, weights)
        return grads, state, {"data_energy": data_u, "energy_gap": gap}

    def advance(key, params_next, state, k):
        potential = lambda x: energy_fn(params_next, x)  # noqa: E731
        if persistent:
            walkers, diverged = _ula_steps(key, state.walkers, potential, step_size, num_steps)
        else:
            walkers, diverged = lax.cond(
                (k + 1) % reinit_every == 0,
                lambda: (reset(key, params_next), jnp.zeros(num_walkers, bool)),
                lambda: _ula_steps(key, state.walkers, potential, step_size, num_steps))
        # a walker dies when its energy or gradient becomes non-finite or a move diverges;
        # PCD has no weights to resample: live walkers are copied over the dead ones
        metrics = _death_metrics(state.walkers, walkers, diverged)
        walkers = _respawn_dead(jax.random.fold_in(key, 1), walkers, diverged)
        return WalkerState(walkers), metrics

    return EstimatorFns(init, estimate, advance)


def jarzynski(energy_fn, data, *, init_walkers, log_z0, step_size, num_steps: int = 1,
              resample_threshold: float = 1 / 1.4) -> EstimatorFns:
    """Jarzynski-reweighted training, eq. 102-106 (walkers start in equilibrium with theta_0)."""

    def init(key, params):
        potential = lambda x: energy_fn(params, x)  # noqa: E731
        walkers = jax.vmap(jarzynski_init, in_axes=(0, None))(init_walkers, potential)
        return JarzynskiWalkers(walkers, jnp.asarray(log_z0, walkers.log_weight.dtype))

    def estimate(key, params, state, idx):
        walkers = state.walkers
        a = walkers.log_weight
        log_mean_w = log_mean_exp(a)
        ess = kish_ess(a)
        resample = should_resample(a, resample_threshold)  # ESS fraction below the threshold

        def do_resample(w):
            idx = systematic_resample(key, w.log_weight)
            moved = jax.tree.map(lambda leaf: leaf[idx], w)
            return moved._replace(log_weight=jnp.full_like(w.log_weight, log_mean_w))

        walkers = lax.cond(resample, do_resample, lambda w: w, walkers)
        batch = rows(data, idx)
        alive = alive_walkers(walkers)  # dead walkers: weight zero (removed at a resampling)
        weights = jnp.where(alive, jax.nn.softmax(jnp.where(alive, walkers.log_weight, -jnp.inf)),
                            0.0)
        grads, data_u, _ = contrastive_grad(energy_fn, params, batch,
                                            _safe_positions(walkers.position, alive, batch),
                                            weights)
        log_z = state.log_z0 + log_mean_w  # eq. 104
        metrics = {"loss": log_z + data_u, "log_z": log_z, "ess": ess,  # loss: eq. 106
                   "resampled": resample, "data_energy": data_u}
        return grads, JarzynskiWalkers(walkers, state.log_z0), metrics

    def advance(key, params_next, state, k):
        potential = lambda x: energy_fn(params_next, x)  # noqa: E731

        def one(w, kk):
            w, info = jax.vmap(jarzynski_step, in_axes=(0, 0, None, None))(
                jax.random.split(kk, w.position.shape[0]), w, potential, step_size)
            return w, jnp.sum(info.is_divergent)

        walkers, divergent = lax.scan(one, state.walkers, jax.random.split(key, num_steps))
        metrics = {"divergent": jnp.sum(divergent), **_death_metrics(state.walkers, walkers)}
        return JarzynskiWalkers(walkers, state.log_z0), metrics

    return EstimatorFns(init, estimate, advance)
