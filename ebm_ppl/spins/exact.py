"""Exact answers for spin systems: Kaufman's log Z, transfer matrices, enumeration, Curie-Weiss.

* [`ising_log_z`][ebm_ppl.spins.exact.ising_log_z] -- Kaufman (1949) for the L x L periodic lattice at h = 0,
in mpmath:
  the four products overflow float64 from L ~ 32 on, and above T_c the fourth (negative) one
  cancels part of the others.
* [`ising_exact`][ebm_ppl.spins.exact.ising_exact] -- log Z, energy per spin and specific heat per spin as
derivatives of
  Kaufman's log Z in K = J / T (mpmath differentiation), plus <m^2> from the row transfer
  matrix for L <= 8 and <|m|> by enumeration for L <= 4.
* [`enumerate_exact`][ebm_ppl.spins.exact.enumerate_exact] -- brute force over 2^N states of any spin model (N
<= 24).
* [`curie_weiss_exact`][ebm_ppl.spins.exact.curie_weiss_exact] -- summation over the N + 1 magnetizations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import mpmath
import numpy as np

from ..errors import check_finite_array, check_positive

T_CRITICAL = 2.0 / math.log(1.0 + math.sqrt(2.0))  # Onsager, J = 1
_DPS = 50


@dataclass(frozen=True)
class SpinExact:
    """Exact thermodynamics of a finite spin system (per-spin quantities; nan where unknown)."""

    log_z: float
    energy_per_spin: float      # <H> / N
    specific_heat: float        # beta^2 Var(H) / N
    m2: float                   # <m^2>, m = mean spin
    abs_m: float                # <|m|>
    mean_spin: np.ndarray | None = None   # <s_i>
    correlation: np.ndarray | None = None  # <s_i s_j>


def _kaufman_log_z(L: int, K):
    """log Z(K) of the L x L torus, K = J / T, as an mpmath number (Kaufman 1949)."""
    if K == 0:
        return L * L * mpmath.log(2)
    if K < 0:
        K = -K  # even L: the sublattice flip maps the antiferromagnet onto the ferromagnet
    m = n = L
    c = mpmath.cosh(2 * K) * mpmath.coth(2 * K)
    gam = [2 * K + mpmath.log(mpmath.tanh(K))]  # gamma_0 keeps its sign (negative above T_c)
    gam += [mpmath.acosh(c - mpmath.cos(mpmath.pi * k / n)) for k in range(1, 2 * n)]
    odd, even = gam[1::2], gam[0::2]
    z1 = mpmath.fprod(2 * mpmath.cosh(m * g / 2) for g in odd)
    z2 = mpmath.fprod(2 * mpmath.sinh(m * g / 2) for g in odd)
    z3 = mpmath.fprod(2 * mpmath.cosh(m * g / 2) for g in even)
    z4 = mpmath.fprod(2 * mpmath.sinh(m * g / 2) for g in even)
    return (-mpmath.log(2) + mpmath.mpf(m * n) / 2 * mpmath.log(2 * mpmath.sinh(2 * K))
            + mpmath.log(z1 + z2 + z3 + z4))


def _check_ising_args(L, T, J):
    L = check_positive("L", L, integer=True)
    T = check_positive("T", T)
    J = float(check_finite_array("J", J, ndim=0))
    if L < 2:
        raise ValueError(f"L must be >= 2, got {L}")
    if J < 0 and L % 2:
        raise ValueError("Kaufman's formula covers J < 0 only for even L")
    return L, T, J


def ising_log_z(L: int, T: float, J: float = 1.0) -> float:
    """Exact log Z of the L x L periodic Ising model at field h = 0 (2 L^2 bonds, Kaufman 1949)."""
    L, T, J = _check_ising_args(L, T, J)
    with mpmath.workdps(_DPS):
        return float(_kaufman_log_z(L, mpmath.mpf(J) / mpmath.mpf(T)))


def onsager_magnetization(T: float, J: float = 1.0) -> float:
    """Spontaneous magnetization of the infinite lattice, (1 - sinh(2K)^-4)^(1/8) below T_c."""
    K = abs(J) / check_positive("T", T)
    s = math.sinh(2 * K)
    return (1.0 - s ** -4) ** 0.125 if s > 1.0 else 0.0


def ising_transfer_matrix(L: int, T: float, J: float = 1.0, h: float = 0.0):
    """``(log Z, <m>, <m^2>)`` of the L x L torus from the eigen-decomposition of the 2^L x 2^L
    row transfer matrix W (L <= 8): with D = diag(row magnetization),
    <M^2> = L sum_k Tr(D W^k D W^(L-k)) / Z, evaluated exactly in W's eigenbasis."""
    L = check_positive("L", L, integer=True)
    T = check_positive("T", T)
    J = float(check_finite_array("J", J, ndim=0))
    h = float(check_finite_array("h", h, ndim=0))
    if not 2 <= L <= 8:
        raise ValueError(f"the transfer matrix needs 2 <= L <= 8, got L={L}")
    rows = 1 - 2 * ((np.arange(2 ** L)[:, None] >> np.arange(L)) & 1).astype(np.float64)
    intra = np.sum(rows * np.roll(rows, 1, axis=1), axis=1)
    mag = rows.sum(axis=1)
    half = np.exp(0.5 * (J * intra + h * mag) / T)  # symmetric split of the row weight
    lam, vec = np.linalg.eigh(half[:, None] * np.exp(J / T * (rows @ rows.T)) * half[None, :])
    top = np.max(np.abs(lam))
    r = lam / top
    powers = r[None, :] ** np.arange(L + 1)[:, None]          # (L + 1, 2^L): r^k
    z = np.sum(powers[L])
    a = vec.T @ (mag[:, None] * vec)                          # D in the eigenbasis
    mean_m = L * np.sum(np.diag(a) * powers[L]) / z
    mean_m2 = L * sum(powers[k] @ (a * a) @ powers[L - k] for k in range(L)) / z
    n = L * L
    return float(L * math.log(top) + math.log(z)), float(mean_m / n), float(mean_m2 / n ** 2)


