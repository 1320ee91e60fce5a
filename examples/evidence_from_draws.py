"""The evidence of two models three ways: annealing, bridge sampling from NUTS draws, and the
harmonic mean (which fails), against the exact answer.

Two linear regressions with unknown noise (normal-inverse-gamma prior, so the evidence is an
exact Student-t density, ``ebm_ppl.evidence.conjugate``) describe one noisy quadratic: a
straight line and a parabola. For each we estimate log p(y | M):

* ``ep.log_evidence`` -- annealing from the prior (a fresh run, no draws needed);
* ``ep.bridge_sampling`` -- from the NUTS draws we already have, in about a second;
* the harmonic mean of the likelihood over the same draws, 1/Z = E_post[1 / p(y | theta)]
  (Newton & Raftery 1994). It is consistent, but 1/p(y | theta) has infinite variance under
  the posterior whenever the likelihood is narrower than the prior: Var_post[1/L] involves
  int prior / L dtheta, and 1/L grows like exp(+quadratic) where the prior only decays like
  exp(-quadratic) with a smaller coefficient. The draws that matter (small likelihood, in
  the posterior's tails) are almost never drawn, so the estimate sits nats above the truth
  and drops in jumps whenever one arrives; the Pareto k-hat of its weights (> 0.7: the
  weights' variance is infinite) says so.

Figures: ``estimates`` (each method's log Z and log Bayes factor against the exact ones,
the harmonic mean's running estimate, and its weights' tail) and ``comparison``
(``ep.plots.plot_evidence_comparison`` of the bridge results).

Run ``python examples/evidence_from_draws.py [--quick] [--outdir DIR]``.
"""

from __future__ import annotations

from _common import main  # noqa: I001 (first: backend and float64)

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from numpyro.infer import MCMC, NUTS
from numpyro.infer.util import log_likelihood

import ebm_ppl as ep
from ebm_ppl.demo_evidence import demo_data
from ebm_ppl.evidence.conjugate import nig_log_evidence, nig_regression

MODELS = {"line": 1, "parabola": 2}


def design(x, degree):
    return np.stack([x**k for k in range(degree + 1)], axis=-1)


def harmonic_mean(loglik):
    """log Z by the harmonic mean of the likelihood: -log mean exp(-log L), and its running
    value over the first n draws."""
    a = -np.asarray(loglik, float)
    running = -(np.logaddexp.accumulate(a) - np.log(np.arange(1, a.size + 1)))
    return float(running[-1]), running


def estimate(x, y, degree, key, quick):
    X, yy = jnp.asarray(design(x, degree)), jnp.asarray(y)
    k_nuts, k_bridge, k_anneal = jax.random.split(key, 3)
    n = 250 if quick else 1000
    mcmc = MCMC(NUTS(nig_regression), num_warmup=n, num_samples=n, num_chains=4,
                chain_method="vectorized", progress_bar=False)
    mcmc.run(k_nuts, X, y=yy)
    bridge = ep.bridge_sampling(mcmc, nig_regression, X, y=yy, key=k_bridge)
    anneal = ep.log_evidence(nig_regression, X, y=yy, key=k_anneal,
                             num_walkers=256 if quick else 2048, progress_bar=False)
    loglik = np.asarray(log_likelihood(nig_regression, mcmc.get_samples(), X, y=yy)["y"]).sum(-1)
    hm, running = harmonic_mean(loglik)
    khat = ep.diagnostics.pareto_khat(-loglik, warn=False)
    return dict(bridge=bridge, anneal=anneal, hm=hm, running=running, loglik=loglik,
                khat=float(khat.khat), exact=nig_log_evidence(design(x, degree), y))


