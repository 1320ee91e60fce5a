"""Input checks of [`ebm_ppl.train`][ebm_ppl.train] (data, parameters, energy, optimizer), all before
anything is compiled.

Shapes of the energy are checked abstractly with ``jax.eval_shape`` (no compilation, no
FLOPs); every failure is a ``ValueError`` naming the argument.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..errors import check_finite_array, check_key, check_positive


def _check_params(params):
    leaves = jax.tree.leaves(params)
    if not leaves:
        raise ValueError("params must be a non-empty pytree of arrays")
    for leaf in leaves:
        arr = np.asarray(leaf)
        if not np.issubdtype(arr.dtype, np.floating):
            raise ValueError(f"params leaves must be float arrays, got dtype {arr.dtype}")
        if not np.all(np.isfinite(arr)):
            raise ValueError("params contain NaN or infinite values")


def _check_energy(energy_fn, params, x0):
    try:
        out = jax.eval_shape(energy_fn, params, x0)
    except Exception as err:  # noqa: BLE001 -- any failure here is a mismatch of inputs
        raise ValueError(
            f"energy_fn(params, x) failed on a data point of shape {x0.shape}; does the data "
            f"dimension ({x0.shape[0]}) match the energy's? ({type(err).__name__}: {err})"
        ) from None
    if not hasattr(out, "shape") or out.shape != ():
        raise ValueError(f"energy_fn must return one scalar per point x of shape {x0.shape}, "
                         f"but returned shape {getattr(out, 'shape', type(out).__name__)}")
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise ValueError(f"energy_fn must return a float, got dtype {out.dtype}")


def _positive_int(name, value, allow_none=False):
    return check_positive(name, value, integer=True, allow_none=allow_none)


def validate(energy_fn, params, data, *, key, optimizer, num_iterations, batch_size, chunk_size,
             checkpoint_every):
    """The checked, converted ``(data, params, key, optimizer)`` of a run (the estimator's
    own options were checked by its factory, see [`estimators`][ebm_ppl.training.estimators])."""
    if not callable(energy_fn):
        raise ValueError(f"energy_fn must be callable, got {type(energy_fn).__name__}")
    key = check_key(key)
    data = check_finite_array("data", data, ndim=2).astype(jnp.result_type(float))
    n, d = data.shape
    if n < 2 or d < 1:
        raise ValueError(f"data must have at least 2 rows and 1 column, got shape {data.shape}")
    _check_params(params)
    params = jax.tree.map(jnp.asarray, params)
    optimizer = default_optimizer() if optimizer is None else optimizer
    if not all(callable(getattr(optimizer, a, None)) for a in ("init", "update")):
        raise ValueError("optimizer must be an optax GradientTransformation (with init and update)")
    _positive_int("num_iterations", num_iterations)
    _positive_int("batch_size", batch_size, allow_none=True)
    _positive_int("chunk_size", chunk_size, allow_none=True)
    _positive_int("checkpoint_every", checkpoint_every, allow_none=True)
    _check_energy(energy_fn, jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), params),
                  jax.ShapeDtypeStruct((d,), data.dtype))
    return jnp.asarray(data), params, key, optimizer


@functools.lru_cache(maxsize=1)
def default_optimizer():
    """``optax.adam(1e-3)``, one object for every run (the compiled training programs are
    cached per optimizer object: a fresh one per call would recompile them)."""
    return optax.adam(1e-3)
