"""Free energies of spin systems: anneal in inverse temperature from beta = 0 (seed section 5).

At beta = 0 every configuration has the same weight, so ``log Z_0 = N log 2`` and exact draws
are uniform spins. The path ``U_t(s) = t U(s)``, t from 0 to 1, is linear in t (``V = U``):
`spin_path` makes it one more path of the evidence engine, run by the same code as
``ep.log_partition`` (annealed-importance increments ``-(t' - t) U(s)``, resampling inside
independent walker groups, the same options and result), with Metropolis or heat-bath Gibbs
sweeps at each t as moves (they leave exp(-t U) invariant, so no extra weight).
``F = -log Z`` (in units of the temperature).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.tree_util import Partial

from ..errors import check_choice
from ..evidence.engine import MoveInfo
from ..evidence.api import log_partition as _log_partition
from .kernels import gibbs_sweep, metropolis_sweep, spin_init

Array = jax.Array
SWEEPS = {"gibbs": gibbs_sweep, "metropolis": metropolis_sweep}

__all__ = ["SpinWalkers", "SpinPath", "spin_path", "spin_move", "log_partition"]


class SpinWalkers(NamedTuple):
    """Walkers of the engine: spins ``(n, N)`` and the untempered ``U(s)`` (= dU_t / dt)."""

    position: Array
    u: Array

    @property
    def delta(self) -> Array:
        """``V = dU_t / dt = U`` (the engine's path contract)."""
        return self.u


def _spin_move_all(kernel, model, key, state: SpinWalkers, t, step_size):
    sweep = SWEEPS[kernel]

    def one(key, x, t):
        tempered = model.tempered(t)
        new, info = sweep(key, spin_init(x, tempered), tempered)
        return new.position, info.accept_prob

    n = state.position.shape[0]
    x, acc = jax.vmap(one, in_axes=(0, 0, None))(jax.random.split(key, n), state.position, t)
    zero = jnp.zeros(n, x.dtype)
    info = MoveInfo(acc, zero, jnp.zeros((), x.dtype))
    return SpinWalkers(x, jax.vmap(model.potential)(x)), info


@functools.lru_cache(maxsize=64)
def _spin_move_fn(kernel: str, model):
    """One function object per (kernel, model), so the compiled stage is reused across calls
    with the same model (spin models hash by identity)."""
    return functools.partial(_spin_move_all, kernel, model)


def spin_move(model, kernel: str = "gibbs"):
    """The engine's move: one sweep per walker at ``t U`` (``step_size`` is ignored)."""
    kernel = check_choice("kernel", kernel, tuple(SWEEPS))
    return Partial(_spin_move_fn(kernel, model))


def _identity(x):
    return x


@jax.tree_util.register_pytree_node_class
@dataclass(frozen=True, eq=False)
class SpinPath:
    """``U_t = t U`` on {-1, +1}^N from t = 0 (uniform spins, ``log Z_0 = N log 2``): the
    engine's path contract (``sample_base``, ``evaluate_batch`` caching ``V = U``, ``log_z0``,
    ``dim``, ``unravel``) plus `move`. The model is static (no traced leaves)."""

    model: Any

    def tree_flatten(self):
        return (), (self.model,)

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls(aux[0])

    def __eq__(self, other):
        return isinstance(other, SpinPath) and other.model is self.model

    def __hash__(self):
        return hash(id(self.model))

    dim = property(lambda self: int(self.model.dim))
    log_z0 = property(lambda self: self.model.dim * math.log(2.0))
    name = property(lambda self: self.model.name)
    unravel = staticmethod(_identity)
    constrain = staticmethod(_identity)

    def sample_base(self, key, n: int) -> Array:
        """Uniform spins (exact draws at t = 0), as ``model.random_spins``."""
        return jax.random.rademacher(key, (int(n), self.dim), dtype=jnp.result_type(float))

    def evaluate_batch(self, xs) -> SpinWalkers:
        return SpinWalkers(xs, jax.vmap(self.model.potential)(xs))

    def move(self, kernel: str):
        return spin_move(self.model, kernel)


def spin_path(model) -> SpinPath:
    """The annealing path of a spin model (raises ValueError for anything else)."""
    if not (hasattr(model, "tempered") and hasattr(model, "random_spins")):
        raise ValueError("model must be a spin model (ep.spins.Ising, CurieWeiss, "
                         f"BoltzmannMachine, ...), got {type(model).__name__}")
    return SpinPath(model)


def log_partition(model, *, key, kernel: str = "gibbs", num_walkers: int | None = None,
                  schedule="adaptive", num_stages: int | None = None, target_ess: float = 0.7,
                  num_moves: int | None = None, resample_threshold: float = 1.0,
                  num_groups: int | None = None, max_stages: int = 1000,
                  progress_bar: bool = True):
    """log Z of a spin model by annealing from beta = 0; returns an
    [`EvidenceResult`][ebm_ppl.evidence.EvidenceResult]. The same call as
    ``ep.log_partition(model, method=kernel, ...)`` (same defaults, same numbers).

    Args:
        model: a spin model ([`Ising`][ebm_ppl.spins.Ising], [`CurieWeiss`][ebm_ppl.spins.CurieWeiss],
            [`BoltzmannMachine`][ebm_ppl.spins.BoltzmannMachine], ...); its own ``beta`` is the target.
        kernel: "gibbs" (heat bath) or "metropolis" sweeps, ``num_moves`` (default 2) per stage.
        num_walkers: walkers (default 1024).
        schedule: "adaptive" (next t at conditional ESS ``target_ess``), "linear", "geometric",
            "power" (with ``num_stages``), or an increasing array of t from 0 to 1.
        num_groups: independent walker groups for ``log_z_se`` (default ``num_walkers // 64``,
            at most 16).
    """
    spin_path(model)
    check_choice("kernel", kernel, tuple(SWEEPS))
    return _log_partition(model, key=key, method=kernel, num_walkers=num_walkers,
                          schedule=schedule, num_stages=num_stages, target_ess=target_ess,
                          num_moves=num_moves, resample_threshold=resample_threshold,
                          num_groups=num_groups, max_stages=max_stages,
                          progress_bar=progress_bar)
