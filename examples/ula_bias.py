"""The bias of the unadjusted Langevin algorithm and how Jarzynski weights remove it
(seed Example 4.1, eq. 67-73 and eq. 102-104).

ULA, X_{k+1} = X_k - h grad U(X_k) + sqrt(2h) xi_k (eq. 67), has no accept/reject step. On a
Gaussian N(mu, Sigma) its iterates stay Gaussian (eq. 70-72) and converge to

    N(mu, Sigma (I - h Sigma^{-1} / 2)^{-1})                                          (eq. 73)

for h < 2 lambda_min(Sigma): the mean is right, the covariance is inflated, most along the
stiff axes, and KL(biased || exact) blows up as h -> 2 lambda_min. The target is the Example
4.1 case Sigma = R(30 deg) diag(1, 0.01) R(30 deg)^T, mu = (1, -1), so h must stay below 0.02.

Jarzynski's weights (eq. 102-103) make the same ULA walkers exact: started from exact draws,
each walker carries A_{k+1} = A_k - alpha(X_{k+1}, X_k) + alpha(X_k, X_{k+1}), and the
self-normalized average with weights exp(A_k) is an exact expectation (eq. 104), whatever h.

Figures: ``ula_covariance`` (theory vs simulation against h), ``ula_kl`` (KL of the biased
law against h) and ``jarzynski`` (unweighted vs weighted stiff variance, and the ESS).

Run ``python examples/ula_bias.py [--quick] [--outdir DIR]``.
"""

from __future__ import annotations

from functools import partial

from _common import main  # noqa: I001 (first: backend and float64)

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import ebm_ppl as ep


def gaussian_kl(mean_p, cov_p, mean_q, cov_q) -> float:
    """KL(N(mean_p, cov_p) || N(mean_q, cov_q)) in closed form."""
    d = len(mean_p)
    prec_q = np.linalg.inv(cov_q)
    diff = np.asarray(mean_q) - np.asarray(mean_p)
    return 0.5 * float(np.trace(prec_q @ cov_p) + diff @ prec_q @ diff - d
                       + np.linalg.slogdet(cov_q)[1] - np.linalg.slogdet(cov_p)[1])


def plot_kl(target, report):
    stiff = np.linalg.eigvalsh(target.cov).min()
    hs = np.geomspace(1e-4, 0.995 * 2 * stiff, 300)
    fig, ax = plt.subplots(figsize=(6.5, 4), layout="constrained")
    ax.plot(hs, [target.ula_kl(h) for h in hs], color="black",
            label=r"theory: $\frac{1}{2}\sum_i [r_i^{-1} - 1 + \log r_i]$, $r_i = 1 - h\lambda_i/2$")
    h_sim, kl_sim = [], []
    for label, x in report.draws.items():
        if label.startswith("ULA h="):
            flat = x.reshape(-1, x.shape[-1])
            h_sim.append(float(label.split("=")[1]))
            kl_sim.append(gaussian_kl(flat.mean(0), np.cov(flat, rowvar=False), target.mean,
                                      target.cov))
    ax.plot(h_sim, kl_sim, "o", color="tab:red", label="plug-in from the simulated moments")
    ax.axvline(2 * stiff, color="gray", ls=":", label=r"stability limit $h = 2\lambda_{min}(\Sigma)$")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set(title="KL(ULA's stationary law || exact) against the step (Example 4.1)",
           xlabel="step size h", ylabel="KL divergence")
    ax.legend(fontsize="small")
    return fig


@partial(jax.jit, static_argnames=("target", "num_steps"))
def jarzynski_walk(target, x0, key, step_size, num_steps: int):
    """ULA walkers with Jarzynski log weights at a fixed energy (eq. 102-103): per step the
    unweighted and weighted variance along each principal axis, and the Kish ESS fraction."""


    vals, vecs = np.linalg.eigh(target.cov)
    axes, mean = jnp.asarray(vecs[:, ::-1]), jnp.asarray(target.mean)
    state = jax.vmap(lambda x: ep.kernels.jarzynski_init(x, target))(x0)

    def body(state, k):
        keys = jax.random.split(k, x0.shape[0])
        state, _ = jax.vmap(lambda kk, s: ep.kernels.jarzynski_step(kk, s, target, step_size))(
            keys, state)
        w = jax.nn.softmax(state.log_weight)
        proj2 = ((state.position - mean) @ axes) ** 2
        return state, (proj2.mean(0), w @ proj2, 1.0 / jnp.sum(w**2) / w.size)

    state, trace = jax.lax.scan(body, state, jax.random.split(key, num_steps))
    return state, trace


