"""The bias probe and the reliability verdict of an annealing run.

An SMC estimate of log Z is biased low (Jensen), by an amount that falls as 1 / walkers. An
independent probe run at a quarter of the walkers gives the effort trend between the two
estimates, extrapolated into ``result.log_z_bias``; the verdict collects every reason not to
trust the error bar (``result.reliable``), each saying what to raise.
"""

from __future__ import annotations

import math

import jax
import numpy as np

from ._walkers import initial_state, path_delta
from .engine import anneal
from .options import AnnealOptions
from .schedules import stage_cap_message

__all__ = ["PROBE_FRACTION", "MIN_ANCESTORS", "run_probe", "effort_trend", "verdict"]

PROBE_FRACTION = 4  # the bias probe anneals num_walkers / 4 walkers
MIN_ANCESTORS = 50  # fewer Eves with weight: the full genealogy variance is not trusted


def run_probe(path, key, n, sched, step_size, move, opts: AnnealOptions):
    """An independent run at lower effort (``n / PROBE_FRACTION`` walkers, one pool, same
    schedule rule, moves and initial step) for the effort trend of `effort_trend`."""
    m = max(n // PROBE_FRACTION, 2)
    k_init, k_run = jax.random.split(key)
    state = initial_state(path, k_init, m)
    return anneal(k_run, state, delta_fn=path_delta, move=move, schedule=sched,
                  options=opts.replace(num_walkers=m, num_groups=1, bar=False),
                  step_size=step_size, desc="bias probe")


def effort_trend(log_z, se, n, probe):
    """Bias of ``log_z`` from the effort trend between n walkers and the probe's m.

    An SMC estimate of log Z is biased low, with a bias that falls as 1 / walkers once the
    walkers are many (delta method: ``-Var(Z_hat) / (2 Z^2)``), so ``L(n) = L - c / n`` and
    the two runs give ``bias(n) = -(L_n - L_m) m / (n - m)``, with standard error
    ``m / (n - m) * hypot(se_n, se_m)``. The total error counts ``bias^2 - sd^2`` (the
    squared bias less its noise) only when the trend is beyond 2 standard errors, so that an
    unbiased run's error bar is not inflated by the probe's noise."""
    m = int(jax.tree.leaves(probe.state)[0].shape[0])
    r = m / (n - m)
    d = log_z - probe.log_z
    probe_se = probe.log_z_se  # a small probe's genealogy collapses first: fixed-lag then
    if not probe_se > 0 or getattr(probe, "num_ancestors", MIN_ANCESTORS) < MIN_ANCESTORS:
        probe_se = probe.log_z_se_lag
    sd_d = float(np.hypot(se, probe_se))
    bias, sd_bias = -r * d, r * sd_d
    counted = math.sqrt(max(bias * bias - sd_bias * sd_bias, 0.0)) if abs(d) > 2 * sd_d else 0.0
    return dict(log_z_bias=float(bias), log_z_bias_se=float(sd_bias),
                log_z_probe=float(probe.log_z), log_z_probe_se=float(probe_se),
                probe_walkers=m, _bias_counted=counted)


def verdict(extra, h, sched, betas, max_stages, reference_info, num_ancestors):
    """Reasons not to trust the error bar (empty: reliable), each saying what to raise."""
    reasons = []
    if "log_z_probe" in extra:
        d = extra.get("log_z_bias", 0.0) / max(extra["log_z_bias_se"], 1e-300)
        if abs(d) > 3.0:
            reasons.append(
                f"the effort trend is significant: an independent run with "
                f"{extra['probe_walkers']} walkers gives {extra['log_z_probe']:.4f} "
                f"({abs(d):.1f} standard errors of the difference away), so log Z still moves "
                "with effort; raise num_walkers, target_ess or num_moves until it stops")
    if len(h["ess"]) and np.min(h["ess"]) < 0.05:
        reasons.append("the weights degenerated at some stage (ESS < 0.05); raise target_ess "
                       "or num_walkers")
    if num_ancestors < MIN_ANCESTORS:
        reasons.append(f"the genealogy collapsed (only {num_ancestors} initial walkers have "
                       "descendants), so log_z_se is the fixed-lag estimate, which misses "
                       "correlations over more stages; raise num_walkers")
    if extra.get("bar_consistent") is False:
        reasons.append("the forward and reverse passes disagree (hysteresis); raise target_ess "
                       "or num_moves")
    if stage_cap_message(sched, betas, max_stages) is not None:
        reasons.append("the schedule hit max_stages; raise max_stages")
    if reference_info.get("kind") == "auto (pilot)":
        reasons.append(
            "the target has no Laplace mode (a funnel's neck, an energy unbounded below): the "
            "reference was fitted to a pilot run, and mass that no walker reached biases log Z "
            "low beyond log_z_err (calibration: coverage far below nominal on Neal's funnel); "
            "compare runs with higher target_ess and num_moves, or give a reference")
    return reasons
