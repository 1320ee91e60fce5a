"""Figures of the kernel Stein diagnostics: KSD against the step size (step selection)."""

from __future__ import annotations

import numpy as np

from ._util import subplots


def plot_step_size_selection(selection, *, reference=None, title=None):
    """KSD of ULA's draws against the step size, from
    [`select_step_size`][ebm_ppl.diagnostics.select_step_size], with the chosen step marked.

    ``reference``: another selection (e.g. a fine grid) drawn as a line for comparison.
    Returns the matplotlib Figure.
    """
    fig, (ax,) = subplots(1, width=6.5, height=4.2)
    if reference is not None:
        ok = np.isfinite(reference.ksd)
        ax.plot(reference.step_sizes[ok], reference.ksd[ok], color="gray", lw=1.2,
                label=f"fine grid (best h = {reference.best:.3g})")
    ok = np.isfinite(selection.ksd)
    ax.plot(selection.step_sizes[ok], selection.ksd[ok], "o-", color="tab:blue",
            label="step grid")
    best = int(np.argmin(np.where(ok, selection.ksd, np.inf)))
    ax.plot([selection.best], [selection.ksd[best]], "*", ms=16, color="tab:red",
            label=f"selected h = {selection.best:.3g} (refined)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set(xlabel="step size h", ylabel="KSD of the draws",
           title=title or (f"ULA step by least KSD ({selection.num_gradients} gradients per step)"))
    ax.legend(fontsize="small")
    return fig
