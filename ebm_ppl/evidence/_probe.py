"""The bias probe and the reliability verdict of an annealing run.

An SMC estimate of log Z is biased low (Jensen), by an amount that falls as 1 / walkers (and,
where the moves mix too little, as 1 / moves). A probe at a quarter of the effort gives the
effort trend between the two estimates, extrapolated into ``result.log_z_bias``; the verdict
collects every reason not to trust the error bar (``result.reliable``), each saying what to
raise.

The probe runs in the main run's compiled programs when it can (`shares_programs`: one
walker group and walkers and moves per stage divisible by 4, as at the defaults): the same N
walkers form 4 independent pools of N / 4, each with a quarter of the moves per stage, so it
costs a quarter of the main run's gradients and compiles nothing new; the mean of the pools'
log Z is the estimate at a quarter of the effort. Otherwise it is one independent run of
N / 4 walkers with the main run's moves (its own compiled programs).
"""

from __future__ import annotations

import math

import jax
import numpy as np

from ._walkers import initial_state, path_delta
from .engine import anneal
from .options import AnnealOptions
from .reference import fitted_to_pilot
from .schedules import stage_cap_message

__all__ = ["PROBE_FRACTION", "MIN_ANCESTORS", "shares_programs", "probe_setup", "run_probe",
           "effort_trend", "replicate_se", "total_error", "verdict"]

PROBE_FRACTION = 4  # the bias probe anneals num_walkers / 4 walkers
MIN_ANCESTORS = 50  # fewer Eves with weight: the full genealogy variance is not trusted


def shares_programs(opts: AnnealOptions, n: int) -> bool:
    """Whether the run with these options has a bias probe that runs in the main run's
    compiled programs (the main run then compiles its pool-able stage: ``anneal(pools=4)``)."""
    return (bool(opts.bias_check) and opts.method != "ti" and not opts.spins
            and int(opts.num_groups) == 1 and n % PROBE_FRACTION == 0
            and n >= 2 * PROBE_FRACTION and int(opts.num_moves) % PROBE_FRACTION == 0)


