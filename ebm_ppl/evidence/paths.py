"""Paths of energies linear in beta: ``U_beta(x) = U_0(x) + beta V(x)``, beta from 0 to 1.

* [`geometric_path`][ebm_ppl.evidence.paths.geometric_path] -- from a normalized reference rho_0
(``U_0 = -log rho_0``, so
  ``log Z_0 = 0``) to an energy ``U``: ``U_beta = (1 - beta) U_0 + beta U`` (``V = U - U_0``).
* [`tempering_path`][ebm_ppl.evidence.paths.tempering_path] -- likelihood tempering of a NumPyro model, from
the prior to the
  posterior: ``U_beta = -log prior - beta log likelihood`` (``log Z_0 = 0``, ``log Z_1`` is the
  evidence, seed eq. 1-2).

A path caches, per walker, ``U_0``, ``V`` and their gradients
([`PathState`][ebm_ppl.evidence.paths.PathState]), so the
energy and gradient at any beta are free and a move costs one evaluation of each per point.
A [`LinearPath`][ebm_ppl.evidence.paths.LinearPath] is a JAX pytree: its data (the reference distribution) is
traced and
its functions are static, so one compiled annealing stage serves every reference of the same
structure (new seeds, new references) without recompiling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import jax

from ..energy import Energy, ModelEnergy

Array = jax.Array

__all__ = ["PathState", "LinearPath", "geometric_path", "tempering_path"]


class PathState(NamedTuple):
    """Walkers (leading axis N) with U_0, V and their gradients cached."""

    position: Array
    u0: Array
    delta: Array
    grad_u0: Array
    grad_delta: Array

    def potential(self, beta):
        return self.u0 + beta * self.delta

    def grad(self, beta):
        return self.grad_u0 + beta * self.grad_delta


def _identity(x):
    return x


@jax.tree_util.register_pytree_node_class
@dataclass(frozen=True)
class LinearPath:
    """``U_beta = U_0 + beta (U_1 - U_0)`` on R^dim, with exact draws at beta = 0.

    ``base_fn(x, data)`` must be ``-log`` of a *normalized* density that
    ``sample_fn(key, n, data)`` draws from, so that ``log_z0`` (0 for a normalized reference)
    is exact; ``target_fn(x)`` is U_1, or ``target_fn(x, target_data)`` when ``target_data``
    is given (likewise ``unravel``). ``data`` (a pytree, e.g. a NumPyro distribution or a
    model's arrays) and ``target_data`` are the only traced parts: a compiled program serves
    every path whose functions are the same objects.
    """

    target_fn: Callable[..., Array]
    base_fn: Callable[[Array, Any], Array]
    sample_fn: Callable[[Array, int, Any], Array]
    data: Any = None
    dim: int = 1
    log_z0: float = 0.0
    unravel: Callable[..., Any] = _identity
    name: str = "path"
    target_data: Any = None

    def tree_flatten(self):
        return (self.data, self.target_data), (self.target_fn, self.base_fn, self.sample_fn,
                                               self.dim, self.log_z0, self.unravel, self.name)

    @classmethod
    def tree_unflatten(cls, aux, children):
        target_fn, base_fn, sample_fn, dim, log_z0, unravel, name = aux
        return cls(target_fn, base_fn, sample_fn, children[0], dim, log_z0, unravel, name,
                   children[1])

    def target(self, x: Array) -> Array:
        """U_1 at ``x``: ``target_fn(x)``, or ``target_fn(x, target_data)`` with data."""
        if self.target_data is None:
            return self.target_fn(x)
        return self.target_fn(x, self.target_data)

    def constrain(self, x: Array) -> Any:
        """``x`` in the user's structure: ``unravel(x)`` (with ``target_data`` if any)."""
        if self.target_data is None:
            return self.unravel(x)
        return self.unravel(x, self.target_data)

    def base(self, x: Array) -> Array:
        return self.base_fn(x, self.data)

    def sample_base(self, key, n: int) -> Array:
        return self.sample_fn(key, int(n), self.data)

    def evaluate(self, x: Array) -> PathState:
        """Cache U_0, V and gradients at one point ``x`` (shape (dim,)): two value_and_grads."""
        u0, g0 = jax.value_and_grad(self.base)(x)
        u1, g1 = jax.value_and_grad(self.target)(x)
        return PathState(x, u0, u1 - u0, g0, g1 - g0)

    def evaluate_batch(self, xs: Array) -> PathState:
        return jax.vmap(self.evaluate)(xs)

    def potential(self, beta) -> Callable[[Array], Array]:
        """``x -> U_beta(x)`` (for kernels that evaluate the energy themselves)."""
        return lambda x: (1.0 - beta) * self.base(x) + beta * self.target(x)


def _neg_log_prob(x, reference):
    return -reference.log_prob(x)


def _sample_reference(key, n, reference):
    return reference.sample(key, (n,))


def geometric_path(energy: Energy, reference) -> LinearPath:
    """Geometric path from a NumPyro distribution ``reference`` (event shape ``(dim,)``, exact
    ``log_prob``) to ``energy``; ``log Z_0 = 0`` because the reference is normalized."""
    return LinearPath(target_fn=energy.potential_fn, base_fn=_neg_log_prob,
                      sample_fn=_sample_reference, data=reference, dim=energy.dim, log_z0=0.0,
                      unravel=energy.unravel, name=energy.name)


def tempering_path(energy: ModelEnergy) -> LinearPath:
    """Likelihood tempering of a NumPyro model: prior (beta=0) to posterior (beta=1).

    The prior term includes the Jacobian of the unconstraining transform, so it is a normalized
    density in unconstrained space and ``log Z_0 = 0``; ``log Z_1 = log p(data)``.
    """
    if not isinstance(energy, ModelEnergy):
        raise ValueError("tempering_path needs a ModelEnergy (use energy_from_model)")
    st = energy.structure
    if st is not None:  # the model's arrays traced: one compiled program per model structure
        return LinearPath(target_fn=st.potential, base_fn=st.neg_log_prior,
                          sample_fn=st.sample_prior, data=energy.data, dim=energy.dim,
                          log_z0=0.0, unravel=st.unravel, name=energy.name,
                          target_data=energy.data)
    log_prior, sample_prior = energy.log_prior_fn, energy.sample_prior

    def base_fn(z, _):
        return -log_prior(z)

    def sample_fn(key, n, _):
        return sample_prior(key, n)

    return LinearPath(target_fn=energy.potential_fn, base_fn=base_fn, sample_fn=sample_fn,
                      data=None, dim=energy.dim, log_z0=0.0, unravel=energy.unravel,
                      name=energy.name)
