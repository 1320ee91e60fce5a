"""Hopfield networks: Hebbian storage (eq. 109) and retrieval dynamics (eq. 110).

A Hopfield network is a Boltzmann machine whose couplings store patterns xi^mu in {-1, +1}^N:
``J = (1/N) sum_mu xi^mu xi^mu^T`` with zero diagonal (eq. 109 up to the normalization: the seed
divides by the number of patterns, which rescales J and so only the temperature; the retrieval
dynamics ``x <- sgn(J x + h)`` of eq. 110 does not depend on it). Retrieval from a corrupted
pattern succeeds while the load P / N stays below the capacity ~0.138 (Amit et al. 1985).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import check_key, check_positive
from .kernels import check_spins
from .models import BoltzmannMachine


@dataclass(frozen=True, eq=False)
class Hopfield(BoltzmannMachine):
    """Hopfield network storing ``patterns`` (shape ``(P, N)``, entries +-1) by the Hebb rule."""

    patterns: np.ndarray = None

    def __post_init__(self):
        if self.patterns is None:
            raise ValueError("patterns is required: an array (P, N) of -1/+1")
        xi = check_spins("patterns", self.patterns)
        if xi.ndim != 2:
            raise ValueError(f"patterns must have shape (P, N), got {xi.shape}")
        if self.J is not None:
            raise ValueError("Hopfield builds J from the patterns; do not pass J")
        n = xi.shape[1]
        J = xi.T @ xi / n
        np.fill_diagonal(J, 0.0)
        object.__setattr__(self, "patterns", xi)
        object.__setattr__(self, "J", J)
        super().__post_init__()
        object.__setattr__(self, "name", f"hopfield{xi.shape[0]}x{n}")

    @property
    def load(self) -> float:
        """P / N."""
        return self.patterns.shape[0] / self.patterns.shape[1]

    def overlaps(self, x):
        """m^mu = xi^mu . x / N for every stored pattern (batch dimensions allowed)."""
        return jnp.asarray(x) @ jnp.asarray(self.patterns, jnp.result_type(float)).T / self.dim

    def retrieve(self, x0, *, max_iters: int = 100, synchronous: bool = True):
        """Run eq. 110 from ``x0`` (shape ``(N,)`` or ``(batch, N)``) to a fixed point.

        ``synchronous=True`` updates all neurons at once (eq. 110; it may end in a 2-cycle,
        reported as not converged); ``False`` updates them one after the other (it always
        descends H and stops at a local minimum). A zero field leaves the spin unchanged.
        Returns ``(x, num_iters, converged)``.
        """
        x0 = jnp.asarray(check_spins("x0", x0))
        if x0.ndim not in (1, 2) or x0.shape[-1] != self.dim:
            raise ValueError(f"x0 must have shape ({self.dim},) or (batch, {self.dim}) (spins in "
                             f"its last axis), got {x0.shape}")
        max_iters = check_positive("max_iters", max_iters, integer=True)
        J, h = jnp.asarray(self.J, x0.dtype), jnp.asarray(self.h, x0.dtype)
        out = _retrieve(J, h, x0.reshape(-1, self.dim), max_iters, bool(synchronous))
        return out if x0.ndim == 2 else jax.tree.map(lambda a: a[0], out)


def _sgn(field, x):
    return jnp.where(field > 0, 1.0, jnp.where(field < 0, -1.0, x)).astype(x.dtype)


@partial(jax.jit, static_argnums=(3, 4))
def _retrieve(J, h, x0, max_iters, synchronous):
    def update(x):
        if synchronous:
            return _sgn(J @ x + h, x)
        return jax.lax.fori_loop(0, x.shape[0],
                                 lambda i, x: x.at[i].set(_sgn(J[i] @ x + h[i], x[i])), x)

    def run(x):
        def body(c):
            x, k, _ = c
            new = update(x)
            return new, k + 1, jnp.all(new == x)

        return jax.lax.while_loop(lambda c: (~c[2]) & (c[1] < max_iters), body,
                                  (x, jnp.zeros((), jnp.int32), jnp.array(False)))

    return jax.vmap(run)(x0)


def random_patterns(key, num_patterns: int, num_neurons: int):
    """``(P, N)`` independent uniform +-1 patterns."""
    key = check_key(key)
    return jax.random.rademacher(key, (check_positive("num_patterns", num_patterns, integer=True),
                                       check_positive("num_neurons", num_neurons, integer=True)),
                                 dtype=jnp.result_type(float))


def corrupt(key, x, fraction: float):
    """Flip exactly ``round(fraction * N)`` randomly chosen spins of each row of ``x``."""
    key = check_key(key)
    x = jnp.atleast_2d(jnp.asarray(x))
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must lie in [0, 1], got {fraction!r}")
    n = x.shape[-1]
    k = int(round(fraction * n))
    keys = jax.random.split(key, x.shape[0])
    flips = jax.vmap(lambda kk: jax.random.permutation(kk, n) < k)(keys)
    return jnp.where(flips, -x, x)


def retrieval_curve(key, num_neurons: int = 100, loads=(0.05, 0.1, 0.14, 0.2, 0.3),
                    corruption: float = 0.1, num_trials: int = 5, synchronous: bool = True):
    """Fraction of patterns retrieved exactly, and mean final overlap, versus load P / N.

    For each load: ``num_trials`` independent networks, every stored pattern corrupted by
    ``corruption`` and run through eq. 110. Returns a dict of arrays keyed by
    ``load``, ``num_patterns``, ``exact_fraction``, ``mean_overlap``.
    """
    key = check_key(key)
    out = {"load": [], "num_patterns": [], "exact_fraction": [], "mean_overlap": []}
    for load in loads:
        p = max(1, int(round(load * num_neurons)))
        exact, overlap = [], []
        for key_t in jax.random.split(jax.random.fold_in(key, p), num_trials):
            k1, k2 = jax.random.split(key_t)
            xi = random_patterns(k1, p, num_neurons)
            net = Hopfield(patterns=xi)
            x, _, _ = net.retrieve(corrupt(k2, xi, corruption), synchronous=synchronous)
            exact.append(np.all(np.asarray(x) == np.asarray(xi), axis=1))
            overlap.append(np.sum(np.asarray(x) * np.asarray(xi), axis=1) / num_neurons)
        out["load"].append(p / num_neurons)
        out["num_patterns"].append(p)
        out["exact_fraction"].append(float(np.mean(np.concatenate(exact))))
        out["mean_overlap"].append(float(np.mean(np.concatenate(overlap))))
    return {k: np.asarray(v) for k, v in out.items()}
