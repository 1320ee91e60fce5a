"""Mode masses: the fraction of (weighted) samples in each basin of a multimodal energy.

For the eq. 4 mixture of Figure 1 the mass of the x = 5 mode is 0.15/0.85 = 0.176471; a
sampler that does not cross the barrier, or weights that lose a mode, show up here first.
"""

from __future__ import annotations

import numpy as np

from .weights import Estimate, weighted_mean


def _labels(samples, mode_index, chains: bool) -> np.ndarray:
    if mode_index is None:
        labels = np.asarray(samples)
        if not np.issubdtype(labels.dtype, np.integer):
            raise ValueError("without mode_index, samples must be integer mode labels")
        return labels
    fn = getattr(mode_index, "mode_index", mode_index)
    if not callable(fn):
        raise ValueError("mode_index must be a callable (points -> labels) or a target with "
                         f".mode_index, got {type(mode_index).__name__}")
    x = np.asarray(samples, dtype=np.float64)
    lead = 2 if chains else 1
    if x.ndim == lead:
        x = x[..., None]
    if x.ndim != lead + 1:
        raise ValueError(f"samples must have shape {'(chain, draw' if chains else '(n'}, dim), "
                         f"got {x.shape}")
    return np.asarray(fn(x))


def mode_masses(samples, mode_index=None, *, num_modes: int | None = None, log_weights=None,
                chains: bool = False) -> Estimate:
    """Mass of each basin with standard errors: an [`Estimate`][ebm_ppl.diagnostics.weights.Estimate] of shape
    ``(num_modes,)``.

    Args:
        samples: points of shape ``(n, dim)`` (``(chain, draw, dim)`` with ``chains=True``),
            or integer labels when ``mode_index`` is None.
        mode_index: callable mapping points ``(..., dim)`` to basin labels 0..K-1, or a target
            with a ``mode_index`` method (e.g. ``ep.targets.figure1_mixture()``).
        num_modes: K (default: the target's number of modes, else max label + 1).
        log_weights: importance weights of the samples (self-normalized estimate).
        chains: samples come as MCMC chains; the se accounts for autocorrelation (ArviZ MCSE).
    """
    labels = _labels(samples, mode_index, chains)
    if num_modes is None:
        masses = getattr(mode_index, "mode_masses", None)
        num_modes = len(masses) if masses is not None else int(labels.max()) + 1
    if labels.size and (labels.min() < 0 or labels.max() >= num_modes):
        raise ValueError(f"mode labels must lie in 0..{num_modes - 1}, "
                         f"got {labels.min()}..{labels.max()}")
    onehot = (labels[..., None] == np.arange(num_modes)).astype(np.float64)
    return weighted_mean(onehot, log_weights, chains=chains)
