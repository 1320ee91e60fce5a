"""Free energies of spin systems: anneal in inverse temperature from beta = 0 (seed section 5).

At beta = 0 every configuration has the same weight, so ``log Z_0 = N log 2`` and exact draws
are uniform spins. The path ``U_t(s) = t U(s)``, t from 0 to 1, is linear in t, which is the
path contract of the evidence engine ([`ebm_ppl.evidence.anneal`][ebm_ppl.evidence.anneal], the same loop as
``ep.log_partition``): annealed-importance increments ``-(t' - t) U(s)``, resampling inside
independent walker groups, and Metropolis or heat-bath Gibbs sweeps at each t (they leave
exp(-t U) invariant, so no extra weight). ``F = -log Z`` (in units of the temperature).
"""

from __future__ import annotations

import math
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import check_choice, check_key, check_positive
from .kernels import gibbs_sweep, metropolis_sweep, spin_init

Array = jax.Array
SWEEPS = {"gibbs": gibbs_sweep, "metropolis": metropolis_sweep}


class SpinWalkers(NamedTuple):
    """Walkers of the engine: spins ``(n, N)`` and the untempered ``U(s)`` (= dU_t / dt)."""

    position: Array
    u: Array


def spin_move(model, kernel: str = "gibbs"):
    """The engine's move: one sweep per walker at ``t U`` (``step_size`` is ignored)."""
    from ..evidence.engine import MoveInfo
    sweep = SWEEPS[check_choice("kernel", kernel, tuple(SWEEPS))]

    def one(key, x, t):
        tempered = model.tempered(t)
        new, info = sweep(key, spin_init(x, tempered), tempered)
        return new.position, info.accept_prob

    def move(key, state: SpinWalkers, t, step_size):
        n = state.position.shape[0]
        x, acc = jax.vmap(one, in_axes=(0, 0, None))(jax.random.split(key, n), state.position, t)
        zero = jnp.zeros(n, x.dtype)
        info = MoveInfo(acc, zero, jnp.zeros((), x.dtype))
        return SpinWalkers(x, jax.vmap(model.potential)(x)), info

    return move


def log_partition(model, *, key, kernel: str = "gibbs", num_walkers: int = 1024,
                  schedule="adaptive", num_stages: int | None = None, target_ess: float = 0.7,
                  num_moves: int = 2, resample_threshold: float = 1.0,
                  num_groups: int | None = None, max_stages: int = 1000,
                  progress_bar: bool = True):
    """log Z of a spin model by annealing from beta = 0; returns an
    [`EvidenceResult`][ebm_ppl.evidence.EvidenceResult] (as ``ep.log_partition`` does).

    Args:
        model: a spin model ([`Ising`][ebm_ppl.spins.Ising], [`CurieWeiss`][ebm_ppl.spins.CurieWeiss],
            [`BoltzmannMachine`][ebm_ppl.spins.BoltzmannMachine], ...); its own ``beta`` is the target.
        kernel: "gibbs" (heat bath) or "metropolis" sweeps, ``num_moves`` per stage.
        schedule: "adaptive" (next t at conditional ESS ``target_ess``), "linear", "geometric",
            "power" (with ``num_stages``), or an increasing array of t from 0 to 1.
        num_groups: independent walker groups for ``log_z_se`` (default ``num_walkers // 64``,
            at most 16).
    """
    from ..evidence.engine import anneal
    from ..evidence.result import EvidenceResult, group_standard_error
    from ..evidence.schedules import as_schedule, stage_cap_message

    key = check_key(key)
    if not jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.wrap_key_data(key)
    if not (hasattr(model, "tempered") and hasattr(model, "random_spins")):
        raise ValueError("model must be a spin model (ep.spins.Ising, CurieWeiss, "
                         f"BoltzmannMachine, ...), got {type(model).__name__}")
    check_choice("kernel", kernel, tuple(SWEEPS))
    n = check_positive("num_walkers", num_walkers, integer=True)
    num_moves = check_positive("num_moves", num_moves, integer=True)
    max_stages = check_positive("max_stages", max_stages, integer=True)
    g = min(16, max(1, n // 64)) if num_groups is None else check_positive(
        "num_groups", num_groups, integer=True)
    if n % g or n // g < 2:
        raise ValueError(f"num_walkers={n} must be a multiple of num_groups={g} with at least "
                         "2 walkers per group")
    if not np.isfinite(resample_threshold) or resample_threshold < 0:
        raise ValueError(f"resample_threshold must be >= 0, got {resample_threshold!r}")
    sched = as_schedule(schedule, num_stages, target_ess)

    t0 = time.perf_counter()
    key_init, key_run = jax.random.split(key)
    x0 = model.random_spins(key_init, n)
    state = SpinWalkers(x0, jax.jit(jax.vmap(model.potential))(x0))
    log_z0 = model.dim * math.log(2.0)
    out = anneal(key_run, state, delta_fn=lambda s: s.u, move=spin_move(model, kernel),
                 schedule=sched, log_z0=log_z0, num_moves=num_moves, step_size=1.0,
                 adapt_step_size=False, resample_threshold=resample_threshold, num_groups=g,
                 resampling="systematic",  # its log_z_se is the spread of the groups
                 max_stages=max_stages, progress_bar=progress_bar,
                 desc=f"log Z ({model.name}, {kernel})")
    h = out.history
    betas = np.concatenate([[0.0], h["beta"]])
    messages = []
    if (capped := stage_cap_message(sched, betas, max_stages)) is not None:
        messages.append(capped)
    log_z, log_z_se = group_standard_error(out.group_log_z)
    return EvidenceResult(
        log_z=float(log_z), log_z_se=float(log_z_se), samples=np.asarray(out.state.position),
        log_weights=np.asarray(out.log_weights), ess=h["ess"], schedule=betas,
        num_resamples=int(np.sum(h["num_resampled"] > 0)), num_gradient_evals=0,
        method=f"spins-{kernel}", num_walkers=n, group_log_z=out.group_log_z,
        acceptance=h["accept"], step_size=np.zeros_like(h["accept"]), reference="uniform",
        reference_info=dict(kind="uniform spins (beta = 0)", log_z0=log_z0,
                            sweeps=int(n * num_moves * (len(betas) - 1))),
        wall_time=time.perf_counter() - t0, messages=tuple(messages))