def probe_setup(opts: AnnealOptions, n: int) -> tuple[int, dict]:
    """The probe's walkers and its `anneal` options (for `run_probe` and the batched runs):
    4 independent pools of ``n / 4`` walkers with a quarter of the moves per stage in the
    main run's programs (`shares_programs`), or else one pool of ``n / 4`` walkers with the
    main run's moves."""
    if shares_programs(opts, n):
        return n, dict(options=opts, pools=PROBE_FRACTION, pooled=False,
                       moves=int(opts.num_moves) // PROBE_FRACTION)
    m = max(n // PROBE_FRACTION, 2)
    return m, dict(options=opts.replace(num_walkers=m, num_groups=1, bar=False))


def run_probe(path, keys, n, sched, step_size, move, opts: AnnealOptions):
    """A run at a quarter of the effort (`probe_setup`; same schedule rule and initial
    step) for the effort trend of `effort_trend`, from its keys (initial draws, run: the
    last two of `options.run_keys`)."""
    k_init, k_run = keys
    walkers, setup = probe_setup(opts, n)
    state = initial_state(path, k_init, walkers, precondition=opts.precondition)
    return anneal(k_run, state, delta_fn=path_delta, move=move, schedule=sched,
                  step_size=step_size, desc="bias probe", **setup)


def _probe_estimate(probe):
    """(log Z at the probe's effort, its standard error, walkers per pool, pools): the mean
    of the pools' log Z for a probe of several pools, else its log Z; the genealogy
    variance, or the fixed-lag one where the genealogy collapsed."""
    glz = np.asarray(getattr(probe, "group_log_z", ()), float)
    if glz.size > 1:
        pools = glz.size
        m = int(jax.tree.leaves(probe.state)[0].shape[0]) // pools
        rv = np.asarray(probe.group_rel_var, float)
        if not np.all(rv > 0) or probe.num_ancestors < MIN_ANCESTORS * pools:
            rv = np.asarray(probe.group_rel_var_lag, float)
        se = float(np.sqrt(np.sum(np.maximum(rv, 0.0)))) / pools
        return float(np.mean(glz)), se, m, pools
    m = int(jax.tree.leaves(probe.state)[0].shape[0])
    probe_se = probe.log_z_se  # a small probe's genealogy collapses first: fixed-lag then
    if not probe_se > 0 or getattr(probe, "num_ancestors", MIN_ANCESTORS) < MIN_ANCESTORS:
        probe_se = probe.log_z_se_lag
    return float(probe.log_z), float(probe_se), m, 1


def effort_trend(log_z, se, n, probe):
    """Bias of ``log_z`` from the effort trend between n walkers and the probe's m.

    An SMC estimate of log Z is biased low, with a bias that falls as 1 / walkers once the
    walkers are many (delta method: ``-Var(Z_hat) / (2 Z^2)``), so ``L(n) = L - c / n`` and
    the two runs give ``bias(n) = -(L_n - L_m) m / (n - m)``, with standard error
    ``m / (n - m) * hypot(se_n, se_m)``. A probe of 4 pools of ``m = n / 4`` walkers at a
    quarter of the moves has a quarter of the effort in both (``L = L_inf - a / n - b / M``),
    hence the same ratio. The total error counts ``bias^2 - sd^2`` (the squared bias less its
    noise) only when the trend is beyond 2 standard errors, so that an unbiased run's error
    bar is not inflated by the probe's noise."""
    log_z_probe, probe_se, m, pools = _probe_estimate(probe)
    r = m / (n - m)
    d = log_z - log_z_probe
    sd_d = float(np.hypot(se, probe_se))
    bias, sd_bias = -r * d, r * sd_d
    counted = math.sqrt(max(bias * bias - sd_bias * sd_bias, 0.0)) if abs(d) > 2 * sd_d else 0.0
    what = (f"{pools} independent pools of {m} walkers at a quarter of the moves per stage"
            if pools > 1 else f"an independent run with {m} walkers")
    return dict(log_z_bias=float(bias), log_z_bias_se=float(sd_bias),
                log_z_probe=log_z_probe, log_z_probe_se=float(probe_se),
                probe_walkers=m, _bias_counted=counted, _probe_text=what,
                _replicate_se=replicate_se(probe))


def replicate_se(probe) -> float | None:
    """The standard error of a run of ``P m`` walkers from the spread of the probe's P
    independent pools of m walkers: ``sd(pools' log Z) / sqrt(P)`` (variance ~ 1 / walkers;
    the pools' quarter of the moves makes it, if anything, too large). None for a one-pool
    probe. Unlike the genealogy variance of one run, it sees how much runs differ through
    the regions their walkers did or did not reach."""
    glz = np.asarray(getattr(probe, "group_log_z", ()), float)
    if glz.size < 2 or not np.all(np.isfinite(glz)):
        return None
    return float(np.std(glz, ddof=1) / math.sqrt(glz.size))


def total_error(log_z_se, extra, reference_info) -> float:
    """``log_z_err = hypot(se, counted bias)``, where ``se`` is ``log_z_se`` or, for a
    reference fitted to a pilot run (no Laplace mode: the genealogy of one run under-reports
    the spread there; calibration on Neal's funnel), the larger of it and the probe pools'
    `replicate_se`."""
    se = log_z_se
    rep = extra.get("_replicate_se")
    if fitted_to_pilot(reference_info) and rep is not None:
        se = max(se, rep)
    return float(np.hypot(se, extra.get("_bias_counted", 0.0)))


def verdict(extra, h, sched, betas, max_stages, reference_info, num_ancestors):
    """Reasons not to trust the error bar (empty: reliable), each saying what to raise.
    ``num_ancestors`` None: the error bar is not the genealogy's (no collapse to check)."""
    reasons = []
    if "log_z_probe" in extra:
        d = extra.get("log_z_bias", 0.0) / max(extra["log_z_bias_se"], 1e-300)
        if abs(d) > 3.0:
            probe = extra.get("_probe_text",
                              f"an independent run with {extra['probe_walkers']} walkers")
            reasons.append(
                f"the effort trend is significant: {probe} gives {extra['log_z_probe']:.4f} "
                f"({abs(d):.1f} standard errors of the difference away), so log Z still moves "
                "with effort; raise num_walkers, target_ess or num_moves until it stops")
    if len(h["ess"]) and np.min(h["ess"]) < 0.05:
        reasons.append("the weights degenerated at some stage (ESS < 0.05); raise target_ess "
                       "or num_walkers")
    if num_ancestors is not None and num_ancestors < MIN_ANCESTORS:
        reasons.append(f"the genealogy collapsed (only {num_ancestors} initial walkers have "
                       "descendants), so log_z_se is the fixed-lag estimate, which misses "
                       "correlations over more stages; raise num_walkers")
    if extra.get("bar_consistent") is False:
        reasons.append("the forward and reverse passes disagree (hysteresis); raise target_ess "
                       "or num_moves")
    if stage_cap_message(sched, betas, max_stages) is not None:
        reasons.append("the schedule hit max_stages; raise max_stages")
    if fitted_to_pilot(reference_info):
        reasons.append(
            "the target has no Laplace mode (a funnel's neck, an energy unbounded below): the "
            "reference was fitted to a pilot run, and mass that no walker reached biases log Z "
            "low, by an amount that does not shrink with num_walkers as log_z_err does "
            "(calibration on Neal's funnel: +-2 log_z_err covered 91% of runs at 1024 "
            "walkers, 82% at 4096); "
            "compare runs with higher target_ess and num_moves, or give a reference")
    return reasons
