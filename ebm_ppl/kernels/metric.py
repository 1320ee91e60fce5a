"""A Euclidean metric (mass matrix) for the preconditioned kernels, in NumPyro's convention.

NumPyro's adaptation (`numpyro.infer.hmc_util.warmup_adapter`) keeps three arrays: the
inverse mass matrix ``M^-1`` (a vector for a diagonal metric, a matrix for a dense one),
``mass_matrix_sqrt`` = A with ``A A^T = M`` and ``mass_matrix_sqrt_inv`` = B = A^-1 (lower
triangular), so that ``B^T B = M^-1``. The kernels read them from a [`Metric`][ebm_ppl.kernels.metric.Metric];
``None``
means the identity (the unpreconditioned kernels, bit for bit).

Preconditioned Langevin (seed eq. 67 and 78 with the metric M): the move is
``x' = x - h M^-1 grad U(x) + sqrt(2h) B^T xi`` and its proposal density is
``log g(x'|x) = -(x' - x + h M^-1 grad U(x))^T M (.) / (4h)`` up to a constant; the same M
enters the forward and the reverse density, which is what keeps MALA's detailed balance.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from numpyro.infer.hmc_util import _initialize_mass_matrix

Array = jax.Array


class Metric(NamedTuple):
    """``M^-1`` with NumPyro's square roots (``A A^T = M``, ``B = A^-1``, ``B^T B = M^-1``)."""

    inverse_mass_matrix: Array
    mass_matrix_sqrt: Array
    mass_matrix_sqrt_inv: Array


def make_metric(inverse_mass_matrix, dense: bool | None = None) -> Metric:
    """A [`Metric`][ebm_ppl.kernels.metric.Metric] from ``M^-1`` (vector: diagonal, matrix: dense), with
    NumPyro's roots."""
    imm = jnp.asarray(inverse_mass_matrix)
    dense = imm.ndim == 2 if dense is None else dense
    return Metric(*_initialize_mass_matrix(jnp.zeros(imm.shape[-1], imm.dtype), imm, dense))


def apply_inverse(metric: Metric | None, v: Array) -> Array:
    """``M^-1 v``."""
    if metric is None:
        return v
    imm = metric.inverse_mass_matrix
    return imm * v if imm.ndim == 1 else imm @ v


def scale_noise(metric: Metric | None, xi: Array) -> Array:
    """``B^T xi``: standard normal ``xi`` to a draw with covariance ``M^-1``."""
    if metric is None:
        return xi
    b = metric.mass_matrix_sqrt_inv
    return b * xi if b.ndim == 1 else b.T @ xi


def mass_norm_sq(metric: Metric | None, v: Array) -> Array:
    """``v^T M v`` (``|A^T v|^2``)."""
    if metric is None:
        return jnp.sum(v * v)
    a = metric.mass_matrix_sqrt
    w = a * v if a.ndim == 1 else a.T @ v
    return jnp.sum(w * w)
