"""Annealing schedules beta_0 = 0 < beta_1 < ... < beta_K = 1.

Fixed schedules are plain arrays ([`linear`][ebm_ppl.evidence.schedules.linear],
[`geometric`][ebm_ppl.evidence.schedules.geometric], [`power`][ebm_ppl.evidence.schedules.power]); an
[`Adaptive`][ebm_ppl.evidence.schedules.Adaptive] schedule picks each next beta inside the engine so that the
conditional ESS
of the weight increment (see [`conditional_ess`][ebm_ppl.evidence.resampling.conditional_ess]) equals a
target, by bisection. Paths here are linear in beta (``U_beta = U_0 + beta V``), so the
increment for ``beta -> beta'`` is ``-(beta' - beta) V(x)`` and the search costs no gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import check_positive
from .resampling import conditional_ess

__all__ = ["linear", "geometric", "power", "Adaptive", "next_beta", "as_schedule",
           "stage_cap_message"]


def _check_stages(num_stages):
    return check_positive("num_stages", num_stages, integer=True)


def linear(num_stages: int) -> np.ndarray:
    """``num_stages`` equal steps from 0 to 1 (``num_stages + 1`` betas)."""
    return np.linspace(0.0, 1.0, _check_stages(num_stages) + 1)


def geometric(num_stages: int, beta_min: float = 1e-4) -> np.ndarray:
    """0, then ``num_stages`` betas spaced geometrically from ``beta_min`` to 1."""
    n = _check_stages(num_stages)
    if not 0.0 < beta_min < 1.0:
        raise ValueError(f"beta_min must lie in (0, 1), got {beta_min!r}")
    return np.concatenate([[0.0], np.geomspace(beta_min, 1.0, n)])


def power(num_stages: int, exponent: float = 4.0) -> np.ndarray:
    """``(k / K)^exponent``: dense near 0, where a broad reference meets the target."""
    n = _check_stages(num_stages)
    exponent = check_positive("exponent", exponent)
    return np.linspace(0.0, 1.0, n + 1) ** exponent


@dataclass(frozen=True)
class Adaptive:
    """Choose each next beta so the conditional ESS fraction of the increment is ``target_ess``.

    ``min_step`` guarantees progress (the schedule is strictly increasing and reaches 1 in at
    most ``1 / min_step`` stages); ``bisection_steps`` sets the precision of the search.
    """

    target_ess: float = 0.5
    min_step: float = 1e-6
    bisection_steps: int = 30

    def __post_init__(self):
        if not 0.0 < self.target_ess < 1.0:
            raise ValueError(f"target_ess must lie in (0, 1), got {self.target_ess!r}")
        if not 0.0 < self.min_step < 1.0:
            raise ValueError(f"min_step must lie in (0, 1), got {self.min_step!r}")


def next_beta(log_w: jax.Array, delta: jax.Array, beta: jax.Array, schedule: Adaptive):
    """The largest ``beta' <= 1`` with conditional ESS >= target (bisection), at least
    ``beta + min_step``. ``log_w`` are the current log weights, ``delta`` is ``V(x)``."""
    def cess(b):
        return conditional_ess(log_w, increment(delta, b - beta))

    def body(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        ok = cess(mid) >= schedule.target_ess
        return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid)

    one = jnp.ones_like(beta)
    lo, _ = jax.lax.fori_loop(0, schedule.bisection_steps, body, (beta, one))
    nxt = jnp.where(cess(one) >= schedule.target_ess, one, lo)
    return jnp.clip(jnp.maximum(nxt, beta + schedule.min_step), 0.0, 1.0)


def increment(delta: jax.Array, dbeta) -> jax.Array:
    """``-dbeta * V`` with a non-finite ``V`` giving weight zero (log -inf) once dbeta != 0."""
    finite = jnp.isfinite(delta)
    inc = -dbeta * jnp.where(finite, delta, 0.0)
    return jnp.where(finite | (dbeta == 0), inc, -jnp.inf)


def as_schedule(schedule, num_stages=None, target_ess: float = 0.5):
    """Normalize the user's ``schedule`` argument into an [`Adaptive`][ebm_ppl.evidence.schedules.Adaptive] or
    a beta array."""
    if isinstance(schedule, Adaptive):
        return schedule
    if isinstance(schedule, str):
        if schedule == "adaptive":
            return Adaptive(target_ess=target_ess)
        builders = {"linear": linear, "geometric": geometric, "power": power}
        if schedule not in builders:
            raise ValueError(f"unknown schedule {schedule!r}; valid choices are 'adaptive', "
                             "'linear', 'geometric', 'power' or an increasing array of betas")
        if num_stages is None:
            raise ValueError(f"num_stages is required with schedule={schedule!r}")
        return builders[schedule](num_stages)
    betas = np.asarray(schedule, dtype=np.float64)
    if betas.ndim != 1 or betas.size < 2:
        raise ValueError("schedule must be a 1-D array of at least two betas")
    if not np.all(np.isfinite(betas)) or betas[0] != 0.0 or betas[-1] != 1.0:
        raise ValueError("schedule must start at 0 and end at 1")
    if np.any(np.diff(betas) <= 0):
        raise ValueError("schedule must be strictly increasing")
    return betas


def stage_cap_message(schedule, betas, max_stages: int) -> str | None:
    """The note for an adaptive schedule that hit ``max_stages`` and jumped to beta = 1 (its
    last step longer than 0.05), else None. ``betas`` run from 0 to 1."""
    if isinstance(schedule, Adaptive) and len(betas) - 1 >= max_stages and \
            betas[-1] - betas[-2] > 0.05:
        return f"max_stages={max_stages} reached: the last stage jumped to beta=1"
    return None