def plot_jarzynski(target, steps, traces, finals):
    stiff = np.linalg.eigvalsh(target.cov).min()
    fig, (ax_k, ax_h, ax_e) = plt.subplots(1, 3, figsize=(14, 3.9), layout="constrained")
    for (h, (var_u, var_w, ess)), color in zip(traces.items(), ("tab:blue", "tab:orange",
                                                                 "tab:green")):
        k = np.arange(1, var_u.shape[0] + 1)
        ax_k.plot(k, var_u[:, 1], color=color, ls="--", label=f"h={h:g} unweighted")
        ax_k.plot(k, var_w[:, 1], color=color, label=f"h={h:g} Jarzynski-weighted")
        ax_e.plot(k, ess, color=color, label=f"h={h:g}")
    ax_k.axhline(stiff, color="black", ls=":", label="exact")
    ax_k.set(title="Stiff-axis variance along the walk", xlabel="ULA step k",
             ylabel="variance along the stiff axis")
    ax_k.legend(fontsize="x-small", ncol=2)
    hs = np.linspace(0, 1.15 * max(steps), 200)
    ax_h.plot(hs, stiff / (1 - hs / (2 * stiff)), color="black", label="ULA theory (eq. 73)")
    ax_h.axhline(stiff, color="gray", ls="--", label="exact")
    for name, marker, idx in (("unweighted walkers", "s", 0), ("Jarzynski-weighted", "o", 1)):
        est = np.array([finals[h][idx].value[1] for h in steps])
        se = np.array([finals[h][idx].se[1] for h in steps])
        ax_h.errorbar(steps, est, yerr=2 * se, fmt=marker, capsize=3, label=f"{name} +-2 se")
    ax_h.set(title="After the walk: bias removed by the weights", xlabel="step size h",
             ylabel="variance along the stiff axis")
    ax_h.legend(fontsize="small")
    ax_e.set(title="Kish ESS of the weights (fraction of walkers)", xlabel="ULA step k",
             ylabel="ESS / N", ylim=(0, 1.05))
    ax_e.legend(fontsize="small")
    fig.suptitle("Jarzynski weights (eq. 102-104) make biased ULA walkers exact")
    return fig


def make_figures(quick: bool = False, seed: int = 0) -> dict:
    target = ep.targets.anisotropic_gaussian_2d()
    key_report, key_x0, key_walk = jax.random.split(jax.random.key(seed), 3)
    steps = (5e-3, 1e-2, 1.5e-2)
    report = ep.diagnostics.sampler_bias_report(
        target, key=key_report, ula_step_sizes=steps if quick else (2e-3,) + steps + (1.9e-2,),
        mala=False, nuts=False, num_chains=64, num_warmup=200 if quick else 1000,
        num_samples=500 if quick else 5000, progress_bar=False)  # chains start at exact draws
    var = report.table.xs("var_pc[1]", level="statistic")
    print("ULA on the Example 4.1 Gaussian: variance along the stiff axis (exact 0.01)")
    print(var[["estimate", "mcse", "theory", "z_theory", "exact", "z_exact"]].round(5).to_string())
    print("\nKL(ULA stationary || exact), closed form:  "
          + "  ".join(f"h={h:g}: {target.ula_kl(h):.4g}" for h in (1e-3, 5e-3, 1e-2, 1.5e-2,
                                                                   1.9e-2)))
    figures = {
        "ula_covariance": ep.plots.plot_ula_covariance(target, report=report),
        "ula_kl": plot_kl(target, report),
    }

    num_walkers, num_steps = (2048, 100) if quick else (16_384, 400)
    x0 = target.sample(key_x0, num_walkers)
    axes = np.linalg.eigh(target.cov)[1][:, ::-1]  # principal axes, slow then stiff
    traces, finals = {}, {}
    print(f"\nJarzynski-weighted ULA: {num_walkers} walkers from exact draws, {num_steps} steps")
    for h in steps:
        state, trace = jarzynski_walk(target, x0, key_walk, jnp.asarray(h), num_steps)
        traces[h] = tuple(np.asarray(t) for t in trace)
        proj2 = ((np.asarray(state.position) - target.mean) @ axes) ** 2
        lw = np.asarray(state.log_weight)
        finals[h] = (ep.diagnostics.weighted_mean(proj2),
                     ep.diagnostics.weighted_mean(proj2, lw))
        u, w = finals[h]
        theory = axes[:, 1] @ target.ula_stationary_cov(h) @ axes[:, 1]
        print(f"  h={h:<6g} stiff variance: unweighted {u.value[1]:.5f} +- {u.se[1]:.5f} "
              f"(theory {theory:.5f}), "
              f"weighted {w.value[1]:.5f} +- {w.se[1]:.5f} (exact 0.01000, "
              f"z {(w.value[1] - 0.01) / w.se[1]:+.2f}), "
              f"ESS {ep.diagnostics.kish_ess(lw) / num_walkers:.2f}, "
              f"k-hat {ep.diagnostics.pareto_khat(lw, warn=False).khat:.2f}")
    figures["jarzynski"] = plot_jarzynski(target, steps, traces, finals)
    return figures


if __name__ == "__main__":
    main(make_figures, "ula_bias", __doc__)
