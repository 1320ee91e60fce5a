"""Step-size selection for unadjusted samplers by the kernel Stein discrepancy.

ULA at step h has two errors (seed Example 4.1 and eq. 73): a bias of its stationary law that
grows with h (the covariance is inflated by (I - h Sigma^{-1}/2)^{-1}), and, at a fixed budget
of gradient evaluations, a Monte Carlo and burn-in error that grows as h shrinks (the chain
moves a time of only h per gradient). The KSD of the draws measures both against the target,
from the score alone, so the step of least KSD on a grid is the best trade-off for that budget
(the selection criterion of Gorham & Mackey 2017, Sec. 5, for approximate MCMC).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import check_key, check_positive
from .stein import stein_discrepancy


@dataclass(frozen=True)
class StepSizeSelection:
    """Result of [`select_step_size`][ebm_ppl.diagnostics.step_size.select_step_size]: ``step_sizes``
    (sorted), their ``ksd`` values, the
    ``best`` step (the minimum of a parabola in (log h, log KSD) through the grid's least
    KSD and its two neighbours, clipped to their interval; ``best_on_grid`` when the least KSD
    is at an end of the grid), ``best_on_grid`` (the grid step of least KSD), the gradient
    budget per step size and repeat ``num_gradients``, ``num_repeats``, the standard error of
    each mean KSD over the repeats ``ksd_se`` (NaN for one repeat), the kept ``draws`` of the
    first repeat (step -> (chain, draw, dim)) and ``num_steps`` per chain."""

    step_sizes: np.ndarray
    ksd: np.ndarray
    best: float
    num_gradients: int
    num_steps: int
    draws: dict
    num_repeats: int = 1
    ksd_se: np.ndarray | None = None
    best_on_grid: float = float("nan")


def _refine(steps, ksd) -> float:
    """Vertex of the parabola through the least KSD and its neighbours in log-log coordinates
    (successive parabolic interpolation), clipped to the neighbours' interval."""
    i = int(np.argmin(ksd))
    if i == 0 or i == steps.size - 1 or not np.all(np.isfinite(ksd[i - 1:i + 2])):
        return float(steps[i])
    u, v = np.log(steps[i - 1:i + 2]), np.log(ksd[i - 1:i + 2])
    a, b, _ = np.polyfit(u, v, 2)
    if a <= 0:
        return float(steps[i])
    return float(np.exp(np.clip(-b / (2 * a), u[0], u[2])))


@partial(jax.jit, static_argnames=("potential", "step_fn", "burn", "kept", "thin"))
def _chains(potential, step_fn, x0, key, h, *, burn, kept, thin):
    """``burn`` steps, then ``kept`` draws ``thin`` steps apart, for each row of x0."""
    from ..kernels import langevin_init

    def run(x, k):
        state = langevin_init(x, potential)

        def advance(state, n, key):
            def body(i, carry):
                st, kk = carry
                kk, sub = jax.random.split(kk)
                return step_fn(sub, st, potential, h)[0], kk
            return jax.lax.fori_loop(0, n, body, (state, key))[0]

        k_burn, k_keep = jax.random.split(k)
        state = advance(state, burn, k_burn)

        def keep(state, kk):
            state = advance(state, thin, kk)
            return state, state.position

        return jax.lax.scan(keep, state, jax.random.split(k_keep, kept))[1]

    return jax.vmap(run)(x0, jax.random.split(key, x0.shape[0]))


def select_step_size(potential_fn, init_params, step_sizes, *, num_gradients: int, key,
                     burn_in: float = 0.5, max_draws: int = 1000, preconditioner="id",
                     num_repeats: int = 1, step_fn=None) -> StepSizeSelection:
    """The ULA step of least KSD for a gradient budget, searched on the grid ``step_sizes``
    (and refined between the grid's best step and its neighbours by parabolic interpolation).

    Args:
        potential_fn: U of a flat (dim,) array (or an Energy / target).
        init_params: (num_chains, dim) starting points (the same for every step size).
        step_sizes: the grid of steps h to try.
        num_gradients: gradient evaluations per step size, all chains together (ULA costs one
            per step, so each chain makes num_gradients // num_chains steps).
        key: random key (the same noise for every step size: common random numbers).
        burn_in: fraction of each chain discarded.
        max_draws: the kept draws (all chains) are thinned to at most this many for the KSD.
        preconditioner: fixed kernel matrix for all steps ("id", a number or an array; a choice
            computed from the draws, e.g. "med", would change the yardstick between steps).
        num_repeats: independent repeats (keys) per step, each with the full budget; the KSD
            is averaged over them. Near its minimum the KSD changes slowly with h while one
            run's KSD fluctuates by tens of percent, so a few repeats make the choice stable.
        step_fn: a pure kernel step ``(key, state, potential, h) -> (state, info)`` on
            [`langevin_init`][ebm_ppl.kernels.langevin_init] states (default ULA).
    """
    from ..kernels import ula_step
    from .stein import _flat_potential

    key = check_key(key)
    if isinstance(preconditioner, str) and preconditioner != "id":
        raise ValueError("select_step_size needs one kernel for all steps: give preconditioner "
                         "as 'id', a number or an array, not a choice computed from the draws")
    x0 = jnp.asarray(init_params, jnp.float64)
    if x0.ndim != 2:
        raise ValueError(f"init_params must have shape (num_chains, dim), got {x0.shape}")
    steps = np.sort(np.asarray([check_positive("step_sizes", h) for h in step_sizes]))
    if steps.size < 2:
        raise ValueError("step_sizes needs at least two steps to choose from")
    num_gradients = check_positive("num_gradients", num_gradients, integer=True)
    if not 0.0 <= burn_in < 1.0:
        raise ValueError(f"burn_in must lie in [0, 1), got {burn_in!r}")
    num_chains = x0.shape[0]
    total = num_gradients // num_chains
    burn = int(burn_in * total)
    kept = max(1, min(int(max_draws) // num_chains, total - burn))
    thin = max(1, (total - burn) // kept)
    if total - burn < 2:
        raise ValueError("num_gradients is too small for this many chains")
    potential = _flat_potential(potential_fn, x0[0])
    step_fn = ula_step if step_fn is None else step_fn
    num_repeats = check_positive("num_repeats", num_repeats, integer=True)
    values, draws = np.full((steps.size, num_repeats), np.inf), {}
    for r, key_r in enumerate(jax.random.split(key, num_repeats)):
        for i, h in enumerate(steps):
            x = np.asarray(_chains(potential, step_fn, x0, key_r, jnp.asarray(h), burn=burn,
                                   kept=kept, thin=thin))
            if r == 0:
                draws[float(h)] = x
            if np.all(np.isfinite(x)):
                values[i, r] = stein_discrepancy(x, potential, preconditioner=preconditioner).ksd
    ksd = values.mean(1)
    if not np.any(np.isfinite(ksd)):
        raise ValueError("every step size diverged: try smaller steps")
    se = values.std(1, ddof=1) / np.sqrt(num_repeats) if num_repeats > 1 else np.full(
        steps.size, np.nan)
    return StepSizeSelection(step_sizes=steps, ksd=ksd, best=_refine(steps, ksd),
                             num_gradients=num_gradients, num_steps=burn + kept * thin,
                             draws=draws, num_repeats=num_repeats, ksd_se=se,
                             best_on_grid=float(steps[np.argmin(ksd)]))
