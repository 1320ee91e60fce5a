"""Figures of runs from the other parts of the library, duck-typed on attribute names:
evidence runs (``log_z``, ``log_z_se``, ``log_weights``, per-stage ``ess`` and ``schedule`` or a
``history`` with ``beta``/``ess``, ``num_gradient_evals``), training curves (a ``history`` with
``loss``/``cross_entropy`` and ``log_z``) and Ising curves against the exact ones."""

from __future__ import annotations

import numpy as np

from ._util import as_1d, as_runs, get, legend_if_many, subplots


def _stage_series(result, *names):
    value = get(result, *names)
    return None if value is None else np.asarray(value, dtype=np.float64).reshape(-1)


def _num_grads(result):
    n = get(result, "num_gradient_evals", "num_grads", "num_gradient_evaluations")
    if n is None:
        raise ValueError("an evidence result needs num_gradient_evals (or num_grads)")
    return float(n)


def plot_evidence(results, *, truth: float | None = None, bins: int = 60):
    """Four panels for evidence runs: log Z +-2 se against gradient evaluations (one point per
    run, runs of one label joined as a band), ESS and inverse temperature per stage, and the
    histogram of the final normalized log weights.

    ``results``: one result, a list (e.g. a budget sweep) or a mapping label -> result(s).
    """
    runs = as_runs(results, default_label="log Z estimate")
    fig, (ax_z, ax_ess, ax_beta, ax_w) = subplots(4, width=3.9, title="Evidence / log Z runs")
    for label, rs in runs.items():
        grads = np.array([_num_grads(r) for r in rs])
        order = np.argsort(grads)
        lz = np.array([float(get(r, "log_z")) for r in rs])[order]
        se = np.array([float(get(r, "log_z_se", default=np.nan)) for r in rs])[order]
        grads = grads[order]
        (line,) = ax_z.plot(grads, lz, marker="o", label=label)
        if np.isfinite(se).any():
            ax_z.fill_between(grads, lz - 2 * se, lz + 2 * se, color=line.get_color(), alpha=0.2)
            ax_z.errorbar(grads, lz, yerr=2 * se, fmt="none", color=line.get_color(), capsize=3)
        last = rs[order[-1]]
        ess = _stage_series(last, "ess", "ess_fraction")
        beta = _stage_series(last, "schedule", "beta", "betas")
        if ess is not None:
            ax_ess.plot(np.arange(1, ess.size + 1), ess, marker=".", color=line.get_color(),
                        label=label)
        if beta is not None:
            ax_beta.plot(np.arange(beta.size), beta, marker=".", color=line.get_color(),
                         label=label)
        lw = get(last, "log_weights")
        if lw is not None:
            lw = np.asarray(lw, dtype=np.float64).reshape(-1)
            lw = lw[np.isfinite(lw)]
            ax_w.hist(lw - lw.max(), bins=bins, alpha=0.5, color=line.get_color(), label=label)
    if truth is not None:
        ax_z.axhline(truth, color="black", ls="--", label="exact log Z")
    all_grads = [_num_grads(r) for rs in runs.values() for r in rs]
    if max(all_grads) > 10 * max(min(all_grads), 1.0):
        ax_z.set_xscale("log")
    ax_z.set(title="log Z +-2 se vs cost", xlabel="gradient evaluations", ylabel="log Z")
    ax_ess.set(title="ESS per stage", xlabel="stage", ylabel="ESS (fraction of walkers)")
    ax_beta.set(title="Inverse temperature per stage", xlabel="stage", ylabel=r"$\beta$")
    ax_w.set(title="Final log weights", xlabel=r"$\log w - \max \log w$", ylabel="walkers")
    for ax in (ax_z, ax_ess, ax_beta, ax_w):
        legend_if_many(ax)
    return fig


def _history(run) -> dict:
    """A training run's per-iteration series: ``run.history`` or the mapping itself."""
    hist = getattr(run, "history", run)
    if not hasattr(hist, "get"):
        raise ValueError(f"a training run needs a history dict, got {type(run).__name__}")
    return hist


def _mode_weight_series(hist, label, mode_weights):
    if mode_weights is not None and label in mode_weights:
        mw = mode_weights[label]
        it, w = mw if isinstance(mw, tuple) else (None, mw)
    else:
        key = next((k for k in hist if str(k).startswith("mode_weight")), None)
        if key is None:
            return None
        it, w = hist.get("iteration"), hist[key]
    w = np.asarray(w, dtype=np.float64)
    w = w[:, None] if w.ndim == 1 else w
    it = np.arange(w.shape[0]) if it is None else np.asarray(it)
    return it, w


