"""Tracking the cross-entropy during Jarzynski training (seed eq. 104-106).

Training an energy-based model rho_theta = exp(-U_theta)/Z_theta minimizes the cross-entropy
H(rho_theta, rho*) = E_*[U_theta] + log Z_theta, but gradient methods never need its value, and
without log Z_theta they cannot report it. Jarzynski-weighted walkers (eq. 102-104) give
Z_theta_k = Z_theta_0 E[exp(A_k)] at every iteration for free, hence the cross-entropy itself
(eq. 106):

    H(rho_theta_k, rho*) = log E[exp(A_k)] + log Z_theta_0 + E_*[U_theta_k].

The experiment is the mode-weight problem of Carbone et al. in one dimension (data from modes
at -10 and 6 with weights 0.25 / 0.75; a two-component Gaussian mixture student started with
both means near 0). Its log Z_theta is known in closed form, so the eq. 106 estimate can be
plotted against the exact cross-entropy of every iterate. PCD on the same problem, whose
exact cross-entropy is tracked the same way, shows what the seed warns about after eq. 97:
without a loss value, a method that is not gradient descent on the cross-entropy cannot see
that it goes the wrong way.

Figure ``cross_entropy_tracking``: the eq. 106 estimate and the exact cross-entropy along
Jarzynski training (with PCD's exact cross-entropy and the data's own entropy), the
estimate's error against the exact value, and the walkers' effective sample size with the
resampling events.

Run ``python examples/cross_entropy_tracking.py [--quick] [--outdir DIR]``.
"""

from __future__ import annotations

from _common import main  # noqa: I001 (first: backend and float64)

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import ebm_ppl as ep
from ebm_ppl.training import experiments


def exact_cross_entropy(family, data):
    """params -> E_data[U_theta] + log Z_theta, exact (closed-form log Z), jittable."""
    x = jnp.asarray(data)
    return lambda p: jnp.mean(jax.vmap(lambda xi: family.energy_fn(p, xi))(x)) + family.log_z_fn(p)


def fit(method, data, student, *, num_walkers, num_iterations, step_size, num_steps, seed):
    cross_entropy = exact_cross_entropy(student, data)
    track = lambda p: {"exact_cross_entropy": cross_entropy(p),  # noqa: E731
                       "p1": ep.training.mixture_weights(p)[0]}
    kw = dict(num_walkers=num_walkers, step_size=step_size, num_steps=num_steps)
    if method == "jarzynski":
        kw.update(init_walkers=experiments.initial_walkers(student, num_walkers, seed + 1),
                  log_z0=float(student.log_z_fn(student.params)))
        estimator = ep.training.jarzynski(**kw)
    else:
        estimator = ep.training.pcd(**kw)
    return ep.train(student.energy_fn, student.params, data, key=jax.random.key(seed),
                    estimator=estimator, optimizer=experiments.optimizer(0.02, 0.02),
                    num_iterations=num_iterations, track=track, progress_bar=False)


def plot(jar, pcd, data_entropy):
    h = jar.history
    it = np.asarray(h["iteration"])
    exact, est = np.asarray(h["exact_cross_entropy"]), np.asarray(h["loss"])
    fig, (ax_h, ax_e, ax_s) = plt.subplots(1, 3, figsize=(15, 4.2))
    ax_h.plot(it, exact, color="k", lw=2.5, label="Jarzynski: exact H")
    ax_h.plot(it, est, color="tab:blue", lw=1, label="Jarzynski: eq. 106 estimate")
    ax_h.plot(np.asarray(pcd.history["iteration"]), np.asarray(pcd.history["exact_cross_entropy"]),
              color="tab:red", lw=1.5, label="PCD: exact H (PCD cannot estimate it)")
    ax_h.axhline(data_entropy, color="gray", ls=":", label="rho* itself (the minimum)")
    ax_h.set_yscale("log")
    ax_h.set(xlabel="iteration", ylabel="cross-entropy H(rho_theta, rho*) [nats, log scale]",
             title="Cross-entropy along training")
    ax_h.legend(fontsize="small")
    ax_e.plot(it, est - exact, color="tab:blue")
    ax_e.axhline(0.0, color="k", lw=0.8)
    ax_e.set(xlabel="iteration", ylabel="estimate - exact [nats]",
             title="Error of the eq. 106 estimate (= error of log Z)")
    ess = np.asarray(h["ess"]) / jar.walkers.shape[0]
    ax_s.plot(it, ess, color="tab:green", label="ESS fraction of the weights")
    res = np.flatnonzero(np.asarray(h["resampled"]))
    ax_s.plot(it[res], ess[res], "v", color="k", ms=4, label="resampled")
    ax_s.set(xlabel="iteration", ylabel="Kish ESS / walkers", ylim=(0, 1.05),
             title="Walker weights")
    ax_s.legend(fontsize="small")
    fig.suptitle("Jarzynski training reports its own cross-entropy (seed eq. 106); "
                 "exact values from the closed-form log Z")
    fig.tight_layout()
    return fig


def make_figures(quick: bool = False, seed: int = 0) -> dict:
    num_data, num_walkers, num_iterations = (2000, 1000, 600) if quick else (10_000, 10_000,
                                                                              3000)
    data, teacher, student = experiments.problem(dim=1, num_data=num_data, seed=seed)
    data_entropy = float(exact_cross_entropy(teacher, data)(teacher.params))
    runs = {m: fit(m, data, student, num_walkers=num_walkers, num_iterations=num_iterations,
                   step_size=0.05, num_steps=4, seed=seed) for m in ("jarzynski", "pcd")}
    jar, pcd = runs["jarzynski"], runs["pcd"]
    h = jar.history
    exact, est = np.asarray(h["exact_cross_entropy"]), np.asarray(h["loss"])
    err = est - exact
    print(f"1-D mode-weight problem: {num_data} data points, {num_walkers} walkers, "
          f"{num_iterations} iterations (exact light-mode weight {experiments.TRUE_P1})")
    print(f"cross-entropy of rho* itself on the data: {data_entropy:.4f}")
    print("method      H start    H end (exact)   eq. 106 end   light-mode weight   "
          "min exact H (iteration)")
    for name, r in runs.items():
        hx = np.asarray(r.history["exact_cross_entropy"])
        end_est = f"{float(np.asarray(r.history['loss'])[-1]):.4f}" if name == "jarzynski" \
            else "(none)"
        print(f"{name:10s}  {hx[0]:8.4f}   {hx[-1]:12.4f}   {end_est:>11s}   "
              f"{float(np.asarray(r.history['p1'])[-1]):17.4f}   "
              f"{hx.min():.4f} ({int(np.argmin(hx))})")
    print(f"eq. 106 estimate - exact over the run: max |error| {np.max(np.abs(err)):.4f}, "
          f"mean {np.mean(err):+.4f}, at the end {err[-1]:+.4f}")
    print(f"walkers resampled {int(np.sum(np.asarray(h['resampled'])))} times; "
          f"min ESS fraction {float(np.min(np.asarray(h['ess']))) / num_walkers:.3f}")
    return {"cross_entropy_tracking": plot(jar, pcd, data_entropy)}


if __name__ == "__main__":
    main(make_figures, "cross_entropy_tracking", __doc__)
