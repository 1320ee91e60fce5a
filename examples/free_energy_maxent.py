"""Maximum entropy and free energy (seed section 5, Proposition 5.1, Lemma 5.1, Remark 5.1).

Among all distributions pi with a given mean energy U* = E_pi[H], the Boltzmann-Gibbs
rho_beta = exp(-beta H)/Z has the largest entropy (Proposition 5.1); equivalently, at a fixed
temperature T = 1/beta it minimizes the free-energy functional F[pi] = E_pi[H] - T S(pi)
(Lemma 5.1), and the minimum is F = -T log Z (Remark 5.1, eq. 92-93). Both say the same
identity: for any pi,

    beta F[pi] - (-log Z) = KL(pi || rho_beta)        and, when E_pi[H] = E_rho[H],
    S(rho_beta) - S(pi) = KL(pi || rho_beta) >= 0.

Checked on the 2-D Ising model (seed eq. 107-108, J = 1, no field):

* L = 8, exact log Z (Kaufman 1949): free energy f = -T log Z / N, energy u = <H>/N and entropy
  s = (u - f)/T per spin against T; the mean-field (product-measure) free energy is a
  variational upper bound on f at every T (Lemma 5.1 with a restricted family), and the
  annealing engine's estimate of log Z at T_c gives f with an error bar.
* L = 4, all 65536 states enumerated: the entropy of the Boltzmann-Gibbs family against its
  mean energy is the upper envelope of every other distribution's (mean-field product
  measures, mixtures of two temperatures), and each gap is exactly the KL divergence.

Figure ``free_energy_maxent``. Run ``python examples/free_energy_maxent.py [--quick]``.
"""

from __future__ import annotations

from _common import main  # noqa: I001 (first: backend and float64)

import itertools
import math

import jax
import matplotlib.pyplot as plt
import numpy as np
from scipy.optimize import brentq
from scipy.special import logsumexp

import ebm_ppl as ep
from ebm_ppl import spins


def binary_entropy(m):
    """Entropy per spin of independent spins with mean m (nats)."""
    p, q = (1 + m) / 2, (1 - m) / 2
    return -(np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0.0)
             + np.where(q > 0, q * np.log(np.where(q > 0, q, 1)), 0.0))


def mean_field_free_energy(T, J: float = 1.0):
    """min over m of E_pi[H]/N - T S(pi)/N for product measures on the square lattice
    (2 bonds per site): -2 J m^2 - T h(m). An upper bound on the exact f (Lemma 5.1)."""
    m = np.linspace(-1, 1, 4001)
    return float(np.min(-2 * J * m**2 - T * binary_entropy(m)))


def exact_curves(L, temps):
    """f, u, s per spin of the L x L Ising model from Kaufman's exact log Z (u by a central
    difference in beta)."""
    n, eps = L * L, 1e-5
    log_z = lambda beta: spins.ising_log_z(L, 1.0 / beta)  # noqa: E731
    f, u, s = [], [], []
    for T in temps:
        beta = 1.0 / T
        lz = log_z(beta)
        energy = -(log_z(beta + eps) - log_z(beta - eps)) / (2 * eps) / n
        f.append(-T * lz / n)
        u.append(energy)
        s.append(beta * energy + lz / n)
    return np.array(f), np.array(u), np.array(s)


class Enumerated:
    """All 2^N states of a small Ising model: exact entropies and KL divergences."""

    def __init__(self, L):
        states = np.array(list(itertools.product([-1.0, 1.0], repeat=L * L)))
        self.n = L * L
        self.h = np.asarray(spins.Ising(L).hamiltonian(states))

    def log_bg(self, beta):
        a = -beta * self.h
        return a - logsumexp(a)

    def energy(self, logp):
        return float(np.exp(logp) @ self.h) / self.n

    def entropy(self, logp):
        return float(-np.exp(logp) @ logp) / self.n

    def kl(self, logp, logq):
        return float(np.exp(logp) @ (logp - logq)) / self.n

    def beta_for_energy(self, u):
        """The beta >= 0 whose Boltzmann-Gibbs mean energy per spin is u (u < 0)."""
        return brentq(lambda b: self.energy(self.log_bg(b)) - u, 0.0, 20.0)


