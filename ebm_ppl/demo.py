"""The main job behind ``make demo`` / ``ebm-ppl demo``.

Part 1 (samplers): the seed's Figure 1 mixture (eq. 4) sampled with ULA, MALA and NumPyro's
NUTS from dispersed starting points: ArviZ summaries per sampler, the mass each one puts on
the x = 5 mode against the exact 0.176, and a Figure-1-style plot. NUTS and MALA are also
compared on the Example 4.1 Gaussian, where both must agree with the exact moments.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np


def _fmt(values, digits: int = 3) -> str:
    return "(" + ", ".join(f"{float(v):.{digits}f}" for v in np.ravel(values)) + ")"


def _mcmc(kernel, key, init, *, warmup, samples, chains, vectorized, progress):
    from numpyro.infer import MCMC

    mcmc = MCMC(kernel, num_warmup=warmup, num_samples=samples, num_chains=chains,
                chain_method="vectorized" if vectorized else "sequential", progress_bar=progress)
    mcmc.run(key, init_params=init)
    return mcmc


def sampler_comparison(outdir: Path, *, quick: bool = False, seed: int = 0) -> dict:
    """Run ULA, MALA and NUTS on the eq. 4 mixture; print summaries; save Figure 1."""
    import arviz as az
    import jax
    import jax.numpy as jnp
    from numpyro.infer import NUTS

    from . import ULA, MALA, targets

    target = targets.figure1_mixture()
    potential = lambda z: target(z["x"])  # noqa: E731 -- named site "x" for ArviZ
    chains = 4
    warmup, samples = (200, 500) if quick else (1000, 5000)
    init = {"x": jnp.linspace(-2.0, 6.0, chains)[:, None]}
    samplers = {
        "ULA (h=0.05)": (ULA(potential_fn=potential, step_size=0.05), True),
        "MALA": (MALA(potential_fn=potential, step_size=0.1), True),
        "NUTS (numpyro)": (NUTS(potential_fn=potential), False),
    }
    key = jax.random.key(seed)
    draws, rows = {}, []
    print(f"== Samplers on the seed's eq. 4 mixture: log Z = {target.log_z:.6f}, "
          f"mass of the x=5 mode = {target.mode_masses[1]:.6f}")
    print(f"   {chains} chains started at x = {_fmt(init['x'][:, 0], 2)}")
    for name, (kernel, vectorized) in samplers.items():
        start = time.perf_counter()
        mcmc = _mcmc(kernel, key, init, warmup=warmup, samples=samples, chains=chains,
                     vectorized=vectorized, progress=not quick)
        seconds = time.perf_counter() - start
        tree = az.from_numpyro(mcmc)
        x = np.asarray(mcmc.get_samples(group_by_chain=True)["x"])[..., 0]
        draws[name] = x
        mass = float(np.mean(np.asarray(target.mode_index(jnp.asarray(x.reshape(-1, 1))))))
        print(f"\n-- {name}  ({seconds:.1f} s)")
        print(az.summary(tree).to_string())
        rows.append((name, mass, float(np.max(az.rhat(tree)["x"].values))))
    print("\n   sampler           mass(x=5)   exact    max R-hat")
    for name, mass, rhat in rows:
        print(f"   {name:<16}  {mass:9.3f}  {target.mode_masses[1]:7.3f}  {rhat:9.2f}")
    print("   R-hat > 1.01 flags chains that rarely cross the barrier, so the mass each sampler "
          "reports depends on where its chains started; the annealing engine (log Z) weighs the modes.")
    outdir.mkdir(parents=True, exist_ok=True)
    fig = _figure1(target, draws)
    path = outdir / "figure1_mixture_samplers.png"
    fig.savefig(path, dpi=120)
    print(f"\n   wrote {path}")
    return draws


def nuts_vs_mala(*, quick: bool = False, seed: int = 0) -> dict:
    """NUTS and MALA agree with each other and with the exact moments on a Gaussian."""
    import jax
    import jax.numpy as jnp
    from numpyro.infer import NUTS

    from . import MALA, targets

    target = targets.anisotropic_gaussian_2d()
    chains, warmup, samples = 4, 500, (1000 if quick else 5000)
    init = jnp.zeros((chains, 2))
    print("\n== NUTS vs MALA on the Example 4.1 Gaussian (exact mean (1, -1), "
          f"var {_fmt(np.diag(target.cov), 4)})")
    out = {}
    for name, kernel, vec in [("MALA", MALA(potential_fn=target, step_size=0.05), True),
                              ("NUTS", NUTS(potential_fn=target), False)]:
        mcmc = _mcmc(kernel, jax.random.key(seed), init, warmup=warmup, samples=samples,
                     chains=chains, vectorized=vec, progress=False)
        x = np.asarray(mcmc.get_samples(group_by_chain=True))
        per_chain = x.mean(axis=1)
        se = per_chain.std(axis=0, ddof=1) / np.sqrt(chains)
        out[name] = (x.reshape(-1, 2).mean(0), np.var(x.reshape(-1, 2), axis=0), se)
        print(f"   {name}: mean {_fmt(out[name][0])} (+- {_fmt(se)}), var {_fmt(out[name][1], 4)}")
    return out


def _figure1(target, draws):
    """Seed Figure 1 with one histogram per sampler (the shared
    [`plot_figure1`][ebm_ppl.plots.plot_figure1])."""
    from .plots import plot_figure1

    return plot_figure1(target, samples={k: v.reshape(-1) for k, v in draws.items()},
                        grid=np.linspace(-4.0, 8.0, 600))


def run_demo(outdir: Path, *, quick: bool = False, seed: int = 0) -> None:
    """Everything ``make demo`` shows, written under ``outdir``."""
    outdir = Path(outdir)
    sampler_comparison(outdir, quick=quick, seed=seed)
    nuts_vs_mala(quick=quick, seed=seed)
    from .demo_evidence import evidence_comparison

    evidence_comparison(outdir, quick=quick, seed=seed)


SEED_FIGURES = ("figure1_mixture.png", "figure4_kl_vs_fisher.png", "example41_ula_covariance.png")


def regenerate_figures(outdir: Path, *, quick: bool = False, seed: int = 0) -> list[Path]:
    """Write the seed's figures into ``outdir`` with [`ebm_ppl.plots`][ebm_ppl.plots] (``ebm-ppl figures``).

    Figure 1 (the eq. 4 mixture: density, exact draws, energy), Figure 4 (KL vs Fisher of the
    eq. 47 mixtures for N = 100, 1000, 10000 draws, Remark 3.1) and Example 4.1 (ULA's
    stationary covariance against the step, theory eq. 73 vs simulation). The example scripts
    in ``examples/`` draw these and more, with explanations.
    """
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise ValueError(f"outdir {str(outdir)!r} exists and is not a folder")
    import jax
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from . import plots

    k1, k4, k41 = jax.random.split(jax.random.key(seed), 3)
    makers = (
        lambda: plots.plot_figure1(key=k1, num_samples=5_000 if quick else 100_000,
                                   grid=np.linspace(-4.0, 8.0, 600)),
        lambda: plots.plot_kl_vs_fisher(np.linspace(0.0, 8.0, 5 if quick else 17),
                                        (100, 1_000, 10_000), key=k4),
        lambda: plots.plot_ula_covariance(
            step_sizes=(5e-3, 1e-2, 1.5e-2) if quick else (2e-3, 5e-3, 1e-2, 1.5e-2, 1.9e-2),
            key=k41, num_chains=64, num_warmup=200 if quick else 1_000,
            num_samples=500 if quick else 5_000, progress_bar=False),
    )
    outdir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, make in zip(SEED_FIGURES, makers):
        start = time.perf_counter()
        fig = make()
        path = outdir / name
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
        print(f"wrote {path}  ({time.perf_counter() - start:.1f} s)")
    return paths
