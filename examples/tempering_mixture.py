"""Parallel tempering on the Figure 1 mixture: the mode that MALA and NUTS never visit.

The seed's eq. 4 energy U(x) = -log[0.7 exp(-x^2/2) + 0.3 exp(-(x-5)^2/0.5)] has a deep mode
at 0 and a narrow one at 5 holding 0.15/0.85 = 0.176 of the mass, behind a barrier of about
6 nats. Chains of a local sampler (MALA, NUTS) started in the deep mode cross it only a
handful of times (mostly during warmup, while the step is large), so their mode mass is
decided by a few crossings: each chain reports 0, or far too much.

Parallel tempering (replica exchange) runs R copies at inverse temperatures
1 = beta_0 > beta_1 > ... > beta_{R-1} on the tempered energies beta_r U; at the hot end the
barrier beta U is low and the chain crosses it freely. Neighbouring copies swap their
configurations with probability min(1, exp((beta_r - beta_{r+1}) (U(x_r) - U(x_{r+1})))),
which keeps every copy exact at its own temperature, so the beta = 1 copy samples
exp(-U)/Z and inherits the crossings of the hot copies.

Figures: ``tempering_mixture`` (the histograms of MALA, NUTS and the PT target rung against
the exact density; the running mass of the mode at 5 against the exact 0.176; the number of
barrier crossings per chain) and ``swap_acceptance`` (per neighbouring pair of the ladder).

Run ``python examples/tempering_mixture.py [--quick] [--outdir DIR]``.
"""

from __future__ import annotations

from _common import main  # noqa: I001 (first: backend and float64)

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
from matplotlib.ticker import NullFormatter
import numpy as np
from numpyro.infer import MCMC, NUTS

import ebm_ppl as ep

NUM_CHAINS = 4


def local_sampler(name, target, key, num_warmup, num_samples):
    """Four chains of MALA or NUTS, all started in the deep mode at x = 0."""
    kernel = ep.MALA(potential_fn=target) if name == "MALA" else NUTS(potential_fn=target)
    mcmc = MCMC(kernel, num_warmup=num_warmup, num_samples=num_samples, num_chains=NUM_CHAINS,
                chain_method="vectorized", progress_bar=False)
    mcmc.run(key, init_params=jnp.zeros((NUM_CHAINS, 1)))
    return np.asarray(mcmc.get_samples(group_by_chain=True))


def mode_labels(draws, target):
    """0 (deep mode at 0) or 1 (mode at 5) for every draw, shape (chains, draws)."""
    return np.asarray(target.mode_index(draws[..., None]))


def running_mass(draws, target):
    """Fraction of the draws (all chains) in the mode at 5 after each draw."""
    in_mode = (mode_labels(draws, target) == 1).astype(float)
    return np.cumsum(in_mode.mean(axis=0)) / np.arange(1, in_mode.shape[1] + 1)


def mode_switches(draws, target):
    """Per chain: how many times consecutive draws lie in different modes."""
    return np.sum(np.diff(mode_labels(draws, target), axis=1) != 0, axis=1)


def plot_overview(target, runs, exact_mass):
    fig, (ax_h, ax_m, ax_s) = plt.subplots(1, 3, figsize=(15, 4.2))
    grid = np.linspace(-4, 8, 600)
    density = np.exp(-np.asarray(jax.vmap(target)(jnp.asarray(grid)[:, None])) - target.log_z)
    ax_h.plot(grid, density, color="k", lw=2, label="exact exp(-U)/Z")
    colors = {"MALA": "tab:orange", "NUTS": "tab:green", "parallel tempering": "tab:blue"}
    width = 0.8 / len(runs)
    for i, (name, draws) in enumerate(runs.items()):
        ax_h.hist(draws.ravel(), bins=80, range=(-4, 8), density=True, histtype="step",
                  color=colors[name], lw=1.5, label=name)
        ax_m.plot(running_mass(draws, target), color=colors[name], label=name)
        switches = mode_switches(draws, target)
        ax_s.bar(np.arange(switches.size) + (i - 1) * width, np.maximum(switches, 0.8),
                 width=width, color=colors[name], label=name)
    ax_h.set(xlabel="x", ylabel="density", title="Draws at beta = 1 (4 chains started at x = 0)")
    ax_h.legend(fontsize="small")
    ax_m.axhline(exact_mass, color="k", ls="--", label=f"exact {exact_mass:.3f}")
    ax_m.set(xlabel="draw (all chains pooled)", ylabel="mass of the mode at 5",
             title="Running estimate of the mode mass", ylim=(0, 1))
    ax_m.legend(fontsize="small")
    ax_s.set_yscale("log")
    ax_s.set(xlabel="chain", ylabel="mode switches (log; 0 drawn below 1)", xticks=range(NUM_CHAINS),
             title="Crossings of the barrier after warmup")
    ax_s.legend(fontsize="small")
    fig.suptitle("Figure 1 mixture: MALA and NUTS cross the barrier a handful of times, "
                 "parallel tempering hundreds")
    fig.tight_layout()
    return fig


