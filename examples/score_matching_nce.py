"""Sampling-free training: score matching (SM, DSM, SSM) and noise-contrastive estimation
(NCE) with ``ep.train`` (seed section 6.2, eq. 49, Remark 3.1).

The data come from rho*(x) = 0.2 N(-6, 1) + 0.8 N(6, 1). The model is the two-component
Gaussian-mixture energy U_theta(x) = -log sum_j exp(b_j - (x - a_j)^2 / 2) with learnable
means a_j and log-weights b_j; its exact log Z_theta = log(2 pi)/2 + logsumexp(b) and its mode
weights softmax(b) are known, so every number can be checked.

* SM minimizes the Fisher divergence E*[|grad U_theta - grad log rho*|^2 / 2] in the form
  E*[|grad U|^2 / 2 - Laplacian U] (eq. 49): no Z_theta, no sampling. DSM matches the score of
  the data blurred by N(0, sigma^2); SSM uses random projections for the Laplacian.
* NCE trains a logistic classifier between the data and known noise with the logit
  -U_theta(x) - c - log rho_noise(x): the constant c is learned too and estimates log Z_theta.

The model starts near the modes with the weights the wrong way round (0.88 / 0.12). All four
methods find the means, but the score-matching family cannot find the mode weights: the Fisher
divergence depends on them only between the modes, where there are (almost) no data (Remark
3.1), so SM, DSM and SSM keep the weights they started with, or drift wherever the few points
between the modes push them. NCE recovers 0.2 / 0.8, and its learned constant c matches the
exact log Z_theta of the energy it learned.

Figures: ``training`` (``ep.plots.plot_training``: loss, NCE's log Z, mode weights against the
iteration) and ``densities`` (the learned densities against the data).

Run ``python examples/score_matching_nce.py [--quick] [--outdir DIR]``.
"""

from __future__ import annotations

from _common import main  # noqa: I001 (first: backend and float64)

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

import ebm_ppl as ep

TRUE_MEANS, TRUE_WEIGHTS = np.array([-6.0, 6.0]), np.array([0.2, 0.8])
METHODS = ("sm", "dsm", "ssm", "nce")


def make_data(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    comp = rng.random(n) < TRUE_WEIGHTS[1]
    return (TRUE_MEANS[comp.astype(int)] + rng.standard_normal(n))[:, None]


def fit_all(data, *, key, num_iterations: int) -> dict:
    """Train the mixture energy with each method from the same start; returns TrainResults."""
    # start near the modes (as k-means would) with the weights the wrong way round
    family = ep.gaussian_mixture_energy(np.array([[-4.0], [4.0]]), np.array([1.0, -1.0]))

    xs = jnp.asarray(data)

    def track(params):  # evaluated at every iterate inside the compiled loop
        w = ep.training.mixture_weights(params)
        log_z = family.log_z_fn(params)
        # the exact cross-entropy on the data, -mean log rho_theta(x) = mean U_theta + log Z_theta:
        # what maximum likelihood minimizes, whatever objective each method follows
        u = jax.vmap(lambda x: family.energy_fn(params, x))(xs)
        return {"weight_0": w[0], "weight_1": w[1], "exact_log_z": log_z,
                "cross_entropy": jnp.mean(u) + log_z}

    runs = {}
    for method, k in zip(METHODS, jax.random.split(key, len(METHODS))):
        opt = optax.adam(optax.cosine_decay_schedule(0.05, num_iterations, alpha=0.05))
        estimator = ep.training.denoising_score_matching(noise_scale=0.3) if method == "dsm" \
            else method  # a name: that estimator with its defaults
        runs[method.upper()] = ep.train(family.energy_fn, family.params, data, key=k,
                                        estimator=estimator, optimizer=opt, batch_size=512,
                                        num_iterations=num_iterations, progress_bar=False,
                                        track=track)
    return family, runs


def plot_densities(family, runs, data):
    grid = np.linspace(-10.0, 10.0, 800)
    true = sum(w * np.exp(-0.5 * (grid - m) ** 2) for w, m in zip(TRUE_WEIGHTS, TRUE_MEANS))
    fig, ax = plt.subplots(figsize=(7.5, 4.2), layout="constrained")
    ax.hist(data[:, 0], bins=80, density=True, color="lightgray", label="data")
    ax.plot(grid, true / np.sqrt(2 * np.pi), color="black", lw=2, label="data density rho*")
    for label, run in runs.items():
        u = jax.vmap(lambda x, p=run.params: family.energy_fn(p, x))(jnp.asarray(grid)[:, None])
        dens = np.exp(-np.asarray(u) - float(family.log_z_fn(run.params)))
        ax.plot(grid, dens, ls="--" if label != "NCE" else "-", label=f"{label}")
    ax.set(title="Learned densities exp(-U_theta)/Z_theta (Z_theta exact)", xlabel="x",
           ylabel="density")
    ax.legend(fontsize="small")
    return fig


def make_figures(quick: bool = False, seed: int = 0) -> dict:
    data = make_data(4000 if quick else 20_000, seed)
    iterations = 600 if quick else 3000
    family, runs = fit_all(data, key=jax.random.key(seed), num_iterations=iterations)
    print(f"data: {len(data)} draws of 0.2 N(-6,1) + 0.8 N(6,1); {iterations} Adam iterations; "
          f"fraction of the data in the left mode {np.mean(data[:, 0] < 0):.3f}")
    print("start: means (-4, 4), weights (0.881, 0.119): the wrong way round")
    print("method   means              weights          learned log Z    exact log Z_theta")
    for label, run in runs.items():
        means = np.asarray(run.params["means"])[:, 0]
        weights = np.asarray(ep.training.mixture_weights(run.params))
        exact = float(family.log_z_fn(run.params))
        learned = "      (none)" if run.log_z is None else f"{run.log_z:12.4f}"
        print(f"{label:<6} ({means[0]:6.3f}, {means[1]:6.3f})   ({weights[0]:.3f}, {weights[1]:.3f})"
              f"   {learned}     {exact:12.4f}")
    print("truth   (-6, 6)              (0.200, 0.800)")
    se_w = np.sqrt(TRUE_WEIGHTS[0] * TRUE_WEIGHTS[1] / len(data))
    print(f"(a weight estimated from {len(data)} points has a standard error of about "
          f"{se_w:.3f})")

    hist = {label: run.history for label, run in runs.items()}
    weights = {label: (h["iteration"], np.stack([h["weight_0"], h["weight_1"]], axis=1))
               for label, h in hist.items()}
    training = ep.plots.plot_training(runs, exact_log_z=hist["NCE"]["exact_log_z"],
                                      exact_mode_weights=TRUE_WEIGHTS, mode_weights=weights)
    x = data[:, 0]
    true_ce = -np.mean(np.log(sum(w * np.exp(-0.5 * (x - m) ** 2) for w, m in
                                  zip(TRUE_WEIGHTS, TRUE_MEANS)) / np.sqrt(2 * np.pi)))
    ax_ce = training.axes[0]
    ax_ce.axhline(true_ce, color="black", ls=":", label="data density rho* (the minimum)")
    ax_ce.legend(fontsize="small")
    for label, h in hist.items():
        print(f"{label}: exact cross-entropy on the data {h['cross_entropy'][0]:.4f} -> "
              f"{h['cross_entropy'][-1]:.4f} (rho* itself: {true_ce:.4f})")
    training.suptitle("Sampling-free training: SM, DSM, SSM and NCE on a two-mode mixture")
    return {"training": training, "densities": plot_densities(family, runs, data)}


if __name__ == "__main__":
    main(make_figures, "score_matching_nce", __doc__)