def make_figures(quick: bool = False, seed: int = 0) -> dict:
    L, walkers = (8, 256) if quick else (8, 4096)
    n = L * L
    temps = np.linspace(0.5, 5.0, 46)
    f, u, s = exact_curves(L, temps)
    f_mf = np.array([mean_field_free_energy(T) for T in temps])

    print(f"{L}x{L} Ising, J = 1: exact free energy f, energy u and entropy s per spin "
          "(Kaufman); mean-field bound f_MF")
    print("    T        f exact     f_MF (bound)     u          s")
    for T in (1.0, 1.5, spins.T_CRITICAL, 3.0, 4.0, 5.0):
        fe, ue, se = (x[0] for x in exact_curves(L, [T]))
        print(f"{T:6.3f}   {fe:10.5f}   {mean_field_free_energy(T):10.5f}   {ue:10.5f}   "
              f"{se:8.5f}")
    print(f"f_MF - f over T in [0.5, 5]: min {np.min(f_mf - f):.5f} (never below 0: the "
          f"variational bound), max {np.max(f_mf - f):.5f} at T = {temps[np.argmax(f_mf - f)]:.2f}")
    print(f"entropy per spin at T = 5: {s[-1]:.4f} (log 2 = {math.log(2):.4f} at T = infinity); "
          f"at T = 0.5: {s[0]:.5f} (two ground states: log(2) / {n} = {math.log(2) / n:.5f})")

    model = spins.Ising(L, T=spins.T_CRITICAL)
    res = ep.log_partition(model, key=jax.random.key(seed), method="gibbs",
                           num_walkers=walkers, progress_bar=False)
    exact_lz = spins.ising_log_z(L, spins.T_CRITICAL)
    f_est, f_se = -spins.T_CRITICAL * res.log_z / n, spins.T_CRITICAL * res.log_z_se / n
    print(f"annealing (ep.log_partition, {walkers} walkers, heat-bath Gibbs) at T_c: "
          f"log Z {res.log_z:.4f} +- {res.log_z_se:.4f} (exact {exact_lz:.4f}), "
          f"f {f_est:.5f} +- {f_se:.5f} (exact {-spins.T_CRITICAL * exact_lz / n:.5f})")

    enum = Enumerated(4)
    betas = np.linspace(0.0, 3.0, 61)
    bg = np.array([(enum.energy(enum.log_bg(b)), enum.entropy(enum.log_bg(b))) for b in betas])
    m = np.linspace(0.0, 1.0, 41)
    mf = np.stack([-2 * m**2, binary_entropy(m)], axis=1)
    rng = np.random.default_rng(seed)
    pairs = rng.uniform(0.0, 1.5, size=(12 if quick else 60, 2))
    mixtures, gaps = [], []
    for b1, b2 in pairs:
        logp = np.logaddexp(enum.log_bg(b1), enum.log_bg(b2)) - math.log(2)
        ue, se = enum.energy(logp), enum.entropy(logp)
        b = enum.beta_for_energy(ue)
        logq = enum.log_bg(b)
        gaps.append((enum.entropy(logq) - se, enum.kl(logp, logq)))
        mixtures.append((ue, se))
    gaps = np.array(gaps)
    print(f"4x4 Ising, all 65536 states: {len(pairs)} mixtures of two temperatures; entropy "
          f"gap to the Boltzmann-Gibbs law of the same mean energy: min {gaps[:, 0].min():.5f}, "
          f"max {gaps[:, 0].max():.5f} nats per spin; |gap - KL| at most "
          f"{np.max(np.abs(gaps[:, 0] - gaps[:, 1])):.1e}")

    fig, (ax_f, ax_s, ax_m) = plt.subplots(1, 3, figsize=(15, 4.3))
    ax_f.plot(temps, f, color="k", lw=2, label=f"exact f = -T log Z / N ({L}x{L})")
    ax_f.plot(temps, f_mf, color="tab:orange", ls="--", label="mean field (a variational bound)")
    ax_f.errorbar([spins.T_CRITICAL], [f_est], yerr=[2 * f_se], fmt="o", color="tab:blue",
                  label="ep.log_partition at T_c (+- 2 se)")
    ax_f.axvline(spins.T_CRITICAL, color="gray", lw=0.8, ls=":")
    ax_f.set(xlabel="temperature T", ylabel="free energy per spin",
             title="Free energy: the minimum of E[H] - T S")
    ax_f.legend(fontsize="small")
    ax_s.plot(temps, u, color="tab:red", label="energy u = <H>/N")
    ax_s.plot(temps, s, color="tab:green", label="entropy s per spin")
    ax_s.plot(temps, u - temps * s, color="k", ls=":", label="u - T s (= f)")
    ax_s.axhline(math.log(2), color="tab:green", ls="--", lw=0.8, label="log 2")
    ax_s.set(xlabel="temperature T", ylabel="per spin", title=f"u, s and f = u - T s ({L}x{L})")
    ax_s.legend(fontsize="small")
    ax_m.plot(bg[:, 0], bg[:, 1], color="k", lw=2, label="Boltzmann-Gibbs (maximum)")
    ax_m.plot(mf[:, 0], mf[:, 1], color="tab:orange", ls="--", label="product measures")
    mixtures = np.array(mixtures)
    ax_m.plot(mixtures[:, 0], mixtures[:, 1], "o", color="tab:purple", ms=4,
              label="mixtures of two temperatures")
    ax_m.set(xlabel="mean energy per spin E[H]/N", ylabel="entropy per spin",
             title="Maximum entropy at fixed mean energy (4x4, exact)")
    ax_m.legend(fontsize="small")
    fig.suptitle("Ising model: Boltzmann-Gibbs maximizes entropy and minimizes free energy "
                 "(seed section 5)")
    fig.tight_layout()
    return {"free_energy_maxent": fig}


if __name__ == "__main__":
    main(make_figures, "free_energy_maxent", __doc__)
