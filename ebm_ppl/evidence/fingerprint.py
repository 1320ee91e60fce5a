"""A fingerprint of the data a NumPyro model observes, so that evidences computed on different
data are never compared (a Bayes factor is a ratio of two evidences of the SAME data).

The fingerprint hashes the values of the model's observed sites (as float64 when numeric),
each site on its own and in sorted order, so it ignores the sites' names: two models that
observe the same ``y`` under different site names agree. ``numpyro.factor`` sites carry no
data and are skipped.
"""

from __future__ import annotations

import hashlib

import jax
import numpy as np
from numpyro import handlers

__all__ = ["observed_fingerprint"]


def _digest(value) -> str | None:
    if isinstance(value, jax.core.Tracer):
        return None
    arr = np.asarray(value)
    if arr.size == 0:  # numpyro.factor / Unit sites: no data
        return ""
    if arr.dtype.kind in "biuf":
        arr = arr.astype(np.float64)
    h = hashlib.sha256(str(arr.shape).encode())
    h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def _observed_values(model, model_args, model_kwargs, abstract: bool) -> list:
    values = []

    def run(key):
        with handlers.block():
            tr = handlers.trace(handlers.seed(model, key)).get_trace(*model_args, **model_kwargs)
        values.extend(site["value"] for site in tr.values()
                      if site["type"] == "sample" and site["is_observed"])
        return 0

    if abstract:  # trace only: nothing compiled or run (data passed as obs= stay concrete)
        jax.eval_shape(run, jax.random.key(0))
    else:
        run(jax.random.key(0))
    return values


def observed_fingerprint(model, *model_args, **model_kwargs) -> str | None:
    """A short hex digest of the observed sites' values of ``model(*model_args,
    **model_kwargs)``; None when the model observes no data or cannot be traced."""
    try:
        values = _observed_values(model, model_args, model_kwargs, abstract=True)
        digests = [_digest(v) for v in values]
        if any(d is None for d in digests):  # data computed inside the model: run it
            digests = [_digest(v) for v in
                       _observed_values(model, model_args, model_kwargs, abstract=False)]
    except Exception:  # noqa: BLE001 -- the model's own errors are reported by the estimators
        return None
    if any(d is None for d in digests):
        return None
    kept = sorted(d for d in digests if d)
    if not kept:
        return None
    return hashlib.sha256("".join(kept).encode()).hexdigest()[:16]
