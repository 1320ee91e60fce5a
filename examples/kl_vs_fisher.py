"""KL vs Fisher divergence on two bimodal mixtures (seed Remark 3.1, eq. 47-48, Figure 4).

rho1 = 0.5 N(-5, 1) + 0.5 N(5, 1) and rho2 = s N(-5, 1) + (1 - s) N(5, 1), s = sigmoid(z),
have the same modes and differ only in how the mass is shared between them (eq. 47). With
x_i ~ rho1, the Monte Carlo estimates (eq. 48) are

    D_KL ~ mean_i log[rho1(x_i) / rho2(x_i)],   D_F ~ mean_i |grad log rho1(x_i) - grad log rho2(x_i)|^2.

KL grows like |z| and is well estimated with 100 draws; Fisher is four orders of magnitude
smaller and its estimate stays near 0 until N ~ 10^4, because its integrand lives between the
modes, where rho1 puts almost no draws. Score matching minimizes D_F: it cannot see the mode
weights. Figures:

* ``kl_vs_fisher``: seed Figure 4, Monte Carlo with N = 100, 1000, 10000 against quadrature;
* ``integrands``: where each integral lives, against where the draws of rho1 are.

Run ``python examples/kl_vs_fisher.py [--quick] [--outdir DIR]``.
"""

from __future__ import annotations

from _common import main  # noqa: I001 (first: backend and float64)

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import ebm_ppl as ep


def integrands(z: float, grid):
    """rho1, rho2 and the KL and Fisher integrands rho1 log(rho1/rho2), rho1 |score diff|^2."""


    rho1, rho2 = ep.diagnostics.remark31_mixtures(z)
    lp, lq = ep.diagnostics.log_density(rho1), ep.diagnostics.log_density(rho2)
    x = jnp.asarray(grid)[:, None]
    log_p, log_q = np.asarray(jax.vmap(lp)(x)), np.asarray(jax.vmap(lq)(x))
    score = np.asarray(jax.vmap(jax.grad(lambda xi: lp(xi) - lq(xi)))(x))[:, 0]
    p = np.exp(log_p)
    return p, np.exp(log_q), p * (log_p - log_q), p * score**2


def plot_integrands(z: float, grid, draws, quantities):
    p, q, kl_int, f_int = quantities
    fig, (ax_d, ax_i) = plt.subplots(1, 2, figsize=(10.5, 3.9), layout="constrained")
    ax_d.plot(grid, p, color="black", label=r"$\rho_1$ (equal weights)")
    ax_d.plot(grid, q, color="tab:orange", ls="--", label=rf"$\rho_2$, z = {z:g}")
    ax_d.hist(draws, bins=120, range=(grid[0], grid[-1]), density=True, alpha=0.3,
              color="tab:blue", label=f"{draws.size} draws of " + r"$\rho_1$")
    ax_d.set(title="The two densities of eq. 47", xlabel="x", ylabel="density")
    ax_d.legend(fontsize="small")
    ax_i.plot(grid, kl_int / np.abs(kl_int).max(), label=r"KL integrand $\rho_1\log(\rho_1/\rho_2)$")
    ax_i.plot(grid, f_int / f_int.max(),
              label=r"Fisher integrand $\rho_1|\nabla\log\rho_1-\nabla\log\rho_2|^2$")
    ax_i.set(title="Where the integrals live (each scaled to max 1)", xlabel="x",
             ylabel="integrand / max")
    ax_i.legend(fontsize="small")
    fig.suptitle(f"Remark 3.1: the Fisher integrand sits between the modes (z = {z:g})")
    return fig


def make_figures(quick: bool = False, seed: int = 0) -> dict:
    key_curves, key_draws = jax.random.split(jax.random.key(seed))
    z = np.array([0.0, 2.0, 4.0, 8.0]) if quick else np.linspace(0.0, 8.0, 17)
    curves = ep.plots.kl_fisher_curves(z, (100, 1000, 10_000), key=key_curves)
    print("z    exact KL   MC KL (N=10^4)        exact Fisher   MC Fisher (N=10^2)  (N=10^4)")
    big, small = curves[10_000], curves[100]
    for i, zi in enumerate(z):
        print(f"{zi:3.1f}  {curves['exact_kl'][i]:9.5f}  {big['kl'][i]:8.5f} +- {big['kl_se'][i]:.5f}"
              f"   {curves['exact_fisher'][i]:11.3e}   {small['fisher'][i]:11.3e}"
              f"      {big['fisher'][i]:11.3e} +- {big['fisher_se'][i]:.1e}")
    figures = {"kl_vs_fisher": ep.plots.plot_kl_vs_fisher(curves=curves)}

    grid = np.linspace(-10.0, 10.0, 2001)
    rho1 = ep.diagnostics.remark31_mixtures(0.0)[0]
    draws = np.asarray(rho1.sample(key_draws, 10_000))[:, 0]
    quantities = integrands(4.0, grid)
    cdf = np.cumsum(quantities[3]) / np.sum(quantities[3])
    lo, hi = grid[np.searchsorted(cdf, 0.005)], grid[np.searchsorted(cdf, 0.995)]
    inside = int(np.sum((draws > lo) & (draws < hi)))
    window = (grid > lo) & (grid < hi)
    mass = np.trapezoid(quantities[0][window], grid[window])
    print(f"\nz = 4: 99% of the Fisher integral lies in [{lo:.2f}, {hi:.2f}]; rho1 puts "
          f"{mass:.1e} of its mass there and {inside} of 10^4 draws fell in it")
    figures["integrands"] = plot_integrands(4.0, grid, draws, quantities)
    return figures


if __name__ == "__main__":
    main(make_figures, "kl_vs_fisher", __doc__)
