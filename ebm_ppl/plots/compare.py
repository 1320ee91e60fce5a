"""The figure of a model comparison by evidence ([`ebm_ppl.compare_evidence`][ebm_ppl.compare_evidence])."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ._util import legend_if_many, subplots

__all__ = ["plot_evidence_comparison"]


def plot_evidence_comparison(table, *, exact: Mapping | None = None):
    """Two panels from the table [`ebm_ppl.compare_evidence`][ebm_ppl.compare_evidence] returns: log Bayes
    factor
    against the best model +-2 se per model (with the exact ones, ``exact = {name: log Z}``,
    when known), and the posterior model probabilities with their intervals."""
    names = [str(n) for n in table.index]
    y = np.arange(len(names))[::-1]
    fig, (ax_bf, ax_p) = subplots(2, width=4.6, height=0.6 * len(names) + 2.2,
                                  title="Model comparison by evidence")
    ax_bf.errorbar(table["log_bf"], y, xerr=2 * table["log_bf_se"], fmt="o", capsize=4,
                   label="estimate +-2 se")
    if exact:
        best = names[0]
        if best not in exact:
            raise ValueError(f"exact lacks the best model {best!r}")
        xs = [exact[n] - exact[best] for n in names if n in exact]
        ys = [yy for n, yy in zip(names, y) if n in exact]
        ax_bf.plot(xs, ys, "k|", ms=16, mew=2, label="exact")
    ax_bf.axvline(0.0, color="gray", lw=0.8)
    ax_bf.set(yticks=y, yticklabels=names, xlabel="log Bayes factor vs the best model",
              ylabel="model", title="log BF (+-2 se)")
    legend_if_many(ax_bf)
    prob = np.asarray(table["prob"], float)
    err = np.stack([prob - np.asarray(table["prob_lower"]), np.asarray(table["prob_upper"]) - prob])
    ax_p.barh(y, prob, xerr=np.clip(err, 0, None), capsize=4, color="tab:blue", alpha=0.7)
    ax_p.set(yticks=y, yticklabels=names, xlim=(0, 1), ylabel="model",
             xlabel="posterior model probability",
             title=f"P(model | data), {100 * table.attrs.get('interval', 0.95):.0f}% interval")
    return fig
