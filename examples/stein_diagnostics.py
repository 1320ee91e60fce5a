"""Bias you can measure without the answer: the kernel Stein discrepancy (KSD) of MCMC draws,
its goodness-of-fit test, the ULA step it selects, and Stein thinning.

ULA (seed eq. 67) at a fixed step is biased (Example 4.1, eq. 73), yet its chains agree with
each other, so R-hat is fine. The KSD needs only the score -grad U of the target, which every
energy here has, and its wild-bootstrap test (Chwialkowski et al. 2016) rejects ULA's draws
while MALA's pass:

1. the Example 4.1 Gaussian, ULA at h = 0.015 vs MALA (R-hat, ESS, KSD p-value);
2. a NumPyro logistic regression, ULA at a too-large step vs MALA, through
   ``ep.diagnostics.summary(mcmc, stein=True)`` (unconstrained space, the model's transforms);
3. the ULA step of least KSD for a gradient budget (``select_step_size``), coarse vs fine grid;
4. Stein thinning of the MALA chain to a few representative points.

Figures: ``ksd_test`` (p-values and R-hat per sampler), ``step_size`` (KSD against h),
``thinning`` (the selected points and the KSD of the selection).

Run ``python examples/stein_diagnostics.py [--quick] [--outdir DIR]``.
"""

from __future__ import annotations

from _common import main  # noqa: I001 (first: backend and float64)

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.infer import MCMC

import ebm_ppl as ep


def logistic_regression(x, y=None):
    w = numpyro.sample("w", dist.Normal(0.0, 1.0).expand([x.shape[1]]).to_event(1))
    b = numpyro.sample("b", dist.Normal(0.0, 1.0))
    numpyro.sample("y", dist.Bernoulli(logits=x @ w + b), obs=y)


