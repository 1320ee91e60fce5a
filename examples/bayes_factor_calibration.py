"""Simulation-based calibration of Bayes factors (Schad et al. 2022) on two nested regressions.

Is P(M | data) = 0.8 right 80% of the time? ``ep.bayes_factor_calibration`` draws a true model
and a data set from its prior predictive, many times, estimates both models' evidences on
every data set (one batched annealing run per model, ``ep.log_evidence_batch``) and bins the
posterior model probabilities against how often the model was the true one.

The models are conjugate normal-inverse-gamma regressions (``ebm_ppl.evidence.conjugate``):
M0 (intercept only) is nested in M1 (intercept and slope), and both evidences are exact
(multivariate Student-t), so every simulated data set has an exact log Bayes factor to check
the estimate against, and the calibration curve of the exact probabilities shows what the
finite number of simulations allows.

Figure ``calibration``: the calibration curves of P(M0 | data) from the estimated and the
exact evidences (90% Jeffreys intervals), and the estimated log Bayes factor against the
exact one on each data set.

Run ``python examples/bayes_factor_calibration.py [--quick] [--outdir DIR]``.
"""

from __future__ import annotations

from _common import main  # noqa: I001 (first: backend and float64)

import matplotlib.pyplot as plt
import numpy as np
import jax
import jax.numpy as jnp

import ebm_ppl as ep
from ebm_ppl.evidence.conjugate import nig_log_evidence, nig_regression
from ebm_ppl.evidence.sbc import calibration_curve, plot_calibration, posterior_model_probs


def intercept_only(X, y=None):
    """M0: y = w0 + noise (the first column of X)."""
    nig_regression(X[:, :1], y)


def with_slope(X, y=None):
    """M1: y = w0 + w1 x + noise."""
    nig_regression(X, y)


def design(n, seed):
    x = np.random.default_rng(seed).uniform(-1.0, 1.0, n)
    return np.stack([np.ones(n), x], axis=1)


def make_figures(quick: bool = False, seed: int = 0) -> dict:
    k, n = (40, 20) if quick else (200, 30)
    opts = dict(num_walkers=256, method="mala", bias_check=False) if quick else \
        dict(num_walkers=1024, bias_check=False)
    X = jnp.asarray(design(n, seed))
    cal = ep.bayes_factor_calibration([intercept_only, with_slope], X, key=jax.random.key(seed),
                                      num_datasets=k, progress_bar=False, **opts)
    exact = np.array([[nig_log_evidence(np.asarray(X[:, :1]), y),
                       nig_log_evidence(np.asarray(X), y)] for y in cal.data])
    log_bf, log_bf_exact = cal.log_bayes_factor, exact[:, 0] - exact[:, 1]
    se = np.hypot(cal.log_z_se[:, 0], cal.log_z_se[:, 1])
    dev = np.abs(log_bf - log_bf_exact)
    p_est, p_exact = cal.posterior_probs[:, 0], posterior_model_probs(exact)[:, 0]
    print(f"{k} data sets of {n} points ({int(np.sum(cal.true_model == 0))} from M0), "
          f"{opts}, {cal.wall_time:.1f} s")
    print(f"log BF (M0 vs M1), estimated - exact: max |diff| {dev.max():.3f}, median "
          f"{np.median(dev):.3f}; within 3 se: {np.mean(dev <= 3 * se):.0%} "
          f"(median se {np.median(se):.3f})")
    print(f"P(M0 | data), estimated - exact: max |diff| {np.max(np.abs(p_est - p_exact)):.3f}")
    m, m_se = cal.mean_posterior(0)
    print(f"mean P(M0 | data): estimated {m:.3f} +- {m_se:.3f}, exact "
          f"{p_exact.mean():.3f}, prior {cal.prior_probs[0]:.3f}")
    curves = {"estimated": cal.calibration(0), "exact": calibration_curve(
        p_exact, cal.true_model == 0)}
    for name, c in curves.items():
        print(f"calibration ({name}): " + ", ".join(
            f"{p:.2f}->{o:.2f} (n={c_})" for p, o, c_ in
            zip(c["predicted"], c["observed"], c["count"])))

    fig, (ax_cal, ax_bf) = plt.subplots(1, 2, figsize=(10, 4.3), layout="constrained")
    plot_calibration(curves["estimated"], ax=ax_cal, label="estimated evidences")
    plot_calibration(curves["exact"], ax=ax_cal, label="exact evidences", diagonal=False,
                     alpha=0.7)
    ax_cal.set_title(f"calibration of P(M0 | data), {k} simulated data sets")
    ax_cal.legend(loc="upper left")
    lim = [min(log_bf_exact.min(), log_bf.min()) - 0.5, max(log_bf_exact.max(), log_bf.max()) + 0.5]
    ax_bf.plot(lim, lim, color="0.6", ls="--", lw=1, label="exact = estimated")
    for j, marker in ((0, "o"), (1, "s")):
        sel = cal.true_model == j
        ax_bf.errorbar(log_bf_exact[sel], log_bf[sel], yerr=se[sel], fmt=marker, ms=4,
                       capsize=2, label=f"data from M{j}")
    ax_bf.set(xlabel="exact log BF (M0 vs M1)", ylabel="estimated log BF",
              title="log Bayes factor per data set")
    ax_bf.legend()
    fig.suptitle("Simulation-based calibration of Bayes factors: intercept-only vs. slope")
    return {"calibration": fig}


if __name__ == "__main__":
    main(make_figures, "bayes_factor_calibration", __doc__)
