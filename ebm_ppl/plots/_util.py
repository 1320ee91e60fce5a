"""Shared helpers: figure creation, duck-typed attribute access, run collections."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def subplots(ncols: int, nrows: int = 1, *, width: float = 4.2, height: float = 3.4, title=None):
    """A figure with a grid of axes (never shown); the axes come back as a flat array."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False,
                             layout="constrained")
    if title:
        fig.suptitle(title)
    return fig, axes.ravel()


def get(obj, *names, default=None):
    """The first of ``names`` found as an attribute, a mapping key or a ``history`` entry."""
    history = getattr(obj, "history", None)
    for name in names:
        if isinstance(obj, Mapping) and name in obj:
            return obj[name]
        if hasattr(obj, name):
            return getattr(obj, name)
        if isinstance(history, Mapping) and name in history:
            return history[name]
    return default


def as_runs(runs, default_label: str = "run") -> dict:
    """A single run, a list of runs or a mapping label -> run(s) as {label: [runs]}."""
    if isinstance(runs, Mapping) and not _looks_like_history(runs):
        return {str(k): list(v) if isinstance(v, (list, tuple)) else [v] for k, v in runs.items()}
    if isinstance(runs, (list, tuple)):
        return {default_label: list(runs)}
    return {default_label: [runs]}


def _looks_like_history(m: Mapping) -> bool:
    return any(k in m for k in ("iteration", "loss", "log_z", "cross_entropy", "beta"))


def legend_if_many(ax):
    handles, _ = ax.get_legend_handles_labels()
    if len(handles) > 1:
        ax.legend(fontsize="small")


def as_1d(x, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a vector, got shape {arr.shape}")
    return arr


def figure_of(plot_collection):
    """The matplotlib Figure behind an ArviZ PlotCollection."""
    viz = plot_collection.viz
    for key in ("chart", "figure"):
        if key in getattr(viz, "children", {}) or key in getattr(viz, "data_vars", {}):
            item = np.asarray(viz[key]).ravel()[0]
            if hasattr(item, "savefig"):
                return item
    plot = viz["plot"].to_dataset()
    for name in plot.data_vars:
        ax = np.asarray(plot[name].values).ravel()[0]
        return ax.get_figure(root=True)
    raise ValueError("the PlotCollection has no matplotlib axes")
