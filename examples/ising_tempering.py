"""The 2-D Ising model across its phase transition, sampled by parallel tempering
(seed eq. 107-108; section 4, Gibbs sampling and replica exchange).

One replica-exchange run of heat-bath Gibbs sweeps (checkerboard updates) on a ladder of
temperatures from T = 1.5 to T = 4 gives every rung at once; its energy per spin and <m^2>
are compared with the exact finite-lattice curves (Kaufman's log Z differentiated for the
energy, the row transfer matrix for <m^2>), with Onsager's infinite-lattice magnetization.

Below T_c a single Gibbs chain keeps the sign of its magnetization for ever (the two ordered
states are separated by a free-energy barrier growing with L); with replica exchange the
configuration at T = 2 goes up to the disordered rungs and comes back with either sign.

Figures: ``ising_vs_temperature`` (energy and <m^2> per rung vs exact), ``swap_acceptance``
(per neighbouring pair), ``magnetization_traces`` (T = 2, L = 16: PT vs a single chain).

Run ``python examples/ising_tempering.py [--quick] [--outdir DIR]``.
"""

from __future__ import annotations

from _common import main  # noqa: I001 (first: backend and float64)

import arviz as az
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import ebm_ppl as ep
from ebm_ppl import spins


def temperature_scan(L, quick, seed):
    """PT over a ladder from T = 1.5 to 4: energy per spin and m^2 at every rung, with MCSE."""
    t_low, t_high, rungs = 1.5, 4.0, 16
    model = spins.Ising(L, T=t_low)
    betas = np.geomspace(1.0, t_low / t_high, rungs)
    res = ep.parallel_tempering(
        model, np.ones(model.dim), key=jax.random.key(seed), kernel="gibbs", betas=betas,
        num_samples=200 if quick else 4000, num_warmup=50 if quick else 500,
        num_chains=4 if quick else 8, trace_fn=lambda s: jnp.mean(s) ** 2, progress_bar=not quick)
    temps = t_low / betas
    energy = res.energies / model.beta / model.dim             # (chains, draws, R)
    m2 = res.traces
    out = {"T": temps, "result": res}
    for name, draws in (("energy", energy), ("m2", m2)):
        out[name] = draws.mean(axis=(0, 1))
        out[name + "_se"] = np.array([float(az.mcse(draws[..., r])) for r in range(rungs)])
    return out


def magnetization_traces(quick, seed):
    """L = 16 at T = 2: m of the target rung under PT vs a plain Gibbs chain of equal cost."""
    model = spins.Ising(16, T=2.0)
    draws, rungs = (300, 12) if quick else (3000, 12)
    res = ep.parallel_tempering(model, np.ones(model.dim), key=jax.random.key(seed + 1),
                                kernel="gibbs", num_replicas=rungs, beta_min=0.55,
                                num_samples=draws, num_warmup=200, num_chains=1,
                                progress_bar=not quick)

    def gibbs_chain(key):
        def body(st, k):
            st, _ = jax.lax.scan(lambda s, kk: (spins.gibbs_sweep(kk, s, model)[0], None), st,
                                 jax.random.split(k, 2 * rungs))
            return st, jnp.mean(st.position)
        return jax.lax.scan(body, spins.spin_init(jnp.ones(model.dim), model),
                            jax.random.split(key, draws))[1]

    single = np.asarray(jax.jit(gibbs_chain)(jax.random.key(seed + 2)))
    return res.samples[0].mean(-1), single, res


def make_figures(quick: bool = False, seed: int = 0) -> dict:
    L = 8
    scan = temperature_scan(L, quick, seed)
    res = scan["result"]
    print(res)
    exact = ep.plots.ising_exact_curves(L, np.linspace(scan["T"].min(), scan["T"].max(), 40))
    fig_t = ep.plots.plot_ising(scan["T"], energy=scan["energy"], energy_se=scan["energy_se"],
                                magnetization=scan["m2"], magnetization_se=scan["m2_se"],
                                magnetization_kind="m2", L=L, exact=exact)
    ex = [spins.ising_exact(L, float(t)) for t in scan["T"]]
    z_e = (scan["energy"] - [e.energy_per_spin for e in ex]) / scan["energy_se"]
    z_m = (scan["m2"] - [e.m2 for e in ex]) / scan["m2_se"]
    print(f"L={L}: max |error| / MCSE over {len(ex)} rungs: energy {np.abs(z_e).max():.2f}, "
          f"<m^2> {np.abs(z_m).max():.2f}")

    fig_s, ax = plt.subplots(figsize=(5.5, 3.4))
    t_mid = np.sqrt(scan["T"][:-1] * scan["T"][1:])
    ax.plot(t_mid, res.swap_acceptance.mean(0), "o-")
    ax.axvline(spins.T_CRITICAL, color="gray", ls=":", label=r"$T_c$")
    ax.set(title=f"Swap acceptance per pair (L={L}, {res.betas.size} rungs)",
           xlabel="temperature (pair midpoint)", ylabel="acceptance", ylim=(0, 1))
    ax.legend()
    fig_s.tight_layout()

    m_pt, m_single, res16 = magnetization_traces(quick, seed)
    frac = float(np.mean(m_pt > 0))
    print(f"L=16, T=2: fraction of PT draws with m > 0: {frac:.3f} "
          f"({int(res16.round_trips[0])} round trips); single Gibbs chain: "
          f"{float(np.mean(m_single > 0)):.3f}")
    fig_m, ax = plt.subplots(figsize=(7, 3.4))
    ax.plot(m_pt, lw=0.6, label=f"parallel tempering (m > 0: {frac:.2f})")
    ax.plot(m_single, lw=0.8, label="single Gibbs chain, same cost")
    ax.set(title="Magnetization at T = 2 < T_c, L = 16", xlabel="draw", ylabel="m",
           ylim=(-1.05, 1.05))
    ax.legend(loc="lower left")
    fig_m.tight_layout()
    return {"ising_vs_temperature": fig_t, "swap_acceptance": fig_s,
            "magnetization_traces": fig_m}


if __name__ == "__main__":
    main(make_figures, "ising_tempering", __doc__)
