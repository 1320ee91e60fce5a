"""Energies with exact answers, for tests, benchmarks and teaching.

Each target is callable as its potential ``U(x)`` on a flat array of shape ``(dim,)`` and
carries what is known exactly: ``log_z`` (log of the integral of exp(-U)), and where they
exist ``sample``, ``mean``, ``cov`` and, for multimodal targets, ``mode_masses`` with
``mode_index`` (which mode a point belongs to). Formulas and reference values are in
``tests/groundtruth.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from .energy import Energy
from .errors import check_positive

LOG_2PI = math.log(2.0 * math.pi)


@dataclass(frozen=True, eq=False)
class Target:
    """Base class: a potential with exact log Z. Subclasses set ``dim`` and ``log_z``."""

    name: str = field(init=False, default="target")

    def potential(self, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, x):
        return self.potential(x)

    @property
    def energy(self) -> Energy:
        return Energy(potential_fn=self.potential, dim=self.dim, name=self.name)


@dataclass(frozen=True, eq=False)
class Gaussian(Target):
    """U = 0.5 (x - mu)^T A (x - mu) with A = cov^{-1}; log Z = (d/2) log 2pi + 0.5 log det cov."""

    mean_: np.ndarray = None
    cov_: np.ndarray = None

    def __post_init__(self):
        mean = np.atleast_1d(np.asarray(self.mean_, dtype=np.float64))
        cov = np.atleast_2d(np.asarray(self.cov_, dtype=np.float64))
        if cov.shape != (mean.size, mean.size):
            raise ValueError(f"cov must have shape {(mean.size, mean.size)}, got {cov.shape}")
        if not np.allclose(cov, cov.T) or np.linalg.eigvalsh(cov).min() <= 0:
            raise ValueError("cov must be symmetric positive definite")
        object.__setattr__(self, "mean_", mean)
        object.__setattr__(self, "cov_", cov)
        object.__setattr__(self, "name", f"gaussian{mean.size}d")

    @property
    def dim(self) -> int:
        return self.mean_.size

    @property
    def mean(self):
        return self.mean_

    @property
    def cov(self):
        return self.cov_

    @property
    def precision(self):
        return np.linalg.inv(self.cov_)

    @property
    def log_z(self) -> float:
        return 0.5 * self.dim * LOG_2PI + 0.5 * np.linalg.slogdet(self.cov_)[1]

    def potential(self, x):
        diff = x - jnp.asarray(self.mean_, x.dtype)
        return 0.5 * diff @ (jnp.asarray(self.precision, x.dtype) @ diff)

    def sample(self, key, num_samples: int):
        chol = jnp.asarray(np.linalg.cholesky(self.cov_))
        z = jax.random.normal(key, (num_samples, self.dim), chol.dtype)
        return jnp.asarray(self.mean_, chol.dtype) + z @ chol.T

    def ula_stationary_cov(self, step_size: float) -> np.ndarray:
        """ULA's stationary covariance Sigma (I - h A / 2)^{-1} (seed eq. 73)."""
        eye = np.eye(self.dim)
        return self.cov_ @ np.linalg.inv(eye - 0.5 * step_size * self.precision)

    def ula_kl(self, step_size: float) -> float:
        """KL(ULA's stationary law || exact) = 0.5 sum_i [1/(1 - h l_i/2) - 1 + log(1 - h l_i/2)]."""
        r = 1.0 - 0.5 * step_size * np.linalg.eigvalsh(self.precision)
        return float(0.5 * np.sum(1.0 / r - 1.0 + np.log(r)))


