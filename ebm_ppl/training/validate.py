"""Input checks for :func:`ebm_ppl.train`, all before anything is compiled.

Shapes of the energy are checked abstractly with ``jax.eval_shape`` (no compilation, no
FLOPs); every failure is a ``ValueError`` naming the argument.
"""

from __future__ import annotations

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..errors import check_choice, check_finite_array, check_key, check_positive


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


def validate(energy_fn, params, data, *, key, method, optimizer, num_walkers, step_size,
             num_iterations, num_steps, batch_size, init_walkers, log_z0,
             num_equilibration_steps, resample_threshold, reinit_every, noise, noise_ratio,
             noise_scale, sm_trace, num_projections, chunk_size, checkpoint_every, methods,
             sampling):
    """Return the checked, converted inputs and the static configuration ``cfg``."""
    if not callable(energy_fn):
        raise ValueError(f"energy_fn must be callable, got {type(energy_fn).__name__}")
    check_choice("method", method, methods)
    key = check_key(key)
    float_dtype = jnp.result_type(float)
    data = check_finite_array("data", data, ndim=2).astype(float_dtype)
    n, d = data.shape
    if n < 2 or d < 1:
        raise ValueError(f"data must have at least 2 rows and 1 column, got shape {data.shape}")
    _check_params(params)
    params = jax.tree.map(jnp.asarray, params)
    optimizer = optax.adam(1e-3) if optimizer is None else optimizer
    if not all(callable(getattr(optimizer, a, None)) for a in ("init", "update")):
        raise ValueError("optimizer must be an optax GradientTransformation (with init and update)")
    cfg = {"method": method,
           "num_steps": _positive_int("num_steps", num_steps),
           "batch_size": _positive_int("batch_size", batch_size, allow_none=True)}
    _positive_int("num_iterations", num_iterations)
    _positive_int("chunk_size", chunk_size, allow_none=True)
    _positive_int("checkpoint_every", checkpoint_every, allow_none=True)
    if method in sampling:
        cfg["num_walkers"] = _positive_int("num_walkers", num_walkers)
        cfg["step_size"] = check_positive("step_size", step_size)
    if method == "jarzynski":
        cfg["resample_threshold"] = check_positive("resample_threshold", resample_threshold)
        cfg["num_equilibration_steps"] = _positive_int("num_equilibration_steps",
                                                       num_equilibration_steps)
        if init_walkers is not None:
            init_walkers = check_finite_array("init_walkers", init_walkers, ndim=2)
            if init_walkers.shape != (cfg["num_walkers"], d):
                raise ValueError(f"init_walkers must have shape (num_walkers, d) = "
                                 f"{(cfg['num_walkers'], d)}, got {init_walkers.shape}")
            init_walkers = jnp.asarray(init_walkers, float_dtype)
    elif init_walkers is not None:
        raise ValueError(f"init_walkers is only used by method='jarzynski', not {method!r}")
    if log_z0 is not None:
        arr = np.asarray(log_z0)
        if arr.ndim != 0 or not np.issubdtype(arr.dtype, np.number) or not np.isfinite(arr):
            raise ValueError(f"log_z0 must be a finite number, got {log_z0!r}")
        log_z0 = float(arr)
    if method in ("cd", "pcd"):
        cfg["reinit_every"] = _positive_int("reinit_every", reinit_every)
    if method == "dsm":
        cfg["noise_scale"] = check_positive("noise_scale", noise_scale)
    if method == "ssm":
        cfg["num_projections"] = _positive_int("num_projections", num_projections)
    if method == "sm":
        cfg["sm_trace"] = check_choice("sm_trace", sm_trace, ("auto", "exact", "hutchinson"))
    if method == "nce":
        cfg["noise_ratio"] = _positive_int("noise_ratio", noise_ratio)
        cfg["noise"] = _check_noise(noise, data)
    _check_energy(energy_fn, jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), params),
                  jax.ShapeDtypeStruct((d,), data.dtype))
    return SimpleNamespace(cfg=cfg, data=jnp.asarray(data), params=params, key=key,
                           optimizer=optimizer, init_walkers=init_walkers, log_z0=log_z0)


def _check_noise(noise, data):
    """NCE noise: a NumPyro distribution on R^d; None keeps the default (see ``default_noise``)."""
    d = data.shape[1]
    if noise is None:
        return None
    if not all(callable(getattr(noise, a, None)) for a in ("sample", "log_prob")):
        raise ValueError("noise must be a NumPyro distribution (with sample and log_prob)")
    try:
        out = jax.eval_shape(noise.log_prob, jnp.asarray(data[:3]))
    except Exception as err:  # noqa: BLE001
        raise ValueError(f"noise.log_prob failed on data rows of dimension {d}: {err}") from None
    if out.shape != (3,):
        raise ValueError(f"noise must have event shape ({d},) (one log density per data row); "
                         f"its log_prob of 3 rows has shape {out.shape}")
    return noise
