"""Summaries built on ArviZ >= 1 (``xarray.DataTree``): R-hat, bulk/tail ESS and MCSE for MCMC
runs, and Kish ESS, Pareto k-hat and self-normalized MCSE for weighted results.

:func:`to_datatree` accepts what this library and NumPyro produce: a ``DataTree``, a
``numpyro.infer.MCMC`` (via ``az.from_numpyro``), a dict of ``(chain, draw, ...)`` arrays, or a
weighted result (any object with ``samples`` and ``log_weights``, e.g. an ``EvidenceResult``;
its own ``to_arviz()`` is used when present).
"""

from __future__ import annotations

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


def weighted_datatree(samples, log_weights, *, var_name: str = "x"):
    """Weighted draws as a DataTree: one chain in ``posterior``, ``sample_stats.log_weight``.

    ArviZ's own statistics ignore the weights; use :func:`summary` (or
    :func:`~ebm_ppl.diagnostics.resample`) for weighted statistics.
    """
    import arviz as az

    data = dict(samples) if isinstance(samples, dict) else {var_name: samples}
    data = {k: np.asarray(v)[None] for k, v in data.items()}
    n = next(iter(data.values())).shape[1]
    lw = check_log_weights(log_weights, n)
    dt = az.from_dict({"posterior": data, "sample_stats": {"log_weight": lw[None]}})
    dt.attrs["kish_ess"] = kish_ess(lw)
    return dt


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
    MCMC output; :func:`weighted_summary` for weighted results (``obj`` with ``samples`` and
    ``log_weights``, or samples of shape (n, ...) with ``log_weights=``).

    ``stein`` adds the kernel Stein goodness-of-fit test of MCMC output beside R-hat and ESS
    (columns ``ksd``, ``ksd_p``; the result and its one-line reading in
    ``table.attrs["stein_test"]``): True for an MCMC, a potential U, or a dict of
    :func:`~ebm_ppl.diagnostics.stein_test` arguments. R-hat sees mixing, not bias; this test
    sees bias (see :func:`~ebm_ppl.diagnostics.stein_gof.with_stein_columns`)."""
    import arviz as az

    if log_weights is not None:
        return weighted_summary(obj, log_weights, warn=warn)
    if is_weighted(obj):
        return weighted_summary(obj.samples, obj.log_weights, warn=warn)
    from .stein_gof import with_stein_columns

    return with_stein_columns(az.summary(to_datatree(obj), var_names=var_names, kind=kind),
                              obj, stein)


def convergence(obj, *, var_names=None) -> dict:
    """R-hat, bulk ESS, tail ESS and MCSE of the mean as plain arrays per variable."""
    import arviz as az

    dt = to_datatree(obj)
    out = {}
    stats = {"r_hat": az.rhat(dt, var_names=var_names),
             "ess_bulk": az.ess(dt, var_names=var_names, method="bulk"),
             "ess_tail": az.ess(dt, var_names=var_names, method="tail"),
             "mcse_mean": az.mcse(dt, var_names=var_names)}
    for stat, tree in stats.items():
        ds = tree.to_dataset() if hasattr(tree, "to_dataset") else tree
        for name in ds.data_vars:
            out.setdefault(name, {})[stat] = np.asarray(ds[name].values)
    return out