@dataclass(frozen=True, eq=False)
class GaussianMixture(Target):
    """U = -log sum_k w_k exp(-|x - mu_k|^2 / (2 s_k^2)) (weights need not sum to one).

    log Z = log sum_k w_k (2 pi s_k^2)^(d/2); mode masses pi_k = w_k (2 pi s_k^2)^(d/2) / Z.
    """

    means: np.ndarray = None
    scales: np.ndarray = None
    weights: np.ndarray = None

    def __post_init__(self):
        means = np.atleast_2d(np.asarray(self.means, dtype=np.float64))
        k = means.shape[0]
        scales = np.broadcast_to(np.asarray(self.scales, dtype=np.float64), (k,)).copy()
        weights = np.broadcast_to(np.asarray(self.weights, dtype=np.float64), (k,)).copy()
        if np.any(scales <= 0) or np.any(weights <= 0):
            raise ValueError("scales and weights must be positive")
        object.__setattr__(self, "means", means)
        object.__setattr__(self, "scales", scales)
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "name", f"mixture{k}x{means.shape[1]}d")

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def _log_component_z(self):
        return np.log(self.weights) + 0.5 * self.dim * np.log(2 * np.pi * self.scales**2)

    @property
    def log_z(self) -> float:
        return float(np.logaddexp.reduce(self._log_component_z))

    @property
    def mode_masses(self) -> np.ndarray:
        return np.exp(self._log_component_z - self.log_z)

    @property
    def mean(self):
        return self.mode_masses @ self.means

    @property
    def cov(self):
        p, m = self.mode_masses, self.means
        second = np.einsum("k,ki,kj->ij", p, m, m) + np.eye(self.dim) * (p @ self.scales**2)
        return second - np.outer(self.mean, self.mean)

    def _component_logits(self, x):
        means = jnp.asarray(self.means, x.dtype)
        sq = jnp.sum((x[..., None, :] - means) ** 2, axis=-1)
        return jnp.log(jnp.asarray(self.weights, x.dtype)) - sq / (
            2 * jnp.asarray(self.scales, x.dtype) ** 2)

    def potential(self, x):
        return -logsumexp(self._component_logits(x), axis=-1)

    def responsibilities(self, x):
        """P(component k | x) under the normalized mixture; E[r_k] = mode_masses[k]."""
        return jax.nn.softmax(self._component_logits(x), axis=-1)

    def mode_index(self, x):
        """The component with the largest responsibility at each point of ``x`` (..., dim)."""
        return jnp.argmax(self._component_logits(x), axis=-1)

    def sample(self, key, num_samples: int):
        key_k, key_x = jax.random.split(key)
        k = jax.random.categorical(key_k, jnp.log(jnp.asarray(self.mode_masses)),
                                   shape=(num_samples,))
        z = jax.random.normal(key_x, (num_samples, self.dim))
        return jnp.asarray(self.means)[k] + jnp.asarray(self.scales)[k, None] * z


@dataclass(frozen=True, eq=False)
class Funnel(Target):
    """Neal's funnel: U = v^2/18 + 0.5 e^{-v} sum_i x_i^2 + ((d-1)/2) v, x = (v, x_1..x_{d-1}).

    v ~ N(0, 9) and x_i | v ~ N(0, e^v), so log Z = log 3 + (d/2) log 2pi.
    """

    d: int = 10

    def __post_init__(self):
        if self.d < 2:
            raise ValueError(f"d must be >= 2, got {self.d}")
        object.__setattr__(self, "name", f"funnel{self.d}d")

    @property
    def dim(self) -> int:
        return self.d

    @property
    def log_z(self) -> float:
        return math.log(3.0) + 0.5 * self.d * LOG_2PI

    @property
    def mean(self):
        return np.zeros(self.d)

    @property
    def cov(self):
        return np.diag([9.0] + [math.exp(4.5)] * (self.d - 1))

    def potential(self, x):
        v, rest = x[0], x[1:]
        return v**2 / 18.0 + 0.5 * jnp.exp(-v) * jnp.sum(rest**2) + 0.5 * (self.d - 1) * v

    def sample(self, key, num_samples: int):
        key_v, key_x = jax.random.split(key)
        v = 3.0 * jax.random.normal(key_v, (num_samples, 1))
        x = jnp.exp(v / 2) * jax.random.normal(key_x, (num_samples, self.d - 1))
        return jnp.concatenate([v, x], axis=1)


