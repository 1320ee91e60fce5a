"""MCMC figures through ArviZ (trace, rank) and the sampler-bias chart (Example 4.1)."""

from __future__ import annotations

import numpy as np

from ..diagnostics.summary import to_datatree
from ._util import figure_of, legend_if_many, subplots


def _arviz_figure(plot_fn, data, var_names, kwargs, ylabel):
    """Run an ArviZ 1.x plot with a readable default size (4 panels per row) -> Figure."""
    dt = to_datatree(data)
    post = dt["posterior"].to_dataset()
    names = [var_names] if isinstance(var_names, str) else (var_names or list(post.data_vars))
    panels = sum(int(np.prod([post[v].sizes[d] for d in post[v].dims
                              if d not in ("chain", "draw")])) for v in names)
    rows = -(-max(panels, 1) // 4)
    kwargs.setdefault("figure_kwargs", {"figsize": (4.2 * min(max(panels, 1), 4), 3.0 * rows + 0.4),
                                        "layout": "constrained"})
    fig = figure_of(plot_fn(dt, var_names=var_names, backend="matplotlib", **kwargs))
    for ax in fig.axes:
        if not ax.get_ylabel():
            ax.set_ylabel(ylabel)
    return fig


def plot_trace(data, *, var_names=None, title: str = "Trace", **kwargs):
    """``az.plot_trace`` of an MCMC run / DataTree / dict of (chain, draw, ...) arrays.

    Returns the matplotlib Figure (save with ``fig.savefig``); ``kwargs`` go to ArviZ.
    """
    import arviz as az

    fig = _arviz_figure(az.plot_trace, data, var_names, kwargs, "value")
    fig.suptitle(title)
    return fig


def plot_rank(data, *, var_names=None, title: str = "Rank plot (uniform when chains mix)",
              **kwargs):
    """``az.plot_rank`` (fractional-rank ECDF difference per chain) returned as a Figure."""
    import arviz as az

    fig = _arviz_figure(az.plot_rank, data, var_names, kwargs, "ECDF difference")
    fig.suptitle(title)
    return fig


def plot_bias_report(report, statistics=None):
    """One panel per statistic of a [`BiasReport`][ebm_ppl.diagnostics.BiasReport]: each sampler's
    estimate +-2 MCSE, with the exact value (dashed) and ULA's eq. 73 theory (crosses)."""
    table = report.table
    stats = list(dict.fromkeys(table.index.get_level_values("statistic")))
    if statistics is not None:
        missing = [s for s in statistics if s not in stats]
        if missing:
            raise ValueError(f"statistics {missing} not in the report; it has {stats}")
        stats = list(statistics)
    samplers = list(dict.fromkeys(table.index.get_level_values("sampler")))
    ncols = min(len(stats), 3)
    nrows = -(-len(stats) // ncols)
    fig, axes = subplots(ncols, nrows, width=4.0, height=3.2,
                         title=f"Sampler bias vs exact moments ({report.target_name})")
    pos = np.arange(len(samplers))
    for ax, stat in zip(axes, stats):
        rows = table.xs(stat, level="statistic").loc[samplers]
        ax.errorbar(pos, rows["estimate"], yerr=2 * rows["mcse"], fmt="o", capsize=3,
                    label="estimate +-2 MCSE")
        if np.isfinite(rows["exact"]).any():
            ax.axhline(float(rows["exact"].iloc[0]), color="black", ls="--", label="exact")
        biased = rows["theory"] != rows["exact"]
        if biased.any():
            ax.plot(pos[biased.to_numpy()], rows["theory"][biased], "x", color="tab:red", ms=8,
                    label="ULA theory (eq. 73)")
        ax.set_xticks(pos, samplers, rotation=30, ha="right", fontsize="small")
        ax.set(title=stat, xlabel="sampler", ylabel="value")
        legend_if_many(ax)
    for ax in axes[len(stats):]:
        ax.set_visible(False)
    return fig
