"""Walkers spread over devices (and hosts) with JAX's own sharding; nothing home-made.

A run's walkers are a pytree whose leaves have a leading walker axis of length N (positions
(N, d), energies (N,), log weights (N,), ...). ``devices=`` / ``mesh=`` on
[`ebm_ppl.log_partition`][ebm_ppl.log_partition], [`ebm_ppl.log_evidence`][ebm_ppl.log_evidence] and
[`ebm_ppl.train`][ebm_ppl.train] resolve,
through [`walker_sharding`][ebm_ppl.sharding.walker_sharding], into
``NamedSharding(mesh, PartitionSpec("walkers"))``: device
k of the mesh holds walkers ``[k N/S, (k+1) N/S)``. The walkers are placed once
([`shard_walkers`][ebm_ppl.sharding.shard_walkers]); the jitted stage then runs under GSPMD, which propagates
the sharding:
per-walker work (gradients, moves, the seed's eq. 102-103 weight increments) runs where the
walkers live, and every reduction over walkers (the log-sum-exp of eq. 104, ESS, weighted
gradient averages of eq. 105) and every resampling gather is *global*, computed by XLA
collectives, never per shard. Random draws are sharding-invariant (``jax_threefry_partitionable``,
on by default), so the same key gives the same walkers on one device or many; only the order
of floating-point reductions differs.

Meshes are built with ``AxisType.Auto`` (GSPMD propagation). A user mesh must have an axis named
``"walkers"``; other axes (e.g. a model axis) replicate the walkers. Several hosts: call
``jax.distributed.initialize(...)`` in every process first, then ``devices="all"`` spans every
process's devices (see ``docs/scaling.md``); [`to_host`][ebm_ppl.sharding.to_host] gathers walker arrays that
no single
process holds in full.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from functools import lru_cache

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

__all__ = ["WALKER_AXIS", "walker_mesh", "walker_sharding", "num_shards", "check_divisible",
           "shard_walkers", "sharding_of", "constrain_walkers", "sharded_jit", "to_host"]

WALKER_AXIS = "walkers"


def _resolve_devices(devices):
    """``devices=`` as a list of distinct jax Devices (validated, before any tracing)."""
    available = jax.devices()
    if isinstance(devices, str):
        if devices != "all":
            raise ValueError(f"devices must be 'all', a number of devices or a list of jax "
                             f"devices, got {devices!r}")
        return list(available)
    if isinstance(devices, numbers.Integral) and not isinstance(devices, bool):
        k = int(devices)
        if not 1 <= k <= len(available):
            raise ValueError(f"devices={k} must lie between 1 and the {len(available)} "
                             f"available {available[0].platform} device(s)")
        return list(available[:k])
    if isinstance(devices, Sequence) or isinstance(devices, np.ndarray):
        devs = list(np.asarray(devices, dtype=object).reshape(-1))
        if not devs or not all(isinstance(d, jax.Device) for d in devs):
            raise ValueError("devices must be 'all', a number of devices or a non-empty list "
                             f"of jax devices, got {devices!r}")
        if len({d.id for d in devs}) != len(devs):
            raise ValueError(f"devices lists a device twice: {devs}")
        return devs
    raise ValueError(f"devices must be 'all', a number of devices or a list of jax devices, "
                     f"got {type(devices).__name__}")


def walker_mesh(devices="all") -> Mesh:
    """A 1-D mesh named ``"walkers"`` over ``devices`` ("all", a count, or a list of devices),
    with the ``Auto`` axis type so that GSPMD propagates the walker sharding through jit."""
    devs = _resolve_devices(devices)
    return jax.make_mesh((len(devs),), (WALKER_AXIS,), (AxisType.Auto,), devices=devs)


def _auto(mesh: Mesh) -> Mesh:
    """The same devices and axis names with every axis ``Auto`` (``jax.make_mesh`` defaults to
    ``Explicit`` axes in jax >= 0.7, under which vmapped walker code fails to type-check)."""
    if all(t == AxisType.Auto for t in mesh.axis_types):
        return mesh
    return Mesh(mesh.devices, mesh.axis_names, axis_types=(AxisType.Auto,) * mesh.devices.ndim)


def walker_sharding(devices=None, mesh=None) -> NamedSharding | None:
    """``NamedSharding(mesh, P("walkers"))`` from ``devices=`` or ``mesh=`` (at most one);
    None when both are None (no sharding: the default device, as without this module)."""
    if devices is not None and mesh is not None:
        raise ValueError("pass either devices= or mesh=, not both")
    if mesh is None and devices is None:
        return None
    if mesh is None:
        mesh = walker_mesh(devices)
    elif not isinstance(mesh, Mesh):
        raise ValueError(f"mesh must be a jax.sharding.Mesh (e.g. jax.make_mesh((4,), "
                         f"('walkers',))), got {type(mesh).__name__}")
    elif WALKER_AXIS not in mesh.axis_names:
        raise ValueError(f"mesh must have an axis named {WALKER_AXIS!r}, got axes "
                         f"{tuple(mesh.axis_names)}")
    return NamedSharding(_auto(mesh), PartitionSpec(WALKER_AXIS))


def num_shards(sharding: NamedSharding | None) -> int:
    """How many blocks the walker axis is cut into (1 without sharding)."""
    if sharding is None:
        return 1
    return int(sharding.mesh.shape[WALKER_AXIS])


def check_divisible(num_walkers: int, sharding: NamedSharding | None,
                    name: str = "num_walkers") -> None:
    """ValueError unless the walkers split evenly over the shards (before any work)."""
    s = num_shards(sharding)
    if int(num_walkers) % s:
        lo, hi = (num_walkers // s) * s, -(-num_walkers // s) * s
        raise ValueError(f"{name}={num_walkers} must be a multiple of the {s} devices on the "
                         f"'walkers' axis (e.g. {lo or s} or {hi})")


def _leaf_sharding(leaf, n, sharding):
    shape = np.shape(leaf)
    if len(shape) >= 1 and shape[0] == n:
        return sharding
    return NamedSharding(sharding.mesh, PartitionSpec())


def _put(leaf, target):
    if target.is_fully_addressable or (isinstance(leaf, jax.Array)
                                       and not leaf.is_fully_addressable):
        return jax.device_put(leaf, target)  # one process, or already a global array
    # several processes: every process holds the same global value; each keeps its blocks
    host = np.asarray(leaf)
    return jax.make_array_from_callback(host.shape, target, lambda index: host[index])


def shard_walkers(tree, sharding: NamedSharding | None, num_walkers: int | None = None):
    """Place a walker pytree: leaves with leading axis ``num_walkers`` (default: that of the
    first leaf that has an axis) are split over the ``"walkers"`` axis, others (scalars,
    log Z_0) replicated. Identity when ``sharding`` is None."""
    if sharding is None:
        return tree
    if num_walkers is None:
        shapes = [np.shape(a) for a in jax.tree.leaves(tree) if np.ndim(a) >= 1]
        if not shapes:
            return jax.tree.map(lambda a: _put(a, _leaf_sharding(a, -1, sharding)), tree)
        num_walkers = shapes[0][0]
    n = int(num_walkers)
    check_divisible(n, sharding)
    return jax.tree.map(lambda a: _put(a, _leaf_sharding(a, n, sharding)), tree)


def sharding_of(tree) -> NamedSharding | None:
    """The walker sharding of a placed walker pytree (its first leaf's, over the first axis),
    or None when the walkers are not split over a ``"walkers"`` mesh axis."""
    leaves = [a for a in jax.tree.leaves(tree) if np.ndim(a) >= 1]
    s = getattr(leaves[0], "sharding", None) if leaves else None
    if isinstance(s, NamedSharding) and len(s.spec) and s.spec[0] is not None \
            and not s.is_fully_replicated:
        return NamedSharding(s.mesh, PartitionSpec(s.spec[0]))
    return None


def constrain_walkers(tree, sharding: NamedSharding | None, num_walkers: int):
    """Inside jit: pin leaves with leading axis ``num_walkers`` to the walker sharding
    (``with_sharding_constraint``), so that a gather whose output GSPMD would replicate (a
    resampling within one group spanning every device) does not silently un-shard the walkers.
    Identity when ``sharding`` is None."""
    if sharding is None:
        return tree
    return jax.tree.map(
        lambda a: jax.lax.with_sharding_constraint(a, sharding)
        if np.ndim(a) >= 1 and np.shape(a)[0] == num_walkers else a, tree)


@lru_cache(maxsize=32)
def sharded_jit(fn, sharding: NamedSharding, static_argnums=()):
    """``jax.jit(fn, out_shardings=sharding)`` (cached): walkers created directly in their
    blocks, so no device ever holds all N of them (memory O(N d / S) per device)."""
    return jax.jit(fn, out_shardings=sharding, static_argnums=static_argnums)


def to_host(tree):
    """NumPy copies of the arrays in ``tree`` (one batched ``jax.device_get``); an array spread
    over several processes is all-gathered first (``multihost_utils.process_allgather``;
    every process must then call this together)."""

    def gather(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable and not x.is_fully_replicated:
            from jax.experimental import multihost_utils

            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return x

    return jax.device_get(jax.tree.map(gather, tree))