@dataclass(frozen=True, eq=False)
class TiltedDoubleWell(Target):
    """U = a (x^2 - 1)^2 + x in 1-D. log Z and the left well's mass come from quadrature
    on a fine grid (the integrand is smooth and decays like exp(-a x^4))."""

    a: float = 5.0
    _grid_points: int = 400_001

    def __post_init__(self):
        if self.a <= 0:
            raise ValueError(f"a must be > 0, got {self.a}")
        object.__setattr__(self, "name", f"double_well_a{self.a:g}")
        roots = np.roots([4 * self.a, 0.0, -4 * self.a, 1.0])
        real = np.sort(roots[np.abs(roots.imag) < 1e-9].real)
        barrier = real[1] if real.size == 3 else real[0]
        lim = 1.0 + (60.0 / self.a) ** 0.25 + 1.0
        grid = np.linspace(-lim, lim, self._grid_points)
        u = self.a * (grid**2 - 1) ** 2 + grid
        w = np.exp(-(u - u.min()))
        dx = grid[1] - grid[0]
        cdf = np.concatenate([[0.0], np.cumsum(0.5 * (w[1:] + w[:-1]) * dx)])
        object.__setattr__(self, "_barrier", float(barrier))
        object.__setattr__(self, "_grid", grid)
        object.__setattr__(self, "_cdf", cdf / cdf[-1])
        object.__setattr__(self, "_log_z", float(np.log(cdf[-1]) - u.min()))

    @property
    def dim(self) -> int:
        return 1

    @property
    def barrier(self) -> float:
        """Position of the barrier top between the wells."""
        return self._barrier

    @property
    def log_z(self) -> float:
        return self._log_z

    @property
    def mode_masses(self) -> np.ndarray:
        left = float(np.interp(self._barrier, self._grid, self._cdf))
        return np.array([left, 1.0 - left])

    def potential(self, x):
        x = x[0]
        return self.a * (x**2 - 1) ** 2 + x

    def mode_index(self, x):
        """0 for the left well, 1 for the right one."""
        return (x[..., 0] > self._barrier).astype(jnp.int32)

    def sample(self, key, num_samples: int):
        """Exact up to grid resolution: inverse-CDF on the quadrature grid."""
        u = np.asarray(jax.random.uniform(key, (num_samples,)), dtype=np.float64)
        return jnp.asarray(np.interp(u, self._cdf, self._grid)[:, None])


# -- ready-made targets ----------------------------------------------------------------------

def gaussian(mean, cov) -> Gaussian:
    """A Gaussian with any mean and covariance."""
    return Gaussian(mean_=mean, cov_=cov)


def anisotropic_gaussian_2d() -> Gaussian:
    """Seed Example 4.1 test case: Sigma = R(30 deg) diag(1, 0.01) R(30 deg)^T, mu = (1, -1)."""
    t = math.radians(30.0)
    rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    return Gaussian(mean_=np.array([1.0, -1.0]), cov_=rot @ np.diag([1.0, 0.01]) @ rot.T)


def ill_conditioned_gaussian(d: int = 10, kappa: float = 100.0, mean=None, seed: int | None = None
                             ) -> Gaussian:
    """Precision with eigenvalues kappa^((i-1)/(d-1)); a random rotation when ``seed`` is given."""
    d = check_positive("d", d, integer=True)
    kappa = check_positive("kappa", kappa)
    lam = kappa ** (np.arange(d) / max(d - 1, 1))
    if seed is None:
        precision = np.diag(lam)
    else:
        q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
        precision = q @ np.diag(lam) @ q.T
    cov = np.linalg.inv(precision)
    cov = 0.5 * (cov + cov.T)
    return Gaussian(mean_=np.zeros(d) if mean is None else mean, cov_=cov)


def figure1_mixture() -> GaussianMixture:
    """Seed eq. 4 / Figure 1: U = -log[0.7 exp(-x^2/2) + 0.3 exp(-(x-5)^2/0.5)]."""
    return GaussianMixture(means=[[0.0], [5.0]], scales=[1.0, 0.5], weights=[0.7, 0.3])


def two_mode_mixture(d: int = 10, separation: float = 5.0, weights=(0.2, 0.8),
                     scales=(1.0, 1.0), along_diagonal: bool = True) -> GaussianMixture:
    """Modes at -separation*u and +separation*u with u = ones/sqrt(d) (or u = ones when
    ``along_diagonal`` is False: modes at -separation and +separation on every axis)."""
    u = np.ones(d) / (math.sqrt(d) if along_diagonal else 1.0)
    w = np.asarray(weights, float) / np.asarray(scales, float) ** d / (2 * math.pi) ** (d / 2)
    return GaussianMixture(means=np.stack([-separation * u, separation * u]), scales=scales,
                           weights=w)


def funnel(d: int = 10) -> Funnel:
    return Funnel(d=d)


def tilted_double_well(a: float = 5.0) -> TiltedDoubleWell:
    return TiltedDoubleWell(a=a)
