"""Langevin kernels: ULA (seed Definition 4.3, eq. 67) and MALA (Definition 4.4, eq. 78).

ULA is the move ``x' = x - h grad U(x) + sqrt(2h) xi``; MALA is that move followed by the
Metropolis-Hastings test of eq. 60 with the Gaussian proposal density of eq. 78. The log
acceptance ratio of MALA, with the energy of the reverse move allowed to differ from the
forward one, is exactly the Jarzynski work increment of eq. 102-103 (see
[`ebm_ppl.kernels.jarzynski`][ebm_ppl.kernels.jarzynski]), so both share
[`langevin_log_ratio`][ebm_ppl.kernels.langevin.langevin_log_ratio].
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from .metric import Metric, apply_inverse, mass_norm_sq, scale_noise

Array = jax.Array
PotentialFn = Callable[[Array], Array]

# A move whose log Metropolis ratio falls below -MAX_DELTA_ENERGY is divergent (NumPyro's NUTS
# uses the same bound on its energy error): an unadjusted walker making it has exploded, and
# its weight, below exp(-1000) relative to its previous one, is set to zero.
MAX_DELTA_ENERGY = 1000.0


class LangevinState(NamedTuple):
    """Position with the energy and gradient cached there (so a step costs one gradient)."""

    position: Array
    potential_energy: Array
    grad: Array


class StepInfo(NamedTuple):
    """Per-step diagnostics of one kernel step on one walker (not carried to the next step).

    Not to be confused with `ebm_ppl.evidence.MoveInfo`, what an annealing move
    over a
    batch of walkers reports to the engine. (This class was also called ``MoveInfo`` before;
    ``ebm_ppl.kernels.MoveInfo`` still works, with a DeprecationWarning.)

    ``energy`` is MALA's Hamiltonian after the step (``U + |p|^2/2`` of the one-leapfrog HMC
    step MALA is; NaN for kernels where it has no meaning)."""

    accept_prob: Array
    is_accepted: Array
    is_divergent: Array
    energy: Array | float = float("nan")


def langevin_init(position: Array, potential_fn: PotentialFn) -> LangevinState:
    """Evaluate and cache ``U`` and ``grad U`` at ``position``."""
    energy, grad = jax.value_and_grad(potential_fn)(position)
    return LangevinState(position, energy, grad)


def _move_with_noise(noise: Array, state: LangevinState, potential_fn: PotentialFn, step_size,
                     metric: Metric | None) -> LangevinState:
    x = state.position
    new_x = (x - step_size * apply_inverse(metric, state.grad)
             + jnp.sqrt(2.0 * step_size) * scale_noise(metric, noise))
    return langevin_init(new_x, potential_fn)


def ula_move(key: Array, state: LangevinState, potential_fn: PotentialFn,
             step_size, metric: Metric | None = None) -> LangevinState:
    """One ULA move, eq. 67: ``x' = x - h grad U(x) + sqrt(2h) xi``, then cache U, grad U at x'.

    With a ``metric`` (mass matrix M, [`metric`][ebm_ppl.kernels.metric]) the move is the
    preconditioned ``x' = x - h M^-1 grad U(x) + sqrt(2h) M^-1/2 xi``."""
    x = state.position
    noise = jax.random.normal(key, x.shape, x.dtype)
    return _move_with_noise(noise, state, potential_fn, step_size, metric)


def _log_proposal(x_to: Array, x_from: Array, grad_from: Array, step_size,
                  metric: Metric | None = None) -> Array:
    """log g(x_to | x_from) of eq. 78 up to the Gaussian normalization (it cancels):
    ``-(x_to - x_from + h M^-1 grad)^T M (.) / (4h)``, M the identity without a metric."""
    diff = x_to - x_from + step_size * apply_inverse(metric, grad_from)
    return -mass_norm_sq(metric, diff) / (4.0 * step_size)


def langevin_log_ratio(old: LangevinState, new: LangevinState, step_size,
                       metric: Metric | None = None) -> Array:
    """``log[exp(-U'(x')) g'(x|x') / (exp(-U(x)) g(x'|x))]``.

    ``old`` holds U and grad U of the forward energy at x, ``new`` those of the (possibly
    different) reverse energy at x'. With equal energies it is MALA's log acceptance ratio;
    with U_k -> U_{k+1} it is the Jarzynski increment ``-alpha_{k+1}(x', x) + alpha_k(x, x')``
    of eq. 102-103. Non-finite values map to -inf. A ``metric`` enters both proposal
    densities, forward and reverse (the same M), as detailed balance requires.
    """
    log_ratio = (old.potential_energy - new.potential_energy
                 + _log_proposal(old.position, new.position, new.grad, step_size, metric)
                 - _log_proposal(new.position, old.position, old.grad, step_size, metric))
    return jnp.where(jnp.isfinite(log_ratio), log_ratio, -jnp.inf)


def ula_step(key: Array, state: LangevinState, potential_fn: PotentialFn,
             step_size, metric: Metric | None = None) -> tuple[LangevinState, StepInfo]:
    """ULA: always moves, so it is biased at any fixed step (seed Example 4.1).

    The move is reported divergent (it still happens) when the energy or gradient becomes
    non-finite or when MALA would have accepted it with probability below exp(-1000).
    """
    new = ula_move(key, state, potential_fn, step_size, metric)
    divergent = (~jnp.isfinite(new.potential_energy) | ~jnp.all(jnp.isfinite(new.grad))
                 | (langevin_log_ratio(state, new, step_size, metric) < -MAX_DELTA_ENERGY))
    one = jnp.ones((), new.potential_energy.dtype)
    return new, StepInfo(one, jnp.array(True), divergent)


def mala_step(key: Array, state: LangevinState, potential_fn: PotentialFn,
              step_size, metric: Metric | None = None) -> tuple[LangevinState, StepInfo]:
    """MALA: a ULA proposal accepted with probability min(1, exp(log_ratio)) (eq. 60).

    MALA is one leapfrog step of HMC with step ``sqrt(2h)`` and a fresh momentum
    ``p = M^1/2 xi``, and ``log_ratio = H(x, p) - H(x', p')`` with ``H = U + |xi|^2/2``: the
    ``energy`` in the info is H after the step (ArviZ's ``sample_stats.energy``, for E-BFMI).
    """
    key_move, key_accept = jax.random.split(key)
    x = state.position
    noise = jax.random.normal(key_move, x.shape, x.dtype)
    proposal = _move_with_noise(noise, state, potential_fn, step_size, metric)
    log_ratio = langevin_log_ratio(state, proposal, step_size, metric)
    accept_prob = jnp.minimum(1.0, jnp.exp(log_ratio))
    log_u = jnp.log(jax.random.uniform(key_accept, dtype=log_ratio.dtype))
    accepted = log_u < log_ratio
    new = jax.tree.map(lambda a, b: jnp.where(accepted, a, b), proposal, state)
    divergent = ~jnp.isfinite(proposal.potential_energy) | (log_ratio < -MAX_DELTA_ENERGY)
    hamiltonian = state.potential_energy + 0.5 * jnp.sum(noise * noise)
    energy = jnp.where(accepted, hamiltonian - log_ratio, hamiltonian)
    return new, StepInfo(accept_prob, accepted, divergent, energy)
