"""Sampler-bias report: ULA at several step sizes, MALA and NUTS side by side, against the
exact moments (seed Example 4.1).

ULA's stationary law on N(mu, Sigma) is N(mu, Sigma (I - h Sigma^{-1}/2)^{-1}) (seed eq. 73):
the mean is right and the covariance is inflated, most along the stiff directions. MALA and
NUTS are exact. Each run's moments come with ArviZ MCSEs, so the table says in standard-error
units how far every sampler is from the exact moments and from ULA's biased theory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import jax
import numpy as np

from ..errors import check_key, check_positive
from .weights import weighted_mean

if TYPE_CHECKING:  # pandas is imported where a table is built (it is slow to import)
    import pandas as pd


@dataclass(frozen=True)
class BiasReport:
    """``table``: one row per (sampler, statistic) -- mean[i], cov[i,j] and var_pc[k], the
    variance along the k-th principal axis of the exact covariance (largest first; ULA's bias
    shows most along the stiff, last axis) -- with columns estimate, mcse, exact, z_exact
    (= (estimate - exact) / mcse), theory (ULA's eq. 73 value; exact for MALA/NUTS), z_theory,
    accept_prob. ``draws``: sampler label -> array (chain, draw, dim). ``stein``: sampler label
    -> [`SteinTest`][ebm_ppl.diagnostics.SteinTest], the kernel Stein goodness-of-fit test of the
    draws, which needs no exact answer (one reading line each in ``str(report)``)."""

    table: pd.DataFrame
    draws: dict = field(repr=False)
    target_name: str = "target"
    stein: dict = field(default_factory=dict, repr=False)

    def __str__(self) -> str:
        import pandas as pd

        lines = "".join(f"\n{label}: {test}" for label, test in self.stein.items())
        with pd.option_context("display.width", 120, "display.max_rows", 200):
            return (f"Sampler bias on {self.target_name}\n{self.table.round(4).to_string()}"
                    + lines)


def _principal_axes(target):
    cov = getattr(target, "cov", None)
    if cov is None:
        return None
    vals, vecs = np.linalg.eigh(np.atleast_2d(np.asarray(cov, float)))
    return vals[::-1], vecs[:, ::-1]


def _moments(x, axes):
    """Mean, covariance entries (i <= j) and, when the exact covariance is known, the variance
    along each of its principal axes (largest first), with ArviZ MCSEs; x is (chain, draw, d)."""
    d = x.shape[-1]
    mean = weighted_mean(x, chains=True)
    centered = x - mean.value
    rows = [(f"mean[{i}]", mean.value[i], mean.se[i]) for i in range(d)]
    for i in range(d):
        for j in range(i, d):
            est = weighted_mean(centered[..., i] * centered[..., j], chains=True)
            rows.append((f"cov[{i},{j}]", float(est.value), float(est.se)))
    if axes is not None:
        proj = centered @ axes[1]
        est = weighted_mean(proj**2, chains=True)
        rows += [(f"var_pc[{k}]", est.value[k], est.se[k]) for k in range(d)]
    return rows


def _exact(target, h=None):
    mean, cov = getattr(target, "mean", None), getattr(target, "cov", None)
    if mean is None or cov is None:
        return None
    mean, cov = np.atleast_1d(np.asarray(mean, float)), np.atleast_2d(np.asarray(cov, float))
    if h is not None:
        cov = cov @ np.linalg.inv(np.eye(cov.shape[0]) - 0.5 * h * np.linalg.inv(cov))
    d = mean.size
    vals = {f"mean[{i}]": mean[i] for i in range(d)}
    vals.update({f"cov[{i},{j}]": cov[i, j] for i in range(d) for j in range(i, d)})
    axes = _principal_axes(target)[1]
    vals.update({f"var_pc[{k}]": axes[:, k] @ cov @ axes[:, k] for k in range(d)})
    return vals


def _run(kernel, key, init, num_warmup, num_samples, num_chains):
    from numpyro.infer import MCMC

    mcmc = MCMC(kernel, num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains,
                chain_method="vectorized", progress_bar=False)
    mcmc.run(key, init_params=init, extra_fields=("accept_prob",))
    x = np.asarray(mcmc.get_samples(group_by_chain=True))
    acc = float(np.mean(mcmc.get_extra_fields()["accept_prob"]))
    return x.reshape(x.shape[0], x.shape[1], -1), acc


def sampler_bias_report(target, *, key, ula_step_sizes=(5e-3, 1e-2, 1.5e-2), mala: bool = True,
                        nuts: bool = True, num_chains: int = 8, num_warmup: int = 1000,
                        num_samples: int = 4000, init_params=None,
                        progress_bar: bool = True, stein_max_draws: int | None = 2000
                        ) -> BiasReport:
    """Run ULA at each step in ``ula_step_sizes``, MALA and NUTS on ``target`` and tabulate
    their mean and covariance against the exact ones (when the target has ``mean``/``cov``).

    ``target`` is a potential U(x) on flat arrays (e.g. ``ep.targets.anisotropic_gaussian_2d()``);
    chains start from ``init_params`` (num_chains, dim) or from exact draws ``target.sample``.
    Each sampler's draws also get the KSD goodness-of-fit test (on at most ``stein_max_draws``
    draws, evenly spaced in each chain; None skips it), which flags bias without exact moments.
    """
    import pandas as pd
    from numpyro.infer import NUTS
    from tqdm.auto import tqdm

    from ..mcmc import MALA, ULA

    key = check_key(key)
    if not callable(target):
        raise ValueError(f"target must be a potential U(x), got {type(target).__name__}")
    num_chains = check_positive("num_chains", num_chains, integer=True)
    num_warmup = check_positive("num_warmup", num_warmup, integer=True)
    num_samples = check_positive("num_samples", num_samples, integer=True)
    steps = [check_positive("ula_step_sizes", h) for h in ula_step_sizes]
    cov = getattr(target, "cov", None)
    if cov is not None and steps:
        lam_max = float(np.linalg.eigvalsh(np.linalg.inv(np.atleast_2d(cov))).max())
        bad = [h for h in steps if h >= 2.0 / lam_max]
        if bad:
            raise ValueError(f"ula_step_sizes {bad} >= 2/lambda_max = {2 / lam_max:.4g}: "
                             "ULA diverges")
    key_init, key = jax.random.split(key)
    if init_params is None:
        if not hasattr(target, "sample"):
            raise ValueError("init_params is required when the target has no sample method")
        init_params = target.sample(key_init, num_chains)
    init = jax.numpy.asarray(init_params)
    if init.ndim != 2 or init.shape[0] != num_chains:
        raise ValueError(f"init_params must have shape (num_chains={num_chains}, dim), "
                         f"got {init.shape}")

    jobs = [(f"ULA h={h:g}", ULA(potential_fn=target, step_size=h), h) for h in steps]
    if mala:
        jobs.append(("MALA", MALA(potential_fn=target, target_accept_prob=0.8), None))
    if nuts:
        jobs.append(("NUTS", NUTS(potential_fn=target), None))
    if not jobs:
        raise ValueError("nothing to run: give ula_step_sizes or set mala/nuts")
    exact = _exact(target)
    axes = _principal_axes(target)
    rows, draws, stein = [], {}, {}
    for (label, kernel, h), k in zip(tqdm(jobs, desc="bias report", disable=not progress_bar),
                                     jax.random.split(key, len(jobs))):
        x, acc = _run(kernel, k, init, num_warmup, num_samples, num_chains)
        draws[label] = x
        if stein_max_draws:
            from .stein_gof import stein_test

            every = max(1, -(-x.shape[0] * x.shape[1] // int(stein_max_draws)))
            stein[label] = stein_test(x[:, every - 1::every], target,
                                      key=jax.random.fold_in(k, 1))
        theory = _exact(target, h) if h is not None else exact
        for stat, est, se in _moments(x, axes):
            ex = exact[stat] if exact else np.nan
            th = theory[stat] if theory else np.nan
            rows.append({"sampler": label, "statistic": stat, "estimate": est, "mcse": se,
                         "exact": ex, "z_exact": (est - ex) / se, "theory": th,
                         "z_theory": (est - th) / se, "accept_prob": acc})
    table = pd.DataFrame(rows).set_index(["sampler", "statistic"])
    return BiasReport(table=table, draws=draws, target_name=getattr(target, "name", "target"),
                      stein=stein)