def plot_swaps(pt):
    fig, ax = plt.subplots(figsize=(6.5, 4))
    acc = pt.swap_acceptance
    mid = np.sqrt(pt.betas[:-1] * pt.betas[1:])
    for c in range(acc.shape[0]):
        ax.plot(mid, acc[c], "o-", alpha=0.7, label=f"chain {c}")
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set(xlabel="beta (geometric mean of the pair)", ylabel="swap acceptance",
           title="Swap acceptance per neighbouring pair", ylim=(0, 1))
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def make_figures(quick: bool = False, seed: int = 0) -> dict:
    target = ep.targets.figure1_mixture()
    exact_mass = float(target.mode_masses[1])
    num_warmup, num_samples = (500, 2000) if quick else (1000, 20_000)
    key_mala, key_nuts, key_pt = jax.random.split(jax.random.key(seed), 3)
    runs = {name: local_sampler(name, target, k, num_warmup, num_samples)[..., 0]
            for name, k in (("MALA", key_mala), ("NUTS", key_nuts))}
    betas = ep.tempering.geometric_ladder(8, 0.05)
    pt = ep.parallel_tempering(target, np.zeros(1), key=key_pt, kernel="mala", betas=betas,
                               num_samples=num_samples, num_warmup=num_warmup,
                               num_chains=NUM_CHAINS, progress_bar=False)
    runs["parallel tempering"] = pt.samples[..., 0]

    print(f"Figure 1 mixture (seed eq. 4): exact mass of the mode at 5 = {exact_mass:.4f}")
    print(f"{NUM_CHAINS} chains x {num_samples} draws after {num_warmup} warmup, all started "
          "at x = 0")
    print("sampler               mass at 5 (+- MCSE)   R-hat   mass at 5 per chain       "
          "mode switches per chain")
    for name, draws in runs.items():
        m = ep.diagnostics.mode_masses(draws[..., None], target, chains=True)
        rhat = float(ep.diagnostics.convergence({"x": draws[..., None]})["x"]["r_hat"].max())
        per_chain = np.mean(mode_labels(draws, target) == 1, axis=1)
        print(f"{name:20s}  {m.value[1]:.4f} +- {m.se[1]:.4f}   {rhat:6.3f}   "
              f"{np.array2string(per_chain, precision=3, separator=', '):24s}  "
              f"{mode_switches(draws, target).tolist()}")
    print(f"PT ladder: {betas.size} rungs, beta from 1 down to {betas[-1]:.2f} (geometric)")
    print(f"  swap acceptance per pair (mean over chains): "
          f"{np.array2string(pt.swap_acceptance.mean(0), precision=2, separator=', ')}")
    print(f"  round trips per chain: {pt.round_trips.tolist()}; kernel steps "
          f"{pt.num_kernel_steps} (rungs x (warmup + draws) x chains)")
    m_pt = ep.diagnostics.mode_masses(pt.samples, target, chains=True)
    print(f"  PT mass at 5: {m_pt.value[1]:.4f} +- {m_pt.se[1]:.4f}, "
          f"z = {(m_pt.value[1] - exact_mass) / m_pt.se[1]:+.2f} against the exact value")
    return {"tempering_mixture": plot_overview(target, runs, exact_mass),
            "swap_acceptance": plot_swaps(pt)}


if __name__ == "__main__":
    main(make_figures, "tempering_mixture", __doc__)
