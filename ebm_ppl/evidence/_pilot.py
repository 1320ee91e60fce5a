"""The pilot run behind the automatic reference when no Laplace mode qualifies (Neal's funnel,
an energy unbounded below): anneal a few walkers from a broad Gaussian and fit a mixture to
them ([`pilot_reference`][ebm_ppl.evidence.pilot_reference])."""

from __future__ import annotations

import time

import jax
import numpy as np

from ._run import run
from .options import AnnealOptions
from .paths import geometric_path
from .reference import PILOT_KIND, pilot_reference

__all__ = ["PILOT_FRACTION", "pilot_run_reference"]

PILOT_FRACTION = 16  # the pilot anneals num_walkers / 16 walkers, at least 256


def pilot_run_reference(energy, key, broad, info, opts: AnnealOptions):
    """No usable Laplace mode: anneal a few walkers from the broad Gaussian with the default
    method and fit `pilot_reference` to them (its gradients are counted in ``info``).
    Up to 4 components, fewer when the pilot has under 5 walkers per fitted parameter pair."""
    n_pilot = max(256, int(opts.num_walkers) // PILOT_FRACTION // 16 * 16)
    pilot = run(geometric_path(energy, broad), key, AnnealOptions(
        num_walkers=n_pilot, bias_check=False, progress_bar=opts.progress_bar), reference=broad,
        reference_info=dict(kind="broad"), t0=time.perf_counter())
    k = int(np.clip(n_pilot // (5 * energy.dim), 1, 4))
    seed = int(jax.random.randint(key, (), 0, 2**31 - 1))
    reference, fitted = pilot_reference(pilot.walkers, pilot.log_weights, broad,
                                        num_components=k, seed=seed)
    info = dict(info, kind=PILOT_KIND, pilot_walkers=n_pilot, pilot_log_z=pilot.log_z,
                pilot_gradient_evals=pilot.num_gradient_evals, pilot_components=fitted,
                defensive_weight=fitted["defensive_weight"], defensive_df=fitted["defensive_df"],
                num_gradient_evals=int(info["num_gradient_evals"]) + pilot.num_gradient_evals)
    return reference, info