def logistic_data(n=200, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    y = rng.random(n) < 1 / (1 + np.exp(-(x @ np.array([1.0, -1.0, 0.5]) + 0.3)))
    return jnp.asarray(x), jnp.asarray(y.astype(np.float64))


def run(kernel, key, *args, num_warmup, num_samples, thinning=1, init_params=None):
    mcmc = MCMC(kernel, num_warmup=num_warmup, num_samples=num_samples, num_chains=4,
                thinning=thinning, chain_method="vectorized", progress_bar=False)
    mcmc.run(key, *args, init_params=init_params)
    return mcmc


def report(label, table):
    test = table.attrs["stein_test"]
    print(f"  {label:<22} max R-hat {table['r_hat'].max():.4f}  min bulk ESS "
          f"{table['ess_bulk'].min():7.0f}  KSD {test.ksd:.4f}  p = {test.p_value:.3f}")
    print(f"  {'':<22} -> {test.reading}")
    return {"label": label, "p": test.p_value, "rhat": float(table["r_hat"].max())}


def plot_tests(rows):
    fig, (ax_p, ax_r) = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
    labels = [r["label"] for r in rows]
    pos = np.arange(len(rows))
    colors = ["tab:red" if r["p"] < 0.05 else "tab:green" for r in rows]
    ax_p.barh(pos, [max(r["p"], 1e-3) for r in rows], color=colors)
    ax_p.axvline(0.05, color="black", ls="--", label="level 0.05")
    ax_p.set_xscale("log")
    ax_p.set(yticks=pos, yticklabels=labels, xlabel="KSD test p-value (log)", ylabel="run",
             title="KSD goodness-of-fit test: bias seen")
    ax_p.legend(fontsize="small")
    ax_r.barh(pos, [r["rhat"] - 1 for r in rows], color="tab:blue")
    ax_r.axvline(0.01, color="black", ls="--", label="R-hat = 1.01")
    ax_r.set(yticks=pos, yticklabels=labels, xlabel="max R-hat - 1", ylabel="run",
             title="R-hat: mixing only, bias unseen")
    ax_r.legend(fontsize="small")
    fig.suptitle("ULA's chains agree (R-hat) but are not from the target (KSD)")
    return fig


def plot_thinning(target, chain, thinned, naive_ksd):
    fig, (ax_x, ax_k) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    ax_x.plot(chain[:, 0], chain[:, 1], ".", ms=2, color="lightgray", label="MALA draws")
    pts = thinned["posterior"]["x"].values[0]
    ax_x.plot(pts[:, 0], pts[:, 1], "o", ms=5, color="tab:red",
              label=f"{len(pts)} Stein-thinned points")
    ax_x.set(xlabel="x[0]", ylabel="x[1]", title="Stein thinning (Riabiz et al. 2022)")
    ax_x.legend(fontsize="small")
    m = np.arange(1, len(pts) + 1)
    ax_k.plot(m, thinned["sample_stats"]["ksd"].values[0], color="tab:red", label="Stein thinning")
    ax_k.plot(m, naive_ksd, color="tab:blue", label="every k-th draw")
    ax_k.set_xscale("log")
    ax_k.set_yscale("log")
    ax_k.set(xlabel="number of points m", ylabel="KSD of the m points",
             title="KSD of the selection")
    ax_k.legend(fontsize="small")
    fig.suptitle(f"Representing {target.name} with a few points")
    return fig


def make_figures(quick: bool = False, seed: int = 0) -> dict:
    keys = jax.random.split(jax.random.key(seed), 8)
    target = ep.targets.anisotropic_gaussian_2d()
    rows = []

    print("1. Example 4.1 Gaussian, 4 chains x 500 kept draws from exact starts")
    init = target.sample(keys[0], 4)
    thin = 20 if quick else 100
    ula = run(ep.ULA(potential_fn=target, step_size=0.015), keys[1], num_warmup=200,
              num_samples=500 * thin, thinning=thin, init_params=init)
    rows.append(report("Ex. 4.1 ULA h=0.015",
                       ep.diagnostics.summary(ula, stein={"potential_fn": target})))
    mala = run(ep.MALA(potential_fn=target), keys[2], num_warmup=500,
               num_samples=500 * (5 if quick else 10), thinning=5 if quick else 10,
               init_params=init)
    rows.append(report("Ex. 4.1 MALA", ep.diagnostics.summary(mala, stein={"potential_fn": target})))

    print("2. Logistic regression (200 points, 3 features), NumPyro model")
    x, y = logistic_data()
    n_lr = 250 if quick else 1000
    for label, kernel in (("logreg ULA h=0.025", ep.ULA(model=logistic_regression,
                                                        step_size=0.025)),
                          ("logreg MALA", ep.MALA(model=logistic_regression))):
        mcmc = run(kernel, keys[3], x, y, num_warmup=500, num_samples=n_lr)
        rows.append(report(label, ep.diagnostics.summary(mcmc, stein=True)))
    figures = {"ksd_test": plot_tests(rows)}

    print("3. ULA step by least KSD on Example 4.1 (chains start at mean + (3, -3))")
    x0 = np.tile(target.mean + np.array([3.0, -3.0]), (8, 1))
    budget = 10_000 if quick else 40_000
    coarse = np.geomspace(2.5e-4, 1.6e-2, 5)
    fine = np.geomspace(5e-4, 1.9e-2, 8 if quick else 20)
    repeats = 1 if quick else 4  # the KSD of one run fluctuates; averaging steadies the choice
    sel = ep.diagnostics.select_step_size(target, x0, coarse, num_gradients=budget, key=keys[4],
                                          num_repeats=repeats)
    ref = ep.diagnostics.select_step_size(target, x0, fine, num_gradients=budget, key=keys[5],
                                          num_repeats=repeats)
    print(f"  coarse grid {np.round(coarse, 5).tolist()}: selected h = {sel.best:.4g}; "
          f"fine grid optimum h = {ref.best:.4g} (ratio {sel.best / ref.best:.2f})")
    figures["step_size"] = ep.plots.plot_step_size_selection(sel, reference=ref)

    print("4. Stein thinning of the MALA draws")
    draws = np.asarray(mala.get_samples(group_by_chain=True))
    m = 20 if quick else 50
    thinned = ep.diagnostics.stein_thin(draws, target, m, standardize=False)
    flat = draws.reshape(-1, 2)
    naive = [ep.diagnostics.stein_discrepancy(flat[np.linspace(0, len(flat) - 1, k, dtype=int)],
                                              target).ksd for k in range(1, m + 1)]
    print(f"  KSD of {m} points: Stein thinning {thinned['sample_stats']['ksd'].values[0, -1]:.4f}"
          f" vs every k-th draw {naive[-1]:.4f}")
    figures["thinning"] = plot_thinning(target, flat, thinned, np.asarray(naive))
    return figures


if __name__ == "__main__":
    main(make_figures, "stein_diagnostics", __doc__)
