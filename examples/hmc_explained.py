"""Hamiltonian Monte Carlo explained: leapfrog, energy error, acceptance.

HMC samples rho = exp(-U)/Z by adding a momentum p ~ N(0, I) and following Hamilton's
equations for H(x, p) = U(x) + |p|^2 / 2, which keep H constant and the volume of phase space.
The leapfrog (velocity Verlet) integrator with step eps (NumPyro's
``numpyro.infer.hmc_util.velocity_verlet``, the integrator of its HMC and NUTS)

    p <- p - eps/2 grad U(x);  x <- x + eps p;  p <- p - eps/2 grad U(x)

is reversible and volume preserving but not energy preserving: after L steps H has changed by
dH, and the Metropolis test accepts the end point with probability min(1, exp(-dH)), which
makes the chain exact whatever eps. On a Gaussian with principal standard deviations
sigma_i the leapfrog is stable only for eps < 2 sigma_min; the energy error grows like eps^2
below that and explodes above it.

The target is the seed's Example 4.1 Gaussian (variances 1 and 0.01, so sigma_min = 0.1 and
eps must stay below 0.2). Figure ``hmc_explained``: a trajectory at two steps, the energy
error against the step size, and the mean acceptance over exact draws and fresh momenta.

Run ``python examples/hmc_explained.py [--quick] [--outdir DIR]``.
"""

from __future__ import annotations

from _common import main  # noqa: I001 (first: backend and float64)

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from numpyro.infer.hmc_util import euclidean_kinetic_energy, velocity_verlet

import ebm_ppl as ep

TRAJECTORY_TIME = 1.0  # eps * L: the same integration time for every step size


def leapfrog(target, x0, p0, eps, num_steps):
    """Positions along the leapfrog trajectory and H at its end minus H at its start."""
    init, update = velocity_verlet(target, euclidean_kinetic_energy)
    inv_mass = jnp.ones(x0.shape[-1])
    state = init(x0, p0)

    def body(s, _):
        s = update(eps, inv_mass, s)
        return s, s.z

    end, path = jax.lax.scan(body, state, None, length=num_steps)
    h0 = target(x0) + 0.5 * p0 @ p0
    h1 = end.potential_energy + 0.5 * end.r @ end.r
    return path, h1 - h0


def energy_errors(target, eps, key, n):
    """dH over n random starts (exact draws) and momenta, integration time TRAJECTORY_TIME."""
    steps = max(1, int(round(TRAJECTORY_TIME / eps)))
    kx, kp = jax.random.split(key)
    x0 = target.sample(kx, n)
    p0 = jax.random.normal(kp, x0.shape)
    dh = jax.vmap(lambda x, p: leapfrog(target, x, p, eps, steps)[1])(x0, p0)
    return np.asarray(dh)


def make_figures(quick: bool = False, seed: int = 0) -> dict:
    target = ep.targets.anisotropic_gaussian_2d()
    sigma_min = float(np.sqrt(np.linalg.eigvalsh(np.asarray(target.cov)).min()))
    print(f"Example 4.1 Gaussian: sigma_min = {sigma_min:.3f}, leapfrog stable for "
          f"eps < 2 sigma_min = {2 * sigma_min:.3f}")
    key = jax.random.key(seed)
    n = 200 if quick else 2000
    grid = np.array([0.01, 0.02, 0.05, 0.1, 0.15, 0.19, 0.21, 0.25])
    mean_abs, accept = [], []  # median |dH| and mean acceptance at each step size
    for i, eps in enumerate(grid):
        dh = energy_errors(target, float(eps), jax.random.fold_in(key, i), n)
        dh = np.where(np.isfinite(dh), dh, np.inf)
        mean_abs.append(float(np.median(np.abs(dh))))
        accept.append(float(np.mean(np.minimum(1.0, np.exp(-dh)))))
        print(f"eps = {eps:.2f}: median |dH| = {mean_abs[-1]:.3g}, "
              f"mean acceptance min(1, exp(-dH)) = {accept[-1]:.3f}")

    fig, (ax_t, ax_e, ax_a) = plt.subplots(1, 3, figsize=(13, 4), layout="constrained")
    xs = np.linspace(-2.0, 4.0, 120)
    ys = np.linspace(-3.0, 1.0, 120)
    gx, gy = np.meshgrid(xs, ys)
    u = np.asarray(jax.vmap(target)(jnp.stack([gx.ravel(), gy.ravel()], 1))).reshape(gx.shape)
    ax_t.contour(gx, gy, u - u.min(), levels=[0.5, 2, 4.5, 8], colors="gray", linewidths=0.8)
    slow, stiff = np.array([0.866, 0.5]), np.array([-0.5, 0.866])  # principal axes (30 deg)
    x0 = jnp.asarray(target.mean - 1.5 * slow)
    p0 = jnp.asarray(1.5 * slow + 1.0 * stiff)  # along the valley, and across it
    for eps, style in ((0.05, "o-"), (0.19, "s--")):
        path, dh = leapfrog(target, x0, p0, eps, int(round(TRAJECTORY_TIME / eps)))
        path = np.asarray(path)
        ax_t.plot(path[:, 0], path[:, 1], style, ms=3, lw=1,
                  label=f"eps = {eps}: dH = {float(dh):.2f}")
    ax_t.plot(*np.asarray(x0), "k*", ms=10, label="start")
    ax_t.set(title="Leapfrog trajectories (time 1)", xlabel="x1", ylabel="x2")
    ax_t.legend(fontsize="small")
    ax_e.loglog(grid, mean_abs, "o-", label="median |dH|")
    ax_e.loglog(grid[:4], mean_abs[1] * (grid[:4] / grid[1]) ** 2, "k:", label="slope 2 (eps^2)")
    ax_e.axvline(2 * sigma_min, color="tab:red", ls="--", label="2 sigma_min (stability)")
    ax_e.set(title="Energy error after time 1", xlabel="step size eps", ylabel="|dH|")
    ax_e.legend(fontsize="small")
    ax_a.plot(grid, accept, "o-", label="E[min(1, exp(-dH))] over exact draws")
    ax_a.axvline(2 * sigma_min, color="tab:red", ls="--", label="2 sigma_min")
    ax_a.set(title="Acceptance against the step", xlabel="step size eps", ylabel="acceptance",
             ylim=(-0.05, 1.05))
    ax_a.legend(fontsize="small")
    fig.suptitle("HMC on the Example 4.1 Gaussian: leapfrog, energy error, acceptance")
    return {"hmc_explained": fig}


if __name__ == "__main__":
    main(make_figures, "hmc_explained", __doc__)