def ising_exact(L: int, T: float, J: float = 1.0) -> SpinExact:
    """Exact log Z, energy and specific heat per spin (Kaufman, any L), <m^2> (L <= 8) and
    <|m|> (L <= 4) of the periodic L x L Ising model at h = 0."""
    L, T, J = _check_ising_args(L, T, J)
    n = L * L
    with mpmath.workdps(_DPS):
        K = mpmath.mpf(J) / mpmath.mpf(T)
        f = lambda k: _kaufman_log_z(L, k)  # noqa: E731
        log_z = f(K)
        d1, d2 = mpmath.diff(f, K, 1), mpmath.diff(f, K, 2)
        energy = float(-J * d1 / n) if J != 0 else 0.0
        heat = float(K * K * d2 / n)
    m2 = ising_transfer_matrix(L, T, J)[2] if L <= 8 else math.nan
    abs_m = math.nan
    if L <= 4:
        from .models import Ising
        abs_m = enumerate_exact(Ising(L, J=J, T=T)).abs_m
    return SpinExact(float(log_z), energy, heat, m2, abs_m)


def enumerate_exact(model, *, correlations: bool = False) -> SpinExact:
    """Brute-force sums over all 2^N states of a spin model (N <= 24), in float64 numpy."""
    from .models import MAX_ENUMERATION_SPINS
    n = model.dim
    if n > MAX_ENUMERATION_SPINS:
        raise ValueError(f"enumeration is limited to N <= {MAX_ENUMERATION_SPINS} spins, got {n}")
    beta, chunk = model.beta, 2 ** min(n, 18)
    stats = []  # per chunk: max log weight, then sums scaled by exp(-max)
    for start in range(0, 2 ** n, chunk):
        idx = np.arange(start, start + chunk, dtype=np.int64)
        s = 1.0 - 2.0 * ((idx[:, None] >> np.arange(n)) & 1)
        H = np.asarray(model._hamiltonian(s, np), np.float64)
        logw = -beta * H
        top = logw.max()
        w = np.exp(logw - top)
        m = s.mean(axis=1)
        item = [top, w.sum(), w @ H, w @ (H * H), w @ (m * m), w @ np.abs(m)]
        if correlations:
            item += [w @ s, (s * w[:, None]).T @ s]
        stats.append(item)
    top = max(item[0] for item in stats)
    tot = [sum(math.exp(item[0] - top) * item[k] for item in stats)
           for k in range(1, len(stats[0]))]
    z = tot[0]
    mean_h, mean_h2 = tot[1] / z, tot[2] / z
    return SpinExact(
        log_z=float(top + math.log(z)), energy_per_spin=float(mean_h / n),
        specific_heat=float(beta * beta * (mean_h2 - mean_h * mean_h) / n),
        m2=float(tot[3] / z), abs_m=float(tot[4] / z),
        mean_spin=tot[5] / z if correlations else None,
        correlation=tot[6] / z if correlations else None)


def curie_weiss_exact(N: int, beta: float, J: float = 1.0, h: float = 0.0) -> SpinExact:
    """Exact Curie-Weiss thermodynamics by summing over M = N - 2k with weights C(N, k)."""
    N = check_positive("N", N, integer=True)
    beta = float(check_finite_array("beta", beta, ndim=0))
    k = np.arange(N + 1)
    M = (N - 2 * k).astype(np.float64)
    log_c = np.array([math.lgamma(N + 1) - math.lgamma(i + 1) - math.lgamma(N - i + 1) for i in k])
    H = -J / (2.0 * N) * M * M - h * M
    logw = log_c - beta * H
    top = logw.max()
    p = np.exp(logw - top)
    z = p.sum()
    p /= z
    m = M / N
    mean_h = p @ H
    return SpinExact(float(top + math.log(z)), float(mean_h / N),
                     float(beta * beta * (p @ (H * H) - mean_h ** 2) / N),
                     float(p @ (m * m)), float(p @ np.abs(m)))


def curie_weiss_log_z(N: int, beta: float, J: float = 1.0, h: float = 0.0) -> float:
    """Exact log Z of the Curie-Weiss model (see
    [`curie_weiss_exact`][ebm_ppl.spins.exact.curie_weiss_exact])."""
    return curie_weiss_exact(N, beta, J, h).log_z
