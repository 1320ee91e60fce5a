"""Hopfield networks and Boltzmann machines (seed Appendix A.1, eq. 107-110).

1. Hopfield storage and retrieval: P random patterns on N = 100 neurons are stored by the Hebb
   rule (eq. 109); each is corrupted (10% of its spins flipped) and run through the retrieval
   dynamics x <- sgn(J x) (eq. 110). Retrieval is perfect at low load P / N and breaks down
   near the capacity ~0.138 (Amit, Gutfreund and Sompolinsky 1985).
2. A fully visible Boltzmann machine on N = 12 spins fitted to data from a two-cluster
   distribution (weights 0.8 / 0.2, 3% noise), by gradient ascent on the log-likelihood,
   grad_J = <s s^T>_data - <s s^T>_model, grad_h = <s>_data - <s>_model. The model moments are
   either exact (enumeration of the 2^12 states) or estimated by persistent contrastive
   divergence (PCD: 64 persistent heat-bath Gibbs chains, one sweep per update, same learning
   rate 0.03, below the stability limit of the exact ascent). Exact KL(data || model) is
   tracked for both: PCD's chains lag behind the moving model and cross between the clusters
   rarely, so beyond its noise PCD settles at a worse KL and, averaged over the second half of
   training, at a biased minority-cluster mass.

Figures: ``hopfield_capacity`` and ``boltzmann_exact_vs_pcd``.

Run ``python examples/hopfield_boltzmann.py [--quick] [--outdir DIR]``.
"""

from __future__ import annotations

from _common import main  # noqa: I001 (first: backend and float64)

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from ebm_ppl import spins

N_BM = 12
FLIP = 0.03
WEIGHTS = np.array([0.8, 0.2])


def data_distribution(rng):
    """Two prototypes with weights 0.8 / 0.2, each spin flipped with probability 0.03:
    the exact probability of each of the 2^N states, and the states themselves."""
    protos = np.where(rng.random((2, N_BM)) < 0.5, -1.0, 1.0)
    states = 1.0 - 2.0 * ((np.arange(2 ** N_BM)[:, None] >> np.arange(N_BM)) & 1)
    agree = states @ protos.T  # (2^N, 2): N - 2 * (Hamming distance)
    dist = (N_BM - agree) / 2
    like = FLIP ** dist * (1 - FLIP) ** (N_BM - dist)
    p = like @ WEIGHTS
    return states, p / p.sum(), protos


def model_log_probs(states, J, h):
    logw = 0.5 * np.sum(states * (states @ J), axis=1) + states @ h
    return logw - np.logaddexp.reduce(logw)


# The log-likelihood is concave in (J, h); its Hessian is minus the covariance of the features
# (s_i s_j, s_i) under the model, whose largest eigenvalue grows from 1 at J = h = 0 to about
# 23 near the optimum (30 at most along the path). Plain gradient ascent increases the
# likelihood at every step when lr <= 1 / 30, and oscillates with period 2 once lr > 2 / 23 =
# 0.087 (lr = 0.1 did, from iteration ~45 on). Both methods use the same safe rate.
LEARNING_RATE = 0.03


