"""Metropolis-Hastings vs ULA vs MALA vs NUTS: mixing and bias, diagnosed with ArviZ.

The target is the seed's Example 4.1 Gaussian, Sigma = R(30 deg) diag(1, 0.01) R(30 deg)^T,
mu = (1, -1): its two principal axes have variances 1 and 0.01 (condition number 100). Four
samplers run four chains each through ``numpyro.infer.MCMC``:

* ``ep.RWMH``: random-walk Metropolis-Hastings (seed Definition 4.2), step adapted in warmup;
* ``ep.ULA``: the unadjusted Langevin algorithm (eq. 67) at a fixed step h = 0.01; it is only
  stable for h < 2 x 0.01 (the stiff variance), so it crawls along the slow axis, and its
  stationary law is biased (eq. 73): the stiff variance is inflated by 1/(1 - h/0.02) = 2;
* ``ep.MALA``: ULA's move plus a Metropolis correction (Definition 4.4): exact, same crawl;
* NumPyro's ``NUTS``: Hamiltonian trajectories, several gradients per draw, far larger ESS.

Printed: an R-hat / bulk-ESS / tail-ESS table (ArviZ), the variance along each principal
axis against the exact one and ULA's theory, and the ESS per 1000 gradient evaluations.
Figures: ``trace`` and ``rank`` (ArviZ; ranks are uniform when chains mix) and ``bias_and_ess``.

Run ``python examples/sampler_mixing.py [--quick] [--outdir DIR]``.
"""

from __future__ import annotations

from _common import main  # noqa: I001 (first: backend and float64)

import jax
import matplotlib.pyplot as plt
import numpy as np
from numpyro.infer import MCMC, NUTS

import ebm_ppl as ep

ULA_STEP = 0.01


def run_samplers(target, *, key, num_warmup: int, num_samples: int, num_chains: int = 4):
    """Draws (chain, draw, dim), gradient evaluations and mean acceptance of each sampler."""


    init = target.sample(jax.random.fold_in(key, 99), num_chains)  # dispersed exact draws
    samplers = {  # label: (kernel, chain_method, gradients per step)
        "RWMH": (ep.RWMH(potential_fn=target), "vectorized", 0),
        f"ULA h={ULA_STEP:g}": (ep.ULA(potential_fn=target, step_size=ULA_STEP), "vectorized", 1),
        "MALA": (ep.MALA(potential_fn=target), "vectorized", 1),
        "NUTS": (NUTS(potential_fn=target), "sequential", None),
    }
    runs = {}
    for (label, (kernel, method, grads)), k in zip(samplers.items(),
                                                   jax.random.split(key, len(samplers))):
        fields = ("accept_prob",) + (("num_steps",) if grads is None else ())
        mcmc = MCMC(kernel, num_warmup=num_warmup, num_samples=num_samples,
                    num_chains=num_chains, chain_method=method, progress_bar=False)
        mcmc.run(k, init_params=init, extra_fields=fields)
        extra = mcmc.get_extra_fields()
        n_grad = (float(np.sum(extra["num_steps"])) if grads is None
                  else grads * num_samples * num_chains)
        accept = float(np.mean(extra["accept_prob"])) if "accept_prob" in extra else 1.0
        runs[label] = (np.asarray(mcmc.get_samples(group_by_chain=True)), n_grad, accept)
    return runs


def axis_variances(target, draws):
    """Variance along each principal axis of the exact covariance (largest first), +- MCSE."""
    vals, vecs = np.linalg.eigh(target.cov)
    vecs = vecs[:, ::-1]
    proj = (draws - target.mean) @ vecs
    est = ep.diagnostics.weighted_mean(proj**2, chains=True)
    return vals[::-1], est.value, est.se


