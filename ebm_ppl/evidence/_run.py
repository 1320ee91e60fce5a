"""One annealing run of a path, from the initial draws to the
[`EvidenceResult`][ebm_ppl.evidence.EvidenceResult]: the move and schedule the options name,
the forward pass of the one engine ([`anneal`][ebm_ppl.evidence.anneal]), the optional bias
probe and reverse (BAR) pass, the messages and reliability verdict, and the result.

"is" is plain importance sampling from the reference (seed eq. 2); "ti" thermodynamic
integration ``log Z_1 = log Z_0 - int_0^1 E_beta[V] dbeta`` on the same run.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import SamplingDivergedError
from ..sharding import to_host
from . import moves as _moves
from ._modes import target_modes
from ._probe import (MIN_ANCESTORS, PROBE_FRACTION, effort_trend, run_probe, total_error,
                     shares_programs, verdict)
from ._walkers import initial_step, initial_walkers, path_delta, samples
from .bar import bar_log_z
from .engine import GENEALOGY_LAG, anneal
from .options import AnnealOptions, run_keys, split_key, typed_key
from .reference import fitted_to_pilot
from .resampling import ess_fraction, log_mean_exp, systematic_resample
from .result import EvidenceResult, group_standard_error
from .schedules import as_schedule, power, stage_cap_message

__all__ = ["run", "finish", "move_for", "schedule_for"]

# ULA's weights dissipate where the global step is large for the local scale (measured:
# benchmarks/RESULTS.md, "Jarzynski's lost mode"; tests/test_evidence.py)
JARZYNSKI_CAUTION = (
    "jarzynski: ULA's weight corrections (eq. 102-103) lose the mass of regions where the one "
    "global step is large for the local scale, such as a narrow mode beside a wide one, and "
    "neither log_z_se nor the verdict sees the lost mass (a 4-D mixture of widths 1 and 0.5 "
    "from a N(0, 25 I) reference: log Z 1.5 low with reliable=True); for evidence prefer "
    "method='hmc' or 'mala'")


def move_for(path, opts: AnnealOptions):
    """The engine's move for the options' method on ``path``."""
    if opts.spins:
        return path.move(opts.method)
    builder: Any = _moves.MOVES["nuts" if opts.method == "ti" else opts.method]
    if opts.method == "hmc":
        return builder(path, opts.num_leapfrog, opts.precondition)
    return builder(path, precondition=opts.precondition)


def schedule_for(opts: AnnealOptions):
    """The schedule the options name (a fixed power ladder for "ti" when adaptive)."""
    schedule = AnnealOptions.schedule_array_or_adaptive(opts.schedule)
    if opts.method == "ti" and isinstance(schedule, str) and schedule == "adaptive":
        return power(32 if opts.num_stages is None else opts.num_stages)
    return as_schedule(schedule, opts.num_stages, opts.target_ess)


def run(path, key, opts: AnnealOptions, *, reference="uniform", reference_info=None, t0=None,
         sharding=None, keys=None):
    """One annealing run of ``path`` (a `LinearPath` or a spin path) with ``opts``, from the
    initial draws to the `EvidenceResult` (without compile time). ``keys``: `run_keys` of
    ``key`` when the caller has them already (`entry_keys`)."""
    t0 = time.perf_counter() if t0 is None else t0
    reference_info = {} if reference_info is None else reference_info
    method, n = opts.method, int(opts.num_walkers)
    if opts.spins:  # the key split of the spin driver of earlier releases (same numbers)
        (key_init, key_fwd), key_rev, probe_keys = split_key(typed_key(key)), None, None
    else:
        key_init, key_fwd, key_rev, *probe_keys = run_keys(key) if keys is None else keys
    state, trace = initial_walkers(path, key_init, n, sharding, opts.precondition)
    grads = 0 if opts.spins else n + int(reference_info.get("num_gradient_evals", 0))
    if method == "is":
        return _importance(path, state, grads, reference, reference_info, t0)
    sched = schedule_for(opts)
    step_size = opts.step_size
    if opts.spins:
        step_size, desc = 1.0, f"log Z ({path.name}, {method})"
    else:
        desc = f"log Z ({method})"
        if step_size is None:
            step_size = initial_step(state, method, opts.initial_step(path.dim),
                                     opts.precondition, trace)
    move = move_for(path, opts)
    modes = None
    if opts.keep_modes:
        modes, mode_grads = target_modes(path, state.position)
        grads += mode_grads
        reference_info = {**reference_info, "kept_modes": modes,
                          "mode_search_gradient_evals": mode_grads}
    out = anneal(key_fwd, state, delta_fn=path_delta, move=move, schedule=sched,
                 options=opts, log_z0=path.log_z0, step_size=step_size, desc=desc,
                 pools=PROBE_FRACTION if shares_programs(opts, n) else 1,
                 modes=modes if modes is not None and len(modes) > 1 else None)
    return finish(path, probe_keys, opts, state, out, sched, step_size, move, grads, reference,
                  reference_info, t0, key_rev)


def finish(path, probe_keys, opts: AnnealOptions, state, out, sched, step_size, move, grads,
           reference, reference_info, t0, key_rev, probe=None):
    """The `EvidenceResult` of the annealing output ``out`` of `run` (from the initial
    walkers ``state``): messages, the bias probe (run here from ``probe_keys``, the last two
    of `run_keys`, unless ``probe``, its `AnnealOutput` or the `SamplingDivergedError` it
    raised, is given, as `batch` does), the reverse pass and the verdict."""
    method, n, g = opts.method, int(opts.num_walkers), int(opts.num_groups)
    h = out.history
    grads += out.num_grads
    messages = []
    if fitted_to_pilot(reference_info):
        messages.append(
            "no minimum qualified for a Laplace reference (an energy unbounded below, or a "
            "needle like a funnel's neck), so the reference was fitted to a pilot run: mass that "
            "no walker reached biases log Z low beyond log_z_se; compare with a slower run "
            "(higher target_ess or num_moves)")
    if len(h["ess"]) and np.min(h["ess"]) < 0.05:
        k = int(np.argmin(h["ess"]))
        messages.append(
            f"the weights degenerated (ESS {h['ess'][k]:.3f} at stage {k + 1}, beta "
            f"{h['beta'][k]:.3g}): log Z is probably biased low and log_z_se too small; use a "
            "smaller step_size, a higher target_ess or more walkers")
    if method == "jarzynski":
        messages.append(JARZYNSKI_CAUTION)
    dead = np.asarray(h["num_dead"])
    if dead.sum():
        messages.append(
            f"{int(dead.sum())} walker(s) died (non-finite energy or gradient; first at stage "
            f"{int(np.argmax(dead > 0)) + 1}): their weights are zero and they were removed at "
            "the next resampling; a smaller step_size avoids this")
    betas = np.concatenate([[0.0], h["beta"]])
    if (capped := stage_cap_message(sched, betas, opts.max_stages)) is not None:
        messages.append(capped)
    kept = len(reference_info.get("kept_modes", ()))
    if opts.keep_modes:
        messages.append(
            f"keep_modes: L-BFGS from the first initial walkers found {kept} mode(s)" + (
                f"; resampling kept each mode's walkers, and log_z_se is the spread of the "
                f"{g} independent groups (the one-run genealogy variance does not hold under "
                "mode-guarded resampling)" if kept > 1 else ": resampling as usual"))
    # spins: the spread of the groups (systematic resampling); mode-guarded resampling: the
    # same; else the genealogy
    guarded = kept > 1
    log_z, log_z_se = group_standard_error(out.group_log_z) if opts.spins or guarded else \
        (out.log_z, out.log_z_se)
    if not opts.spins and not guarded and (
            not log_z_se > 0 or out.num_ancestors < MIN_ANCESTORS):
        why = (f"the genealogy collapsed ({out.num_ancestors} initial walkers have descendants)"
               if out.num_ancestors < MIN_ANCESTORS else
               "the full-genealogy (Lee & Whiteley) variance was not positive (unresolved)")
        log_z_se = out.log_z_se_lag
        messages.append(f"log_z_se is the fixed-lag genealogy estimate (Olsson & Douc; "
                        f"{GENEALOGY_LAG} stages back, at least the ideal-mixing variance) "
                        f"because {why}; more walkers give the full one")
    if method == "ti":
        e0 = to_host(state.delta).reshape(g, -1)
        e0 = np.array([np.mean(r[np.isfinite(r)]) for r in e0])
        md = np.concatenate([e0[None], h["mean_delta"]], axis=0)
        ti = path.log_z0 - np.trapezoid(md, betas, axis=0)
        log_z, log_z_se = float(np.mean(ti)), float(np.std(ti, ddof=1) / np.sqrt(g))
        messages.append(f"TI: log_z_se excludes the quadrature error of {len(betas) - 1} "
                        f"stages; the SMC estimate on the same run is {out.log_z:.4f}")
    extra = {}
    if opts.bias_check and method != "ti":
        try:
            if probe is None:
                probe = run_probe(path, probe_keys, n, sched, step_size, move, opts)
            elif isinstance(probe, SamplingDivergedError):
                raise probe
        except SamplingDivergedError as err:  # a small probe can die where the run did not
            messages.append(f"unreliable: the bias probe of {max(n // PROBE_FRACTION, 2)} "
                            f"walkers diverged ({err}); raise num_walkers")
        else:
            grads += probe.num_grads
            extra.update(effort_trend(log_z, log_z_se, n, probe))
    if opts.bar:
        rev, rev_grads = _reverse(path, out, key_rev, betas, move, opts)
        extra.update(rev)
        grads += rev_grads
        gaps = {"BAR": (extra["log_z_bar"], extra["log_z_bar_se"]),
                "the reverse pass": (extra["log_z_reverse"], extra["log_z_reverse_se"])}
        bad = [f"{name} {value:.4f}" for name, (value, se) in gaps.items()
               if not abs(value - log_z) <= 3.0 * np.hypot(log_z_se, se)]
        extra["bar_consistent"] = not bad
        if bad:
            messages.append(
                f"forward log Z {log_z:.4f} disagrees with {' and '.join(bad)} beyond 3 combined "
                "standard errors (hysteresis): the annealing is too fast for its moves, and the "
                "forward log Z is probably biased low; raise target_ess or num_moves")
    if not opts.spins:  # spins: the groups' spread is the error bar (no verdict, as before)
        reasons = verdict(extra, h, sched, betas, opts.max_stages, reference_info,
                          None if guarded else out.num_ancestors)
        messages += [f"unreliable: {r}" for r in reasons]
        reasons += [m for m in messages if m.startswith("unreliable: the bias probe")]
        log_z_err = total_error(log_z_se, extra, reference_info)
        for private in ("_probe_text", "_bias_counted", "_replicate_se"):
            extra.pop(private, None)
        extra.update(reliable=not reasons, log_z_err=log_z_err)
    if opts.spins:
        reference_info = dict(kind="uniform spins (beta = 0)", log_z0=path.log_z0,
                              sweeps=int(n * int(opts.num_moves) * (len(betas) - 1)))
    return EvidenceResult(
        log_z=float(log_z), log_z_se=float(log_z_se), samples=samples(path, out.state.position),
        log_weights=to_host(out.log_weights), ess=h["ess"], schedule=betas,
        num_resamples=int(np.sum(h["num_resampled"] > 0)), num_gradient_evals=int(grads),
        method=f"spins-{method}" if opts.spins else method, num_walkers=n,
        group_log_z=out.group_log_z, acceptance=h["accept"],
        step_size=np.zeros_like(h["accept"]) if opts.spins else h["step_size"],
        num_dead=int(dead.sum()), num_dead_per_stage=dead,
        reference=reference, reference_info=reference_info,
        wall_time=time.perf_counter() - t0, messages=tuple(messages),
        walkers=out.state.position, **extra)


def _reverse(path, out, key, betas, move, opts: AnnealOptions):
    """Reverse pass from the final resampled walkers down the same schedule; BAR per stage."""
    k_res, k_run = jax.random.split(key)
    idx = systematic_resample(k_res, out.log_weights)
    state = jax.tree.map(lambda a: a[idx], out.state)
    rev = anneal(k_run, state, delta_fn=path_delta, move=move, schedule=betas[::-1].copy(),
                 options=opts, log_z0=0.0, step_size=float(out.history["step_size"][-1]),
                 desc="reverse pass")
    log_z_bar, se_bar = bar_log_z(out.increments, rev.increments, path.log_z0)
    # the reverse pass estimates log(Z_0 / Z_1)
    lz_rev, se_rev = rev.log_z, rev.log_z_se
    return dict(log_z_bar=log_z_bar, log_z_bar_se=se_bar, log_z_reverse=path.log_z0 - lz_rev,
                log_z_reverse_se=se_rev), rev.num_grads


def _importance(path, state, grads, reference, reference_info, t0):
    """Seed eq. 2: Z = E_0[exp(-U) / rho_0] with draws from the reference (no gradients)."""
    log_w = -jnp.where(jnp.isnan(state.delta), jnp.inf, state.delta) + path.log_z0
    n = log_w.shape[0]
    w = np.exp(to_host(log_w) - float(jnp.max(log_w)))
    se = float(w.std(ddof=1) / np.sqrt(n) / w.mean()) if w.mean() > 0 else float("inf")
    return EvidenceResult(
        log_z=float(log_mean_exp(log_w)), log_z_se=se, samples=samples(path, state.position),
        log_weights=to_host(log_w), ess=np.asarray([float(ess_fraction(log_w))]),
        schedule=np.array([0.0, 1.0]), num_resamples=0,
        num_gradient_evals=grads,
        method="is", num_walkers=n, group_log_z=np.zeros(0), reference=reference,
        reference_info=reference_info, wall_time=time.perf_counter() - t0,
        walkers=state.position,
        messages=("importance sampling: log_z_se is the delta-method error of the weights, "
                  "unreliable when their variance is infinite",))
