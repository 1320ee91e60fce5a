"""The seed's figures: Figure 1 (density, samples, energy), Figure 4 (KL vs Fisher against z,
Remark 3.1) and ULA's stationary covariance against the step size (Example 4.1, eq. 73)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .. import diagnostics as dg
from ..errors import check_key, check_positive
from ..targets import anisotropic_gaussian_2d, figure1_mixture
from ._util import legend_if_many, subplots


def plot_figure1(target=None, *, key=None, samples=None, num_samples: int = 10_000,
                 bins: int = 80, grid=None, title: str | None = None):
    """Seed Figure 1: the density exp(-U)/Z with a histogram of samples, and the energy U.

    ``target`` is a 1-D potential with ``log_z`` (default: the eq. 4 mixture); ``samples``
    (n,) or (n, 1) default to ``num_samples`` exact draws ``target.sample(key, n)``; a dict
    ``{label: samples}`` draws one outlined histogram per sampler, to compare them.
    ``title`` replaces the default figure title (which quotes log Z when it is known).
    """
    target = figure1_mixture() if target is None else target
    if getattr(target, "dim", 1) != 1:
        raise ValueError(f"plot_figure1 needs a 1-D target, got dim={target.dim}")
    if samples is None:
        if not hasattr(target, "sample"):
            raise ValueError("give samples= for a target without a sample method")
        key = check_key(jax.random.key(0) if key is None else key)
        samples = target.sample(key, check_positive("num_samples", num_samples, integer=True))
    sets = samples if isinstance(samples, dict) else None
    if sets is not None:
        if not sets:
            raise ValueError("samples must not be an empty dict")
        sets = {k: np.asarray(v, dtype=np.float64).reshape(-1) for k, v in sets.items()}
        samples = np.concatenate(list(sets.values()))
    xs = np.asarray(samples, dtype=np.float64).reshape(-1)
    if grid is None:
        lo, hi = np.percentile(xs, [0.05, 99.95])
        pad = 0.25 * (hi - lo)
        grid = np.linspace(lo - pad, hi + pad, 600)
    grid = np.asarray(grid, dtype=np.float64)
    energy = np.asarray(jax.vmap(target)(jnp.asarray(grid)[:, None]))
    log_z = getattr(target, "log_z", None)
    density = np.exp(-energy - (log_z if log_z is not None else 0.0))
    if log_z is None:  # normalize numerically on the grid
        density /= np.trapezoid(density, grid)
    if title is None:
        title = "Boltzmann-Gibbs density and energy" + (
            f" (exact log Z = {float(log_z):.4f})" if log_z is not None else "")
    fig, (ax_p, ax_u) = subplots(2, title=title)
    if sets is None:
        ax_p.hist(xs, bins=bins, density=True, alpha=0.45, color="tab:blue",
                  label=f"samples (n={xs.size})")
    else:
        for label, x in sets.items():
            ax_p.hist(x, bins=bins, range=(grid[0], grid[-1]), density=True, histtype="step",
                      lw=1.2, label=f"{label} (n={x.size})")
    ax_p.plot(grid, density, color="black", lw=1.6, label=r"$\rho(x)=e^{-U(x)}/Z$")
    ax_p.set(title="Density and sampled histogram", xlabel="x", ylabel="density")
    legend_if_many(ax_p)
    ax_u.plot(grid, energy, color="tab:red", lw=1.6, label="U(x)")
    ax_u.set(title="Energy", xlabel="x", ylabel="U(x)")
    return fig


def kl_fisher_curves(z_values, sample_sizes=(100, 1000, 10_000), *, key) -> dict:
    """Monte Carlo KL and Fisher (eq. 48) of the eq. 47 pair for each N, with exact values.

    Returns {"z", "exact_kl", "exact_fisher", N: {"kl", "kl_se", "fisher", "fisher_se"}}; for
    each N one set of draws from rho1 is reused across z (common random numbers).
    """
    key = check_key(key)
    z_values = np.asarray(z_values, dtype=np.float64)
    sizes = [check_positive("sample_sizes", n, integer=True) for n in sample_sizes]
    rho1 = dg.remark31_mixtures(0.0)[0]
    log_p = dg.log_density(rho1)
    out = {"z": z_values, "exact_kl": [], "exact_fisher": []}
    pairs = [dg.log_density(dg.remark31_mixtures(z)[1]) for z in z_values]
    for log_q in pairs:
        kl, fisher = dg.divergences_by_quadrature(log_p, log_q, -15.0, 15.0, num=40_001)
        out["exact_kl"].append(kl)
        out["exact_fisher"].append(fisher)
    for n, k in zip(sizes, jax.random.split(key, len(sizes))):
        x = rho1.sample(k, max(n, 2))
        res = {"kl": [], "kl_se": [], "fisher": [], "fisher_se": []}
        for log_q in pairs:
            kl = dg.kl_divergence(x, log_p, log_q)
            fi = dg.fisher_divergence(x, log_p, log_q)
            res["kl"].append(float(kl.value))
            res["kl_se"].append(float(kl.se))
            res["fisher"].append(float(fi.value))
            res["fisher_se"].append(float(fi.se))
        out[n] = {k2: np.asarray(v) for k2, v in res.items()}
    out["exact_kl"], out["exact_fisher"] = map(np.asarray, (out["exact_kl"], out["exact_fisher"]))
    return out


def plot_kl_vs_fisher(z_values=None, sample_sizes=(100, 1000, 10_000), *, key=None, curves=None):
    """Seed Figure 4 (Remark 3.1): D_KL and D_F of the eq. 47 mixtures against z, estimated
    by Monte Carlo (eq. 48) with N draws (bands: +-2 se) and exact by quadrature.

    D_F is blind to the mode masses: its integrand lives between the modes, where small samples
    have no points, so its estimate stays near 0 until N is large.
    """
    if curves is None:
        z_values = np.linspace(0.0, 8.0, 17) if z_values is None else z_values
        curves = kl_fisher_curves(z_values, sample_sizes,
                                  key=jax.random.key(0) if key is None else key)
    z = curves["z"]
    sizes = [k for k in curves if isinstance(k, int)]
    fig, (ax_kl, ax_f) = subplots(2, title="KL vs Fisher divergence (seed Remark 3.1, eq. 47-48)")
    for ax, stat, exact, label in ((ax_kl, "kl", "exact_kl", r"$D_{KL}(\rho_1\|\rho_2)$"),
                                   (ax_f, "fisher", "exact_fisher", r"$D_F(\rho_1\|\rho_2)$")):
        for n in sizes:
            v, se = curves[n][stat], curves[n][f"{stat}_se"]
            (line,) = ax.plot(z, v, marker="o", ms=3, label=f"Monte Carlo, N={n}")
            ax.fill_between(z, v - 2 * se, v + 2 * se, color=line.get_color(), alpha=0.15)
        ax.plot(z, curves[exact], color="black", lw=1.8, ls="--", label="exact (quadrature)")
        ax.set(title=label, xlabel=r"z  ($\sigma(z)$ = mass of the left mode of $\rho_2$)",
               ylabel=label)
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        legend_if_many(ax)
    return fig


def plot_ula_covariance(target=None, step_sizes=(2e-3, 5e-3, 1e-2, 1.5e-2, 1.9e-2), *, key=None,
                        report=None, num_chains: int = 8, num_samples: int = 4000,
                        num_warmup: int = 1000, progress_bar: bool = True):
    """Example 4.1: ULA's stationary variance along each principal axis of Sigma against the
    step h; theory Sigma (I - h Sigma^{-1}/2)^{-1} (eq. 73) as curves, simulation +-2 MCSE as
    points, the exact variance (h -> 0) dashed. ``report``: a finished
    [`sampler_bias_report`][ebm_ppl.diagnostics.sampler_bias_report] to plot instead of running one."""
    target = anisotropic_gaussian_2d() if target is None else target
    if getattr(target, "cov", None) is None:
        raise ValueError("plot_ula_covariance needs a Gaussian target with a known cov")
    if report is None:
        report = dg.sampler_bias_report(
            target, key=jax.random.key(0) if key is None else key, ula_step_sizes=step_sizes,
            mala=False, nuts=False, num_chains=num_chains, num_samples=num_samples,
            num_warmup=num_warmup, progress_bar=progress_bar)
    cov = np.atleast_2d(np.asarray(target.cov, dtype=np.float64))
    sig = np.linalg.eigvalsh(cov)[::-1]  # variances along the principal axes, largest first
    h_max = 2.0 * sig.min()
    hs = np.linspace(0.0, 0.98 * h_max, 300)
    table = report.table
    ula = [s for s in dict.fromkeys(table.index.get_level_values(0)) if s.startswith("ULA h=")]
    h_sim = np.array([float(s.split("=")[1]) for s in ula])
    fig, axes = subplots(len(sig),
                         title="ULA stationary covariance vs step size (seed Example 4.1)")
    for k, ax in enumerate(axes):
        ax.plot(hs, sig[k] / (1.0 - hs / (2.0 * sig[k])), color="black", lw=1.6,
                label=r"theory $\Sigma(I-\frac{h}{2}\Sigma^{-1})^{-1}$")
        ax.axhline(sig[k], color="gray", ls="--", label=r"exact $\Sigma$ (h$\to$0)")
        if ula:
            rows = table.xs(f"var_pc[{k}]", level="statistic").loc[ula]
            ax.errorbar(h_sim, rows["estimate"], yerr=2 * rows["mcse"], fmt="o", color="tab:red",
                        capsize=3, label="ULA simulation (+-2 MCSE)")
        which = "slow" if k == 0 else ("stiff" if k == len(sig) - 1 else "")
        ax.set(title=f"principal axis {k} ({which}, exact var {sig[k]:.3g})".replace(" (, ", " ("),
               xlabel="step size h", ylabel="variance along the axis")
        ax.set_yscale("log")
        legend_if_many(ax)
    return fig
