"""Errors and input checks shared by every public entry point.

Every check runs on concrete Python/NumPy values *before* anything is traced or compiled,
so a user mistake surfaces as a one-line ``ValueError`` that names the argument, never as
a JAX trace.
"""

from __future__ import annotations

import numbers

import jax
import numpy as np


class SamplingDivergedError(RuntimeError):
    """Every walker's energy became non-finite: the run cannot continue.

    Usually the step size is too large for the stiffest direction of the energy.
    """


class CLIError(ValueError):
    """A user mistake on the command line: printed as one ``error:`` line, exit code 2."""


def check_positive(name: str, value, *, integer: bool = False, allow_none: bool = False):
    """Raise ``ValueError`` unless ``value`` is a finite positive number (an int if asked)."""
    if value is None and allow_none:
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real | np.ndarray | jax.Array):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    arr = np.asarray(value)
    if arr.ndim != 0:
        raise ValueError(f"{name} must be a scalar, got an array of shape {arr.shape}")
    if integer and not float(arr).is_integer():
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not np.isfinite(arr) or arr <= 0:
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")
    return int(arr) if integer else float(arr)


def check_key(key, name: str = "key"):
    """Accept a typed key (``jax.random.key``) or a raw uint32 key (``PRNGKey``)."""
    if isinstance(key, jax.Array):
        if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) and key.ndim == 0:
            return key
        if key.dtype == np.uint32 and key.shape == (2,):
            return key
    raise ValueError(
        f"{name} must be a single JAX random key (jax.random.key(seed) or jax.random.PRNGKey(seed)), "
        f"got {type(key).__name__}{getattr(key, 'shape', '')}"
    )


def check_choice(name: str, value, choices):
    """Raise ``ValueError`` listing the valid choices when ``value`` is not one of them."""
    if value not in choices:
        valid = ", ".join(repr(c) for c in choices)
        raise ValueError(f"unknown {name} {value!r}; valid choices are {valid}")
    return value


def check_finite_array(name: str, value, *, ndim: int | None = None):
    """Return ``value`` as a float array after checking its rank and that it has no NaN/inf."""
    arr = np.asarray(value)
    if not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{name} contains {bad} NaN or infinite value(s)")
    return arr


def check_model_data(model_args=(), model_kwargs=None):
    """Reject NaN or inf in the floating-point arrays passed to a NumPyro model (its data),
    naming the argument; a NaN observation would otherwise surface as NumPyro's "Cannot find
    valid initial parameters" after many retries."""
    items = [(f"model argument {i}", a) for i, a in enumerate(model_args)]
    items += [(f"model keyword argument {k!r}", a) for k, a in (model_kwargs or {}).items()]
    for name, value in items:
        for leaf in jax.tree.leaves(value):
            if isinstance(leaf, jax.core.Tracer) or not (hasattr(leaf, "dtype")
                                                          or isinstance(leaf, float)):
                continue
            arr = np.asarray(leaf)
            if np.issubdtype(arr.dtype, np.inexact) and not np.all(np.isfinite(arr)):
                bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
                raise ValueError(f"{name} (data) contains {bad} NaN or infinite value(s)")
