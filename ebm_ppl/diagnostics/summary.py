"""Summaries built on ArviZ >= 1 (``xarray.DataTree``): R-hat, bulk/tail ESS and MCSE for MCMC
runs, and Kish ESS, Pareto k-hat and self-normalized MCSE for weighted results.

[`to_datatree`][ebm_ppl.diagnostics.summary.to_datatree] accepts what this library and NumPyro produce: a
``DataTree``, a
``numpyro.infer.MCMC`` (via ``az.from_numpyro``), a dict of ``(chain, draw, ...)`` arrays, or a
weighted result (any object with ``samples`` and ``log_weights``, e.g. an ``EvidenceResult``;
its own ``to_arviz()`` is used when present).

Weighted results follow one rule in ArviZ form
([`weighted_datatree`][ebm_ppl.diagnostics.summary.weighted_datatree]): ``posterior`` is an
equal-weight resample (so ArviZ's own functions are right on it) and the weighted draws live
in their own group, which [`summary`][ebm_ppl.diagnostics.summary.summary] reads, for a result, its tree or
its netCDF file.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .weights import check_log_weights, kish_ess, pareto_khat, weighted_mean


def is_weighted(obj) -> bool:
    """True for results that carry ``samples`` and ``log_weights`` (duck-typed)."""
    return hasattr(obj, "samples") and hasattr(obj, "log_weights")


def to_datatree(obj, *, var_name: str = "x"):
    """Convert an MCMC run, a dict of (chain, draw, ...) arrays or a DataTree to a DataTree."""
    import arviz as az
    import xarray as xr

    if isinstance(obj, xr.DataTree):
        return obj
    if hasattr(obj, "to_arviz"):
        return obj.to_arviz()
    if hasattr(obj, "get_samples") and hasattr(obj, "sampler"):  # numpyro.infer.MCMC
        weighted = _jarzynski_draws(obj)
        if weighted is not None:
            return weighted_datatree(*weighted, var_name=var_name)
        return az.from_numpyro(obj)
    if is_weighted(obj):
        return weighted_datatree(obj.samples, obj.log_weights, var_name=var_name)
    if isinstance(obj, dict):
        data = {k: np.asarray(v) for k, v in obj.items()}
    elif isinstance(obj, np.ndarray) or hasattr(obj, "__array__"):
        data = {var_name: np.asarray(obj)}
    else:
        raise ValueError(f"cannot convert {type(obj).__name__} to an ArviZ DataTree: give an MCMC, "
                         "a DataTree, a dict of (chain, draw, ...) arrays or a weighted result")
    for k, v in data.items():
        if v.ndim < 2:
            raise ValueError(f"{k!r} must have shape (chain, draw, ...), got {v.shape}")
    return az.from_dict({"posterior": data})


def _jarzynski_draws(mcmc):
    """(draws, log weights) of an ``ep.Jarzynski`` run, pooled over chains and steps (each
    step's weighted average is exact, eq. 104, so the pooled ratio estimator is consistent);
    None for other kernels. Without ``log_weight`` collected, a warning: the draws alone
    follow ULA's biased law."""
    import warnings

    from ..mcmc import Jarzynski

    if not isinstance(mcmc.sampler, Jarzynski):
        return None
    extra = mcmc.get_extra_fields()
    if "log_weight" not in extra:
        warnings.warn("ep.Jarzynski draws carry weights: run with extra_fields=('log_weight',) "
                      "for weighted summaries; this one is unweighted (ULA's biased law)",
                      UserWarning, stacklevel=3)
        return None
    return mcmc.get_samples(), np.asarray(extra["log_weight"]).reshape(-1)


#: The seed of the equal-weight resample in
#: [`weighted_datatree`][ebm_ppl.diagnostics.summary.weighted_datatree] (results are reproducible).
RESAMPLE_SEED = 0
#: The group holding the weighted draws and their weights in every weighted result's tree.
WEIGHTED_GROUP = "weighted_posterior"
_WEIGHT_VARS = ("log_weight", "weight")


def weighted_datatree(samples, log_weights, *, var_name: str = "x", log_likelihood=None,
                      seed: int = RESAMPLE_SEED):
    """Weighted draws as an ArviZ DataTree that no unweighted summary can misread.

    The rule, for every result that carries importance weights (evidence and ``log_Z``
    results, Jarzynski walkers, training walkers):

    * ``posterior``: an **equal-weight resample** of the draws, of size round(Kish ESS)
      (systematic resampling with seed ``seed``, then shuffled), so that ``az.summary``,
      ``az.ess``, ``az.plot_*`` and ``az.loo`` on it are right: means agree with the weighted
      means within their standard error, and the ESS ArviZ reports is about the Kish ESS;
    * ``weighted_posterior``: every draw with its ``log_weight`` and normalized ``weight``
      (``ep.diagnostics.summary`` of the tree, or of a netCDF file of it, reads this group and
      gives the exact weighted numbers, the same as of the result itself);
    * ``log_likelihood`` (when ``log_likelihood`` is given: a dict of per-draw pointwise
      log-likelihood arrays of shape (n, ...)): at the resampled draws, for ``az.loo``;
    * ``sample_stats``: ``log_weight`` and ``weight`` of all draws (their former place, kept
      for one release; read them from ``weighted_posterior``).

    The root attributes record ``kish_ess``, ``resampled_from`` (n), ``resample_seed`` and
    ``weighting_rule``.
    """
    import arviz as az
    import jax

    from .weights import systematic_indices

    data = dict(samples) if isinstance(samples, dict) else {var_name: samples}
    data = {k: np.asarray(v) for k, v in data.items()}
    sizes = {v.shape[0] if v.ndim else 0 for v in data.values()}
    if len(sizes) != 1:
        raise ValueError(f"samples must share one leading dimension, got sizes {sorted(sizes)}")
    n = sizes.pop()
    lw = check_log_weights(log_weights, n)
    ess = kish_ess(lw)
    w = np.exp(lw - np.max(lw))
    w = w / w.sum()
    m = max(1, int(round(ess)))
    idx = np.random.default_rng(seed).permutation(
        systematic_indices(jax.random.key(seed), lw, m))
    groups = {
        "posterior": {k: v[idx][None] for k, v in data.items()},
        WEIGHTED_GROUP: {**{k: v[None] for k, v in data.items()},
                         "log_weight": lw[None], "weight": w[None]},
        "sample_stats": {"log_weight": lw[None], "weight": w[None]},
    }
    if log_likelihood:
        groups["log_likelihood"] = {k: np.asarray(v)[idx][None] for k, v in log_likelihood.items()}
    dt = az.from_dict(groups)
    dt.attrs.update(
        kish_ess=ess, resampled_from=int(n), resample_seed=int(seed),
        weighting_rule=("posterior: equal-weight systematic resample of size round(Kish ESS); "
                        f"{WEIGHTED_GROUP}: all draws with log_weight and weight"))
    return dt


def _weighted_from_tree(dt):
    """(samples dict, log_weights) of a tree's weighted group, or None."""
    if WEIGHTED_GROUP not in dt.children:
        return None
    ds = dt[WEIGHTED_GROUP].to_dataset()
    lw = np.asarray(ds["log_weight"].values).reshape(-1)
    samples = {k: np.asarray(v.values).reshape((-1,) + v.shape[2:])
               for k, v in ds.data_vars.items() if k not in _WEIGHT_VARS}
    return samples, lw


def _flat_columns(samples, var_name):
    data = dict(samples) if isinstance(samples, dict) else {var_name: samples}
    cols, names = [], []
    for k, v in data.items():
        v = np.asarray(v, dtype=np.float64)
        flat = v.reshape(v.shape[0], -1)
        for j in range(flat.shape[1]):
            idx = np.unravel_index(j, v.shape[1:]) if v.ndim > 1 else ()
            names.append(k + ("[" + ",".join(map(str, idx)) + "]" if idx else ""))
            cols.append(flat[:, j])
    return names, np.stack(cols, axis=1)


def weighted_summary(samples, log_weights, *, var_name: str = "x", warn: bool = True):
    """Weighted mean, sd and MCSE of each coordinate, with the Kish ESS and Pareto k-hat.

    Returns a ``pandas.DataFrame`` with columns mean, sd, mcse_mean, ess_kish, pareto_k (one
    row per scalar coordinate, named like ``az.summary``'s rows).
    """
    import pandas as pd

    names, x = _flat_columns(samples, var_name)
    lw = check_log_weights(log_weights, x.shape[0])
    est = weighted_mean(x, lw)
    second = weighted_mean(x**2, lw).value
    sd = np.sqrt(np.maximum(second - est.value**2, 0.0))
    khat = pareto_khat(lw, warn=warn).khat if np.isfinite(lw).sum() >= 10 else np.nan
    return pd.DataFrame({"mean": est.value, "sd": sd, "mcse_mean": est.se,
                         "ess_kish": kish_ess(lw), "pareto_k": khat}, index=names)


def summary(obj, *, var_names=None, log_weights=None, kind: str = "all", warn: bool = True,
            stein=None):
    """One table for any run: ``az.summary`` (mean, sd, ETI, bulk/tail ESS, R-hat, MCSE) for
    MCMC output; [`weighted_summary`][ebm_ppl.diagnostics.summary.weighted_summary] for weighted results
    (``obj`` with ``samples`` and
    ``log_weights``, or samples of shape (n, ...) with ``log_weights=``).

    ``stein`` adds the kernel Stein goodness-of-fit test of MCMC output beside R-hat and ESS
    (columns ``ksd``, ``ksd_p``; the result and its one-line reading in
    ``table.attrs["stein_test"]``): True for an MCMC, a potential U, or a dict of
    [`stein_test`][ebm_ppl.diagnostics.stein_test] arguments. R-hat sees mixing, not bias; this test
    sees bias (see [`with_stein_columns`][ebm_ppl.diagnostics.stein_gof.with_stein_columns]).

    Weighted results are recognized in every form they come in: the result itself, its
    ``to_arviz()`` tree (the ``weighted_posterior`` group) or a netCDF file of that tree (a
    path); the three forms of one result give the same weighted numbers."""
    import arviz as az

    if log_weights is not None:
        return weighted_summary(obj, log_weights, warn=warn)
    if is_weighted(obj):
        return _select(weighted_summary(obj.samples, obj.log_weights, warn=warn), var_names)
    if isinstance(obj, str | os.PathLike):
        obj = _open_tree(obj)
    dt = to_datatree(obj)
    weighted = _weighted_from_tree(dt)
    if weighted is not None:
        return _select(weighted_summary(*weighted, warn=warn), var_names)
    from .stein_gof import with_stein_columns

    return with_stein_columns(az.summary(dt, var_names=var_names, kind=kind), obj, stein)


def _select(table, var_names):
    if var_names is None:
        return table
    names = [var_names] if isinstance(var_names, str) else list(var_names)
    keep = [row for row in table.index if row.split("[")[0] in names]
    return table.loc[keep]


def _open_tree(path):
    import xarray as xr

    if not os.path.isfile(path):
        raise ValueError(f"path {str(path)!r} is not a file")
    with xr.open_datatree(path, engine="h5netcdf") as tree:
        return tree.load()


def convergence(obj, *, var_names=None) -> dict:
    """R-hat, bulk ESS, tail ESS and MCSE of the mean as plain arrays per variable."""
    import arviz as az

    dt = to_datatree(obj)
    out: dict[str, Any] = {}
    stats = {"r_hat": az.rhat(dt, var_names=var_names),
             "ess_bulk": az.ess(dt, var_names=var_names, method="bulk"),
             "ess_tail": az.ess(dt, var_names=var_names, method="tail"),
             "mcse_mean": az.mcse(dt, var_names=var_names)}
    for stat, tree in stats.items():
        ds = tree.to_dataset() if hasattr(tree, "to_dataset") else tree
        for name in ds.data_vars:
            out.setdefault(name, {})[stat] = np.asarray(ds[name].values)
    return out
