"""Bayesian model comparison by the evidence of NumPyro models (seed eq. 1-2, 102-104).

The evidence of a model M is its partition function: p(y | M) = int p(y | w) p(w) dw, the
Z of the energy U(w) = -log p(y | w) - log p(w). ``ep.log_evidence`` estimates log p(y | M)
by annealing from the prior (beta = 0) to the posterior (beta = 1) with weighted walkers;
the ratio of two evidences is the Bayes factor.

The models are the polynomial regressions of ``ebm_ppl.demo_evidence`` (the ``ebm-ppl demo``
data: a noisy quadratic, Gaussian prior on the weights, known noise). They are conjugate, so
the exact evidence p(y) = N(y; 0, sigma^2 I + alpha^{-1} Phi Phi^T) is known. Occam's razor
shows up as numbers: the best-fit likelihood always grows with the degree, the evidence peaks
at the true degree, because a bigger model spreads its prior over more functions.

Figures: ``evidence`` (fits, best fit vs evidence per degree, Bayes factors),
``annealing`` (``ep.plots.plot_evidence``: log Z against cost, ESS and beta per stage, weights)
and, without ``--quick``, ``walker_sweep`` (the preferred model with 256 to 16384 walkers).

Run ``python examples/model_comparison.py [--quick] [--outdir DIR]``.
"""

from __future__ import annotations

from _common import main  # noqa: I001 (first: backend and float64)

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import ebm_ppl as ep
from ebm_ppl.demo_evidence import (SIGMA, demo_data, exact_log_evidence,
                                   polynomial_regression)


def design(x, degree: int):
    return np.stack([x**k for k in range(degree + 1)], axis=-1)


def max_log_likelihood(x, y, degree: int) -> float:
    """log p(y | w_ML): the best fit of the model, ignoring the prior."""
    phi = design(x, degree)
    w, *_ = np.linalg.lstsq(phi, y, rcond=None)
    r = y - phi @ w
    return float(-0.5 * (r @ r) / SIGMA**2 - len(y) * np.log(SIGMA * np.sqrt(2 * np.pi)))


def estimate(x, y, degrees, *, key, num_walkers: int) -> dict:
    out = {}
    for degree, k in zip(degrees, jax.random.split(key, len(degrees))):
        out[degree] = ep.log_evidence(polynomial_regression, jnp.asarray(x), jnp.asarray(y),
                                      degree=degree, key=k, num_walkers=num_walkers,
                                      progress_bar=False)
    return out


def plot_comparison(x, y, results):
    degrees = list(results)
    fig, (ax_fit, ax_ev, ax_bf) = plt.subplots(1, 3, figsize=(14, 3.9), layout="constrained")
    ax_fit.plot(x, y, "k.", label="data")
    for d, res in results.items():
        mean_w = res.weights @ np.asarray(res.samples["w"])  # weighted posterior mean
        ax_fit.plot(x, design(x, d) @ mean_w, label=f"degree {d}: posterior mean")
    ax_fit.set(title="Data and posterior-mean fits", xlabel="x", ylabel="y")
    ax_fit.legend(fontsize="small")

    est = np.array([results[d].log_z for d in degrees])
    se = np.array([results[d].log_z_se for d in degrees])
    exact = np.array([exact_log_evidence(x, y, d) for d in degrees])
    fit = np.array([max_log_likelihood(x, y, d) for d in degrees])
    ax_ev.plot(degrees, exact, "k_", ms=22, mew=2, label="exact log evidence")
    ax_ev.errorbar(degrees, est, yerr=2 * se, fmt="o", capsize=4, label="log evidence +-2 se")
    ax_ev.plot(degrees, fit, "s--", color="tab:gray", label=r"best fit $\log p(y|w_{ML})$")
    ax_ev.set(title="Fit keeps improving, evidence peaks", xlabel="polynomial degree",
              ylabel="log probability of the data", xticks=degrees)
    ax_ev.legend(fontsize="small")

    best = degrees[int(np.argmax(est))]
    bf = est - est[degrees.index(best)]
    bf_se = np.hypot(se, se[degrees.index(best)])
    ax_bf.bar(degrees, bf, yerr=2 * bf_se, capsize=4, color="tab:blue", alpha=0.7,
              label=f"estimate +-2 se vs degree {best}")
    ax_bf.plot(degrees, exact - exact[degrees.index(best)], "kx", ms=9, label="exact")
    ax_bf.set(title="log Bayes factor against the best model", xlabel="polynomial degree",
              ylabel=f"log p(y|d) - log p(y|{best})", xticks=degrees)
    ax_bf.axhline(0.0, color="gray", lw=0.8)
    ax_bf.legend(fontsize="small")
    fig.suptitle("Bayesian model comparison of polynomial regressions by their evidence")
    return fig


def make_figures(quick: bool = False, seed: int = 0) -> dict:
    x, y = demo_data(seed)
    degrees = (1, 2, 3) if quick else (0, 1, 2, 3, 4, 5)
    walkers = 256 if quick else 4096
    key_models, key_sweep = jax.random.split(jax.random.key(seed))
    results = estimate(x, y, degrees, key=key_models, num_walkers=walkers)
    print(f"{len(y)} points from a noisy quadratic; {walkers} walkers per model")
    print("degree   log evidence (estimate +- se)   exact      error/se   best-fit log lik")
    for d, res in results.items():
        exact = exact_log_evidence(x, y, d)
        print(f"{d:6d}   {res.log_z:12.4f} +- {res.log_z_se:.4f}   {exact:10.4f}   "
              f"{(res.log_z - exact) / res.log_z_se:+7.2f}   {max_log_likelihood(x, y, d):10.4f}")
    best = max(results, key=lambda d: results[d].log_z)
    print(f"preferred model: degree {best} (exact answer: degree "
          f"{max(degrees, key=lambda d: exact_log_evidence(x, y, d))})")
    exact_best = exact_log_evidence(x, y, best)
    for d in degrees:
        if d != best:
            bf = exact_best - exact_log_evidence(x, y, d)
            print(f"exact log Bayes factor, degree {best} vs {d}: {bf:.4f} (factor {np.exp(bf):.4g})")
    print(f"\n{results[best]}")

    annealing = ep.plots.plot_evidence({f"degree {d}": res for d, res in results.items()})
    annealing.suptitle("Annealing from prior to posterior (likelihood tempering), per model")
    figures = {"evidence": plot_comparison(x, y, results), "annealing": annealing}
    if not quick:  # a budget sweep on the preferred model: the error bar shrinks like 1/sqrt(N)
        sweep = [ep.log_evidence(polynomial_regression, jnp.asarray(x), jnp.asarray(y),
                                 degree=best, key=jax.random.fold_in(key_sweep, n),
                                 num_walkers=n, progress_bar=False)
                 for n in (256, 1024, 4096, 16_384)]
        for n, res in zip((256, 1024, 4096, 16_384), sweep):
            print(f"degree {best}, {n:>6} walkers: {res.log_z:.4f} +- {res.log_z_se:.4f}")
        figures["walker_sweep"] = ep.plots.plot_evidence(
            {f"degree {best}": sweep}, truth=exact_log_evidence(x, y, best))
        figures["walker_sweep"].suptitle(f"Degree {best}: 256 to 16384 walkers")
    return figures


if __name__ == "__main__":
    main(make_figures, "model_comparison", __doc__)
