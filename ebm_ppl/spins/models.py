"""Spin energies on {-1, +1}^N (seed Appendix A, eq. 107-110).

Every model is a pairwise energy ``H(s) = -s^T J s / 2 - h^T s`` (zero-diagonal J) at inverse
temperature ``beta``; its potential is ``U(s) = beta H(s)`` (eq. 107), evaluated on a flat float
vector of +-1 (leading batch dimensions allowed). Besides ``U`` a model gives the *local field*
``f = J s + h``, so that flipping spin i changes U by ``2 beta s_i f_i``: the spin kernels use
it to update all sites of one colour at once (``colors``: independent sets of the coupling
graph; the checkerboard for a lattice), or one site at a time (``colors is None``).

* [`BoltzmannMachine`][ebm_ppl.spins.models.BoltzmannMachine] -- any symmetric J, h.
* [`Ising`][ebm_ppl.spins.models.Ising] -- L x L periodic lattice, eq. 108 with J_ij = J on nearest
neighbours.
* [`CurieWeiss`][ebm_ppl.spins.models.CurieWeiss] -- complete graph, J_ij = J / N (mean field), exact log Z by
summation.
* [`Hopfield`][ebm_ppl.spins.hopfield.Hopfield] -- Hebbian couplings (eq. 109).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from ..energy import Energy
from ..errors import check_finite_array, check_key, check_positive
from .free_energy import SpinPath

Array = jax.Array
MAX_ENUMERATION_SPINS = 24


def _check_beta(beta) -> float:
    b = float(check_finite_array("beta", beta, ndim=0))
    if b < 0:
        raise ValueError(f"beta must be >= 0, got {beta!r}")
    return b


@dataclass(frozen=True, eq=False)
class SpinModel:
    """Base class. Give the temperature as ``T=`` or ``beta=`` (default beta = 1)."""

    T: float | None = field(default=None, kw_only=True)
    beta: float | None = field(default=None, kw_only=True)
    name: str = field(init=False, default="spins")

    def _set_temperature(self):
        if self.T is not None and self.beta is not None:
            raise ValueError("give the temperature as T= or beta=, not both")
        if self.T is not None:
            beta = 1.0 / check_positive("T", self.T)
        else:
            beta = 1.0 if self.beta is None else _check_beta(self.beta)
        object.__setattr__(self, "beta", beta)
        object.__setattr__(self, "T", math.inf if beta == 0 else 1.0 / beta)

    # -- to implement ------------------------------------------------------------------
    @property
    def dim(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def _hamiltonian(self, s, xp):  # pragma: no cover - abstract
        raise NotImplementedError

    def local_field(self, s):  # pragma: no cover - abstract
        """``f = J s + h`` at every site: ``H(s with s_i flipped) - H(s) = 2 s_i f_i``."""
        raise NotImplementedError

    def site_field(self, s, i):
        """``f_i`` alone (override when it is cheaper than the whole field)."""
        return self.local_field(s)[i]

    @property
    def colors(self) -> np.ndarray | None:
        """Boolean masks ``(n_colors, N)`` of independent sets, or None (one site at a time)."""
        return None

    # One-site-at-a-time sweeps carry a cache from which a site's flip cost follows from s_i
    # alone: ``cached_site_delta(s_i, cache, i)``, then ``update_cache(cache, i, ds)`` after s_i
    # changed by ds (0 or -2 s_i). Default: the configuration itself (costs one scatter per
    # site); pairwise models keep their local fields, Curie-Weiss its magnetization.
    def sweep_cache(self, s):
        return s

    def cached_site_delta(self, s_i, cache, i):
        return self.site_delta(cache, i)

    def update_cache(self, cache, i, ds):
        return cache.at[i].add(ds)

    # -- derived -------------------------------------------------------------------------
    def hamiltonian(self, s):
        """H(s) in energy units (temperature not applied); batch dimensions allowed."""
        return self._hamiltonian(s, jnp)

    def potential(self, s):
        """U(s) = beta H(s) (eq. 107)."""
        return self.beta * self.hamiltonian(s)

    def __call__(self, s):
        return self.potential(s)

    def flip_delta(self, s):
        """U(s with s_i flipped) - U(s) for every i."""
        return 2.0 * self.beta * s * self.local_field(s)

    def site_delta(self, s, i):
        return 2.0 * self.beta * s[i] * self.site_field(s, i)

    def tempered(self, factor) -> "TemperedSpinModel":
        """The same model with U multiplied by ``factor`` (may be a traced array)."""
        return TemperedSpinModel(self, factor)

    @property
    def energy(self) -> Energy:
        return Energy(potential_fn=self.potential, dim=self.dim, name=self.name)

    def magnetization(self, s):
        """m = mean of the spins (per configuration)."""
        return jnp.mean(s, axis=-1)

    def annealing_path(self) -> SpinPath:
        """The path ``U_t = t U`` from uniform spins (t = 0) that
        [`ep.log_partition`][ebm_ppl.evidence.log_partition] anneals along."""
        return SpinPath(self)

    def random_spins(self, key, num: int | None = None):
        """Uniform (beta = 0) configurations, shape ``(dim,)`` or ``(num, dim)``."""
        key = check_key(key)
        shape = (self.dim,) if num is None else (check_positive("num", num, integer=True), self.dim)
        return jax.random.rademacher(key, shape, dtype=jnp.result_type(float))


class TemperedSpinModel:
    """``factor * U`` for a spin model, keeping the fast local-field interface.

    ``factor`` may be a tracer (a replica's inverse temperature inside ``vmap``).
    """

    def __init__(self, base: SpinModel, factor):
        self.base, self.factor = base, factor

    dim = property(lambda self: self.base.dim)
    colors = property(lambda self: self.base.colors)
    beta = property(lambda self: self.base.beta * self.factor)

    def potential(self, s):
        return self.factor * self.base.potential(s)

    __call__ = potential

    def flip_delta(self, s):
        return self.factor * self.base.flip_delta(s)

    def site_delta(self, s, i):
        return self.factor * self.base.site_delta(s, i)

    def sweep_cache(self, s):
        return self.base.sweep_cache(s)

    def cached_site_delta(self, s_i, cache, i):
        return self.factor * self.base.cached_site_delta(s_i, cache, i)

    def update_cache(self, cache, i, ds):
        return self.base.update_cache(cache, i, ds)

    def tempered(self, factor):
        return TemperedSpinModel(self.base, self.factor * factor)


def greedy_coloring(adjacency: np.ndarray) -> np.ndarray:
    """Boolean masks ``(n_colors, N)`` of a greedy colouring of a symmetric adjacency matrix."""
    adjacency = np.asarray(adjacency, bool)
    n = adjacency.shape[0]
    color = -np.ones(n, int)
    for i in range(n):
        used = set(color[adjacency[i]].tolist())
        c = 0
        while c in used:
            c += 1
        color[i] = c
    return np.stack([color == c for c in range(color.max() + 1)])


@dataclass(frozen=True, eq=False)
class BoltzmannMachine(SpinModel):
    """``H(s) = -s^T J s / 2 - h^T s`` with symmetric, zero-diagonal ``J`` (seed A.1)."""

    J: np.ndarray = None
    h: np.ndarray | None = None

    def __post_init__(self):
        J = check_finite_array("J", self.J, ndim=2).astype(np.float64)
        n = J.shape[0]
        if J.shape != (n, n) or n == 0:
            raise ValueError(f"J must be a non-empty square matrix, got shape {J.shape}")
        if not np.allclose(J, J.T):
            raise ValueError("J must be symmetric")
        if np.any(np.diag(J) != 0):
            raise ValueError("J must have a zero diagonal (s_i^2 = 1 makes it a constant)")
        h = np.zeros(n) if self.h is None else check_finite_array("h", self.h, ndim=1)
        if h.shape != (n,):
            raise ValueError(f"h must have shape ({n},), got {h.shape}")
        object.__setattr__(self, "J", J)
        object.__setattr__(self, "h", h.astype(np.float64))
        self._set_temperature()
        object.__setattr__(self, "name", f"boltzmann{n}")
        masks = greedy_coloring(J != 0)
        object.__setattr__(self, "_colors", None if masks.shape[0] > n // 2 else masks)

    @property
    def dim(self) -> int:
        return self.J.shape[0]

    @property
    def colors(self):
        return self._colors

    def _hamiltonian(self, s, xp):
        J, h = xp.asarray(self.J, s.dtype), xp.asarray(self.h, s.dtype)
        return -0.5 * xp.sum(s * (s @ J), axis=-1) - s @ h

    def local_field(self, s):
        return s @ jnp.asarray(self.J, s.dtype) + jnp.asarray(self.h, s.dtype)

    def site_field(self, s, i):
        return jnp.asarray(self.J, s.dtype)[i] @ s + jnp.asarray(self.h, s.dtype)[i]

    def sweep_cache(self, s):
        return self.local_field(s)  # a flip of s_i adds ds * J[i] to every field

    def cached_site_delta(self, s_i, cache, i):
        return 2.0 * self.beta * s_i * cache[i]

    def update_cache(self, cache, i, ds):
        return cache + ds * jnp.asarray(self.J, cache.dtype)[i]

    @property
    def log_z(self) -> float:
        """Exact log Z by enumeration (N <= 24)."""
        from .exact import enumerate_exact
        return enumerate_exact(self).log_z


@dataclass(frozen=True, eq=False)
class Ising(SpinModel):
    """2-D Ising model on an L x L periodic lattice (eq. 108):
    ``H = -J sum_<ij> s_i s_j - h sum_i s_i``.

    The sum runs over the 2 L^2 bonds (right and down neighbour of each site); spins are stored
    row-major in a flat vector of length L^2. Exact log Z, mean energy and specific heat by
    Kaufman's formula (h = 0); see `ebm_ppl.spins.exact`.
    """

    L: int = None
    J: float = 1.0
    h: float = 0.0

    def __post_init__(self):
        L = check_positive("L", self.L, integer=True)
        if L < 2:
            raise ValueError(f"L must be >= 2, got {self.L!r}")
        object.__setattr__(self, "L", L)
        object.__setattr__(self, "J", float(check_finite_array("J", self.J, ndim=0)))
        object.__setattr__(self, "h", float(check_finite_array("h", self.h, ndim=0)))
        self._set_temperature()
        object.__setattr__(self, "name", f"ising{L}x{L}")
        i, j = np.divmod(np.arange(L * L), L)
        if L % 2 == 0:
            masks = np.stack([(i + j) % 2 == 0, (i + j) % 2 == 1])
        else:  # the checkerboard wraps badly on an odd torus: colour the lattice graph
            adj = np.zeros((L * L, L * L), bool)
            for di, dj in ((0, 1), (1, 0), (0, -1), (-1, 0)):
                adj[np.arange(L * L), ((i + di) % L) * L + (j + dj) % L] = True
            masks = greedy_coloring(adj)
        object.__setattr__(self, "_colors", masks)

    @property
    def dim(self) -> int:
        return self.L * self.L

    @property
    def colors(self):
        return self._colors

    def _grid(self, s):
        return s.reshape(s.shape[:-1] + (self.L, self.L))

    def _hamiltonian(self, s, xp):
        g = self._grid(s)
        bonds = g * (xp.roll(g, 1, axis=-1) + xp.roll(g, 1, axis=-2))
        return -self.J * xp.sum(bonds, axis=(-2, -1)) - self.h * xp.sum(s, axis=-1)

    def local_field(self, s):
        g = self._grid(s)
        nb = (jnp.roll(g, 1, -1) + jnp.roll(g, -1, -1) + jnp.roll(g, 1, -2) + jnp.roll(g, -1, -2))
        return (self.J * nb + self.h).reshape(s.shape)

    def site_field(self, s, i):
        r, c = jnp.divmod(i, self.L)
        L = self.L
        nb = (s[r * L + (c + 1) % L] + s[r * L + (c - 1) % L]
              + s[((r + 1) % L) * L + c] + s[((r - 1) % L) * L + c])
        return self.J * nb + self.h

    @property
    def log_z(self) -> float:
        """Exact log Z: Kaufman (1949) for h = 0, the row transfer matrix for L <= 8 otherwise."""
        from .exact import ising_log_z, ising_transfer_matrix
        if self.beta == 0.0:
            return self.dim * math.log(2.0)
        if self.h == 0.0:
            return ising_log_z(self.L, self.T, self.J)
        if self.L > 8:
            raise ValueError(f"no exact log Z for h != 0 beyond L = 8 (got L={self.L})")
        return ising_transfer_matrix(self.L, self.T, self.J, self.h)[0]

    def energy_per_spin(self, s):
        return self.hamiltonian(s) / self.dim


@dataclass(frozen=True, eq=False)
class CurieWeiss(SpinModel):
    """Mean-field Ising model ``H = -(J / 2N) M^2 - h M`` with ``M = sum_i s_i``.

    Exact log Z by summation over the N + 1 magnetizations (binomial multiplicities).
    The critical point is ``beta J = 1``.
    """

    N: int = None
    J: float = 1.0
    h: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "N", check_positive("N", self.N, integer=True))
        object.__setattr__(self, "J", float(check_finite_array("J", self.J, ndim=0)))
        object.__setattr__(self, "h", float(check_finite_array("h", self.h, ndim=0)))
        self._set_temperature()
        object.__setattr__(self, "name", f"curie_weiss{self.N}")

    @property
    def dim(self) -> int:
        return self.N

    def _hamiltonian(self, s, xp):
        m = xp.sum(s, axis=-1)
        return -self.J / (2.0 * self.N) * m * m - self.h * m

    def local_field(self, s):
        m = jnp.sum(s, axis=-1, keepdims=True)
        return self.J / self.N * (m - s) + self.h

    def site_field(self, s, i):
        return self.J / self.N * (jnp.sum(s) - s[i]) + self.h

    def sweep_cache(self, s):
        return jnp.sum(s)  # M: a site's flip cost is O(1), a sweep O(N)

    def cached_site_delta(self, s_i, cache, i):
        return 2.0 * self.beta * s_i * (self.J / self.N * (cache - s_i) + self.h)

    def update_cache(self, cache, i, ds):
        return cache + ds

    @property
    def log_z(self) -> float:
        from .exact import curie_weiss_log_z
        return curie_weiss_log_z(self.N, self.beta, self.J, self.h)