def plot_estimates(res):
    fig, (ax_z, ax_bf, ax_run, ax_tail) = plt.subplots(1, 4, figsize=(18, 4),
                                                       layout="constrained")
    names = list(res)
    for i, name in enumerate(names):
        r = res[name]
        off = r["exact"]
        ax_z.errorbar([i - 0.15], [r["anneal"].log_z - off], yerr=2 * r["anneal"].log_z_se,
                      fmt="o", color="tab:blue", capsize=4,
                      label="annealing +-2 se" if i == 0 else None)
        ax_z.errorbar([i], [r["bridge"].log_z - off], yerr=2 * r["bridge"].log_z_se, fmt="s",
                      color="tab:green", capsize=4, label="bridge (NUTS) +-2 se" if i == 0 else None)
        ax_z.plot([i + 0.15], [r["hm"] - off], "v", color="tab:red",
                  label="harmonic mean" if i == 0 else None)
    ax_z.axhline(0.0, color="k", lw=1, label="exact")
    ax_z.set(xticks=range(len(names)), xticklabels=names, ylabel="estimate - exact log Z (nats)",
             xlabel="model", title="log evidence, error against the exact value")
    ax_z.legend(fontsize="small")

    a, b = names
    exact_bf = res[b]["exact"] - res[a]["exact"]
    bfs = {"annealing": (res[b]["anneal"].log_z - res[a]["anneal"].log_z,
                         np.hypot(res[b]["anneal"].log_z_se, res[a]["anneal"].log_z_se)),
           "bridge": (res[b]["bridge"].log_z - res[a]["bridge"].log_z,
                      np.hypot(res[b]["bridge"].log_z_se, res[a]["bridge"].log_z_se)),
           "harmonic mean": (res[b]["hm"] - res[a]["hm"], 0.0)}
    for j, (label, (v, se)) in enumerate(bfs.items()):
        ax_bf.errorbar([j], [v], yerr=2 * se, fmt="o", capsize=4,
                       color=("tab:blue", "tab:green", "tab:red")[j], label=label)
    ax_bf.axhline(exact_bf, color="k", lw=1, label=f"exact {exact_bf:.2f}")
    ax_bf.set(xticks=range(3), xticklabels=list(bfs), xlabel="method",
              ylabel=f"log BF ({b} vs {a})", title="log Bayes factor")
    ax_bf.legend(fontsize="small")

    for name, color in zip(names, ("tab:orange", "tab:purple")):
        r = res[name]
        n = np.arange(1, r["running"].size + 1)
        ax_run.semilogx(n, r["running"] - r["exact"], color=color, label=f"{name}: harmonic mean")
    ax_run.axhline(0.0, color="k", lw=1, label="exact")
    ax_run.set(xlabel="posterior draws used", ylabel="estimate - exact log Z (nats)",
               title="Harmonic mean: running estimate")
    ax_run.legend(fontsize="small")

    for name, color in zip(names, ("tab:orange", "tab:purple")):
        r = res[name]
        w = -r["loglik"] - np.max(-r["loglik"])
        ax_tail.hist(w, bins=40, color=color, alpha=0.6,
                     label=f"{name}: k-hat {r['khat']:.2f}")
    ax_tail.set(xlabel="log (1 / p(y | theta)) - max", ylabel="posterior draws",
                title="Harmonic-mean weights 1/L: heavy tail")
    ax_tail.legend(fontsize="small")
    fig.suptitle("Evidence of two regressions: annealing, bridge sampling from NUTS draws, "
                 "harmonic mean (fails)")
    return fig


def make_figures(quick: bool = False, seed: int = 0) -> dict:
    x, y = demo_data(seed)
    keys = jax.random.split(jax.random.key(seed), len(MODELS))
    res = {name: estimate(x, y, deg, k, quick) for (name, deg), k in zip(MODELS.items(), keys)}
    print("model      exact       annealing            bridge (NUTS draws)   harmonic mean  "
          "k-hat")
    for name, r in res.items():
        an, br = r["anneal"], r["bridge"]
        print(f"{name:9s} {r['exact']:9.3f}   {an.log_z:9.3f} +- {an.log_z_se:.3f}   "
              f"{br.log_z:9.3f} +- {br.log_z_se:.3f}   {r['hm']:9.3f}      {r['khat']:.2f}"
              f"   (bridge {br.wall_time:.2f} s, annealing {an.wall_time:.1f} s)")
    line, parabola = res["line"], res["parabola"]
    print(f"log Bayes factor parabola vs line: exact "
          f"{parabola['exact'] - line['exact']:.3f}, bridge "
          f"{parabola['bridge'].log_z - line['bridge'].log_z:.3f}, harmonic mean "
          f"{parabola['hm'] - line['hm']:.3f}; harmonic mean too high by "
          f"{line['hm'] - line['exact']:.2f} (line) and {parabola['hm'] - parabola['exact']:.2f} "
          "(parabola) nats")
    table = ep.compare_evidence({name: r["bridge"] for name, r in res.items()})
    print(table[["log_z", "se", "log_bf", "log_bf_se", "prob", "prob_lower", "prob_upper"]])
    comparison = ep.plots.plot_evidence_comparison(
        table, exact={name: r["exact"] for name, r in res.items()})
    return {"estimates": plot_estimates(res), "comparison": comparison}


if __name__ == "__main__":
    main(make_figures, "evidence_from_draws", __doc__)
