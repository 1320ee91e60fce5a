"""What an evidence result of a NumPyro model carries beyond the run: the fingerprint of the
observed data (so that comparisons refuse evidences of other data) and the pointwise
log-likelihood at the walkers (``to_arviz()``'s ``log_likelihood`` group, for ``az.loo``)."""

from __future__ import annotations

import dataclasses
import functools

import jax
import numpy as np
from numpyro.infer import log_likelihood

from .fingerprint import observed_fingerprint
from .result import EvidenceResult

__all__ = ["with_model_data"]


def with_model_data(result: EvidenceResult, energy, model, *model_args,
                    **model_kwargs) -> EvidenceResult:
    """``result`` with ``data_fingerprint`` and, where the model allows, ``log_likelihood``."""
    result = dataclasses.replace(
        result, data_fingerprint=observed_fingerprint(model, *model_args, **model_kwargs))
    return _with_log_likelihood(result, energy)


@functools.partial(jax.jit, static_argnums=0)
def _pointwise_log_likelihood(structure, samples, data):
    args, kwargs = structure.args(data)
    return log_likelihood(structure.model, samples, *args, batch_ndims=1, **kwargs)


def _with_log_likelihood(result: EvidenceResult, energy) -> EvidenceResult:
    """``result`` with the pointwise log-likelihood of the model's observed sites at its
    walkers, as `result.with_log_likelihood` computes
    it, compiled once per model structure."""
    if not isinstance(result.samples, dict) or energy.structure is None:
        return result
    try:
        values = _pointwise_log_likelihood(energy.structure, result.samples, energy.data)
    except Exception:  # noqa: BLE001 - a model the vectorized replay cannot handle: no group
        return result
    return dataclasses.replace(result, log_likelihood={k: np.asarray(v)
                                                       for k, v in values.items()})
