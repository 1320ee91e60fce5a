"""Boltzmann-Gibbs densities and the seed's eq. 4 mixture (Figure 1, eq. 1-2).

An energy U(x) defines the Boltzmann-Gibbs density rho(x) = exp(-U(x)) / Z (seed eq. 1).
The eq. 4 energy U(x) = -log[0.7 exp(-x^2/2) + 0.3 exp(-(x-5)^2/0.5)] has two wells, so rho
has two modes; its partition function is known exactly, log Z = log(2 pi)/2 + log 0.85, and
the mode at x = 5 carries the mass 0.15/0.85 = 0.176.

Three figures:

* ``figure1``: the density with a histogram of exact draws, and the energy (seed Figure 1);
* ``temperatures``: rho_T proportional to exp(-U/T): heating flattens the wells and moves
  mass between the modes, cooling concentrates it in the deepest well;
* ``importance_log_z``: Z = E_0[exp(-U)/rho_0] (seed eq. 2) estimated with ``ep.log_partition``
  (``method="is"``) from a reference that covers both modes and from one that misses the
  x = 5 mode: the second is confidently wrong, and its standard error does not warn you.

Run ``python examples/figure1_mixture.py [--quick] [--outdir DIR]``.
"""

from __future__ import annotations

from _common import main  # noqa: I001 (first: backend and float64)

import jax
import matplotlib.pyplot as plt
import numpy as np
import numpyro.distributions as dist

import ebm_ppl as ep


def temperature_densities(target, temperatures, grid):
    """rho_T(x) = exp(-U(x)/T) / Z_T on ``grid`` (Z_T by the trapezoid rule) and the mass of
    the x = 5 mode (x > barrier) at each T."""
    u = np.asarray(jax.vmap(target)(grid[:, None]))
    barrier = grid[np.argmax(np.where((grid > 0) & (grid < 5), u, -np.inf))]
    out = {}
    for t in temperatures:
        dens = np.exp(-(u - u.min()) / t)
        dens /= np.trapezoid(dens, grid)
        right = grid > barrier
        out[t] = (dens, float(np.trapezoid(dens[right], grid[right])))
    return u, barrier, out


def plot_temperatures(grid, u, barrier, densities):
    fig, (ax_p, ax_u) = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    for t, (dens, mass) in densities.items():
        ax_p.plot(grid, dens, label=f"T = {t:g}  (mass right of barrier {mass:.3f})")
        ax_u.plot(grid, u / t, label=f"U(x)/T, T = {t:g}")
    ax_p.axvline(barrier, color="gray", ls=":", label="barrier top")
    ax_p.set(title=r"$\rho_T(x) \propto e^{-U(x)/T}$", xlabel="x", ylabel="density")
    ax_u.set(title="Scaled energy U(x)/T", xlabel="x", ylabel="U(x)/T", ylim=(-2, 25))
    ax_p.legend(fontsize="small")
    ax_u.legend(fontsize="small")
    fig.suptitle("Boltzmann-Gibbs densities of the eq. 4 energy at several temperatures")
    return fig


def importance_sweep(target, references, sizes, key):
    """log Z by importance sampling (seed eq. 2) for each reference and sample size."""


    rows = {}
    for (label, ref), k in zip(references.items(), jax.random.split(key, len(references))):
        res = [ep.log_partition(target, key=kk, reference=ref, method="is", num_walkers=n,
                                progress_bar=False)
               for n, kk in zip(sizes, jax.random.split(k, len(sizes)))]
        rows[label] = (np.array([r.log_z for r in res]), np.array([r.log_z_se for r in res]))
    return rows


def plot_importance(sizes, rows, exact):
    fig, ax = plt.subplots(figsize=(6.5, 4), layout="constrained")
    for label, (lz, se) in rows.items():
        (line,) = ax.plot(sizes, lz, marker="o", label=label)
        ax.fill_between(sizes, lz - 2 * se, lz + 2 * se, color=line.get_color(), alpha=0.2)
    ax.axhline(exact, color="black", ls="--", label=f"exact log Z = {exact:.4f}")
    ax.set_xscale("log")
    ax.set(title=r"Seed eq. 2: $Z = E_0[e^{-U}/\rho_0]$, estimate $\pm 2$ se",
           xlabel="number of draws N from the reference", ylabel="log Z")
    ax.legend(fontsize="small")
    return fig


def make_figures(quick: bool = False, seed: int = 0) -> dict:
    target = ep.targets.figure1_mixture()
    key_fig, key_is = jax.random.split(jax.random.key(seed))
    print(f"eq. 4 mixture: exact log Z = {target.log_z:.6f}, "
          f"mode masses = {np.round(target.mode_masses, 6)}")

    n = 5_000 if quick else 100_000
    figures = {"figure1": ep.plots.plot_figure1(target, key=key_fig, num_samples=n,
                                                grid=np.linspace(-4, 8, 600))}
    draws = target.sample(key_fig, n)
    mass = ep.diagnostics.mode_masses(draws, target)
    print(f"exact draws (n={n}): mass of the x=5 mode {mass.value[1]:.4f} +- {mass.se[1]:.4f} "
          f"(exact {target.mode_masses[1]:.4f})")

    grid = np.linspace(-4.0, 8.0, 2001)
    u, barrier, dens = temperature_densities(target, (0.5, 1.0, 2.0, 4.0), grid)
    print(f"barrier top at x = {barrier:.3f}; mass right of it at T = "
          + ", ".join(f"{t:g}: {m:.3f}" for t, (_, m) in dens.items()))
    figures["temperatures"] = plot_temperatures(grid, u, barrier, dens)

    sizes = 2 ** np.array([8, 12] if quick else [7, 9, 11, 13, 15, 17])
    references = {
        "reference N(2, 3^2): covers both modes": dist.Normal(2.0, 3.0).expand([1]).to_event(1),
        "reference N(0, 1): misses the x=5 mode": dist.Normal(0.0, 1.0).expand([1]).to_event(1),
    }
    rows = importance_sweep(target, references, sizes, key_is)
    print("\nimportance sampling (eq. 2): log Z +- se   [exact "
          f"{target.log_z:.4f}; the narrow reference can only find log(0.7 sqrt(2 pi)) = "
          f"{np.log(0.7 * np.sqrt(2 * np.pi)):.4f}]")
    for label, (lz, se) in rows.items():
        print(f"  {label}")
        for size, v, s in zip(sizes, lz, se):
            print(f"    N = {size:>6}: {v:8.4f} +- {s:.4f}  ({(v - target.log_z) / s:+.1f} se)")
    figures["importance_log_z"] = plot_importance(sizes, rows, target.log_z)
    return figures


if __name__ == "__main__":
    main(make_figures, "figure1_mixture", __doc__)