def plot_bias_and_ess(target, runs, table):
    labels = list(runs)
    pos = np.arange(len(labels))
    exact = np.linalg.eigvalsh(target.cov)[::-1]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), layout="constrained")
    for k, (ax, name) in enumerate(zip(axes[:2], ("slow axis (variance 1)",
                                                  "stiff axis (variance 0.01)"))):
        est = np.array([table[lab]["var"][k] for lab in labels])
        se = np.array([table[lab]["var_se"][k] for lab in labels])
        ax.errorbar(pos, est, yerr=2 * se, fmt="o", capsize=4, label="estimate +-2 MCSE")
        ax.axhline(exact[k], color="black", ls="--", label="exact variance")
        theory = exact[k] / (1.0 - ULA_STEP / (2.0 * exact[k]))
        ax.plot([labels.index(f"ULA h={ULA_STEP:g}")], [theory], "x", color="tab:red", ms=10,
                label="ULA theory (eq. 73)")
        ax.set_xticks(pos, labels)
        ax.set(title=f"Variance along the {name}", xlabel="sampler", ylabel="variance")
        ax.legend(fontsize="small")
    ess = np.array([table[lab]["ess_bulk"].min() for lab in labels])
    per_grad = np.array([1000 * e / g if g else np.nan for e, g in
                         zip(ess, [runs[lab][1] for lab in labels])])
    per_draw = ess / np.array([runs[lab][0].shape[0] * runs[lab][0].shape[1] for lab in labels])
    width = 0.38
    axes[2].bar(pos - width / 2, 1000 * per_draw, width, label="per 1000 draws")
    axes[2].bar(pos + width / 2, np.nan_to_num(per_grad), width,
                label="per 1000 gradient evaluations")
    axes[2].set_yscale("log")
    axes[2].set_xticks(pos, labels)
    axes[2].set(title="Bulk ESS (worst coordinate)", xlabel="sampler", ylabel="ESS")
    axes[2].legend(fontsize="small")
    fig.suptitle("Bias and efficiency on the Example 4.1 Gaussian (RWMH needs no gradients)")
    return fig


def make_figures(quick: bool = False, seed: int = 0) -> dict:
    target = ep.targets.anisotropic_gaussian_2d()
    num_warmup, num_samples = (200, 400) if quick else (1000, 5000)
    runs = run_samplers(target, key=jax.random.key(seed), num_warmup=num_warmup,
                        num_samples=num_samples)
    draws = {label: x for label, (x, _, _) in runs.items()}
    conv = ep.diagnostics.convergence(draws)
    table = {}
    print(f"Example 4.1 Gaussian, 4 chains x {num_samples} draws after {num_warmup} warmup")
    print(f"{'sampler':<11} {'accept':>6} {'R-hat':>6} {'ESS bulk':>9} {'ESS tail':>9} "
          f"{'grads':>8} {'var slow':>16} {'var stiff':>18}")
    for label, (x, n_grad, accept) in runs.items():
        exact, var, var_se = axis_variances(target, x)
        c = conv[label]
        table[label] = {"var": var, "var_se": var_se, **c}
        print(f"{label:<11} {accept:6.2f} {c['r_hat'].max():6.3f} {c['ess_bulk'].min():9.0f} "
              f"{c['ess_tail'].min():9.0f} {n_grad:8.0f} {var[0]:7.3f} +- {var_se[0]:.3f}"
              f"  {var[1]:.5f} +- {var_se[1]:.5f}")
    theory = exact[1] / (1 - ULA_STEP / (2 * exact[1]))
    print(f"exact variances {exact[0]:.3f} (slow) and {exact[1]:.5f} (stiff); "
          f"ULA theory at h={ULA_STEP:g} (eq. 73): stiff {theory:.5f}")
    print("R-hat > 1.01 or a small ESS says: run longer (or precondition); only NUTS mixes "
          "along the slow axis in this budget, and only ULA is wrong however long it runs.")
    return {
        "trace": ep.plots.plot_trace(draws, title="Trace of x per sampler (4 chains each)"),
        "rank": ep.plots.plot_rank(draws),
        "bias_and_ess": plot_bias_and_ess(target, runs, table),
    }


if __name__ == "__main__":
    main(make_figures, "sampler_mixing", __doc__)