def plot_training(runs, *, exact_log_z=None, exact_mode_weights=None, mode_weights=None):
    """Training curves against the iteration: cross-entropy (``loss``), absolute log Z and mode
    weights. ``runs``: a TrainResult / history dict, or a mapping label -> one of them.

    ``exact_log_z``: scalar or per-iteration array (dashed); ``mode_weights``: label ->
    array (iterations, K) or (iterations_array, weights) recorded e.g. with ``train(callback=)``
    (a history key starting with ``mode_weight`` is used when present);
    ``exact_mode_weights``: the target's weights (dotted lines).
    """
    import matplotlib.pyplot as plt

    runs = {k: v[0] for k, v in as_runs(runs, default_label="training").items()}
    fig, (ax_ce, ax_z, ax_m) = subplots(3, title="EBM training curves")
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, run) in enumerate(runs.items()):
        hist, color = _history(run), cycle[i % len(cycle)]
        it = hist.get("iteration")
        for ax, names in ((ax_ce, ("cross_entropy", "loss")), (ax_z, ("log_z",))):
            values = next((hist[n] for n in names if n in hist), None)
            if values is not None and np.ndim(values) == 1:
                y = np.asarray(values, dtype=np.float64)
                x = np.arange(y.size) if it is None else np.asarray(it)
                ax.plot(x, y, label=label, color=color)
        series = _mode_weight_series(hist, label, mode_weights)
        if series is not None:
            x, w = series
            for k in range(w.shape[1]):
                ax_m.plot(x, w[:, k], color=color, ls=["-", "--", ":", "-."][k % 4],
                          label=f"{label}: mode {k}")
    if exact_log_z is not None:
        if np.ndim(exact_log_z) == 0:
            ax_z.axhline(float(exact_log_z), color="black", ls="--", label="exact log Z")
        else:
            ax_z.plot(np.asarray(exact_log_z), color="black", ls="--", label="exact log Z")
    if exact_mode_weights is not None:
        for k, p in enumerate(np.atleast_1d(exact_mode_weights)):
            ax_m.axhline(float(p), color="black", ls=":", lw=1,
                         label="target weights" if k == 0 else None)
    exact_ce = any("cross_entropy" in _history(r) for r in runs.values())
    ax_ce.set(title="Cross-entropy $-E_{data}[\\log\\rho_\\theta]$" if exact_ce
              else "Training loss", xlabel="iteration",
              ylabel="cross-entropy" if exact_ce else "loss")
    ax_z.set(title=r"log $Z_\theta$", xlabel="iteration", ylabel="log Z")
    ax_m.set(title="Mode weights", xlabel="iteration", ylabel="weight")
    for ax in (ax_ce, ax_z, ax_m):
        legend_if_many(ax)
    return fig


def ising_exact_curves(L: int, temperatures, *, J: float = 1.0) -> dict:
    """Exact energy per spin (Kaufman), <m^2> (transfer matrix, L <= 8) and <|m|> (L <= 4) of
    the periodic L x L Ising model on a grid of temperatures (uses [`ebm_ppl.spins`][ebm_ppl.spins])."""
    from ..spins import ising_exact

    ts = as_1d(temperatures, "temperatures")
    ex = [ising_exact(L, float(t), J=J) for t in ts]
    return {"T": ts, "energy": np.array([e.energy_per_spin for e in ex]),
            "m2": np.array([e.m2 for e in ex]), "abs_m": np.array([e.abs_m for e in ex])}


def plot_ising(temperatures, *, energy=None, energy_se=None, magnetization=None,
               magnetization_se=None, magnetization_kind: str = "m2", L: int | None = None,
               exact: dict | None = None, J: float = 1.0):
    """Ising energy per spin and magnetization (``m2`` = <m^2> or ``abs_m`` = <|m|>) against
    the temperature: measurements +-2 se as points, exact finite-L curves as lines (computed
    for ``L`` unless ``exact`` from [`ising_exact_curves`][ebm_ppl.plots.runs.ising_exact_curves] is given),
    Onsager's
    infinite-lattice magnetization dotted and T_c marked."""
    from ..errors import check_choice
    from ..spins import T_CRITICAL, onsager_magnetization

    check_choice("magnetization_kind", magnetization_kind, ("m2", "abs_m"))
    ts = as_1d(temperatures, "temperatures")
    if exact is None and L is not None:
        exact = ising_exact_curves(L, np.linspace(ts.min(), ts.max(), 25), J=J)
    size = f"{L}x{L} " if L else ""
    fig, (ax_e, ax_m) = subplots(2, title=f"{size}Ising model vs temperature (J={J:g})")
    mlabel = r"$\langle m^2\rangle$" if magnetization_kind == "m2" else r"$\langle |m|\rangle$"
    for ax, values, se, key, ylabel in ((ax_e, energy, energy_se, "energy", "energy per spin"),
                                        (ax_m, magnetization, magnetization_se, magnetization_kind,
                                         mlabel)):
        if exact is not None and np.isfinite(exact[key]).any():
            ax.plot(exact["T"], exact[key], color="black", lw=1.6, label=f"exact (L={L})")
        if values is not None:
            v = as_1d(values, ylabel)
            err = None if se is None else 2 * as_1d(se, ylabel + " se")
            ax.errorbar(ts, v, yerr=err, fmt="o", color="tab:red", capsize=3,
                        label="simulation" + (" (+-2 se)" if se is not None else ""))
        ax.axvline(T_CRITICAL * abs(J), color="gray", ls=":", label=r"$T_c$")
        ax.set(xlabel="temperature T", ylabel=ylabel)
    grid = np.linspace(ts.min(), ts.max(), 200)
    ons = np.array([onsager_magnetization(t, J) for t in grid])
    ax_m.plot(grid, ons**2 if magnetization_kind == "m2" else ons, color="tab:blue", ls="--",
              lw=1, label="Onsager (infinite lattice)")
    ax_e.set_title("Energy per spin")
    ax_m.set_title("Magnetization")
    legend_if_many(ax_e)
    legend_if_many(ax_m)
    return fig