def fit(states, p_data, protos, method, key, iters, lr=LEARNING_RATE, num_chains=64):
    """Gradient ascent on the log-likelihood with exact or PCD model moments."""
    mean_d = p_data @ states
    corr_d = (states * p_data[:, None]).T @ states
    J, h = np.zeros((N_BM, N_BM)), np.zeros(N_BM)
    chains = jnp.asarray(np.where(np.random.default_rng(0).random((num_chains, N_BM)) < 0.5,
                                  -1.0, 1.0))
    near2 = (states @ protos[1]) > (states @ protos[0])
    kl, minority = [], []

    @jax.jit
    def pcd_step(key, chains, J, h):
        def u(s):  # any function of the spins works with the spin kernels
            return -(0.5 * s @ J @ s + h @ s)
        keys = jax.random.split(key, chains.shape[0])
        st, _ = jax.vmap(lambda k, x: spins.gibbs_sweep(k, spins.spin_init(x, u), u))(keys, chains)
        return st.position

    for _ in range(iters):
        if method == "exact":
            ex = spins.enumerate_exact(spins.BoltzmannMachine(J=J, h=h), correlations=True)
            mean_m, corr_m = ex.mean_spin, ex.correlation
        else:
            key, sub = jax.random.split(key)
            chains = pcd_step(sub, chains, jnp.asarray(J), jnp.asarray(h))
            x = np.asarray(chains)
            mean_m, corr_m = x.mean(0), x.T @ x / x.shape[0]
        gJ = corr_d - corr_m
        np.fill_diagonal(gJ, 0.0)
        J, h = J + lr * gJ, h + lr * (mean_d - mean_m)
        logq = model_log_probs(states, J, h)
        kl.append(float(p_data @ (np.log(p_data) - logq)))
        minority.append(float(np.exp(logq)[near2].sum()))
    return np.array(kl), np.array(minority), float(p_data[near2].sum())


def make_figures(quick: bool = False, seed: int = 0) -> dict:
    key = jax.random.key(seed)
    curve = spins.retrieval_curve(
        key, num_neurons=100, num_trials=3 if quick else 20,
        loads=(0.05, 0.1, 0.14, 0.2, 0.3) if quick else
        (0.02, 0.05, 0.08, 0.1, 0.12, 0.14, 0.16, 0.18, 0.2, 0.25, 0.3))
    for row in zip(curve["num_patterns"], curve["exact_fraction"], curve["mean_overlap"]):
        print("Hopfield N=100, P=%3d: exactly retrieved %.2f, mean overlap %.3f" % row)
    fig_h, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(curve["load"], curve["exact_fraction"], "o-", label="patterns retrieved exactly")
    ax.plot(curve["load"], curve["mean_overlap"], "s--", label="mean final overlap")
    ax.axvline(0.138, color="gray", ls=":", label="capacity 0.138 (N -> inf)")
    ax.set(title="Hopfield retrieval from 10% corruption, N = 100", xlabel="load P / N",
           ylabel="fraction / overlap", ylim=(0, 1.05))
    ax.legend(loc="lower left")
    fig_h.tight_layout()

    states, p_data, protos = data_distribution(np.random.default_rng(seed))
    iters = 200 if quick else 600
    runs = {m: fit(states, p_data, protos, m, jax.random.key(seed + 1), iters)
            for m in ("exact", "pcd")}
    truth = runs["exact"][2]
    fig_b, (ax_kl, ax_w) = plt.subplots(1, 2, figsize=(10, 3.6))
    half = slice(iters // 2, None)
    for m, (kl, minority, _) in runs.items():
        label = "exact gradient (enumeration)" if m == "exact" else "PCD (64 chains, 1 sweep)"
        ax_kl.plot(kl, label=label)
        line, = ax_w.plot(minority, label=label, lw=0.8 if m == "pcd" else 1.5)
        ax_w.hlines(minority[half].mean(), iters // 2, iters, color=line.get_color(), ls="--",
                    label=f"{m}: mean over the second half")
        se = f" +- {minority[half].std() / np.sqrt(iters / 2):.3f} (if uncorrelated)" \
            if m == "pcd" else ""
        print(f"{m:5s}: second half: KL(data||model) {kl[half].mean():.4f}, minority-cluster "
              f"mass {minority[half].mean():.3f}{se} (data {truth:.3f})")
    ax_w.axhline(truth, color="black", ls=":", label="data")
    ax_kl.set(title=f"Fit of a Boltzmann machine (N = {N_BM})", xlabel="iteration",
              ylabel="KL(data || model)", yscale="log")
    ax_w.set(title="Mass of the minority cluster", xlabel="iteration", ylabel="probability")
    ax_kl.legend()
    ax_w.legend(fontsize=8)
    fig_b.tight_layout()
    return {"hopfield_capacity": fig_h, "boltzmann_exact_vs_pcd": fig_b}


if __name__ == "__main__":
    main(make_figures, "hopfield_boltzmann", __doc__)
