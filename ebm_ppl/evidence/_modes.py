"""``keep_modes``: the target's modes, found by L-BFGS from the initial walkers, for the
mode-guarded resampling of [`mode_guarded_resample_if`][ebm_ppl.evidence.resampling.mode_guarded_resample_if].

A broad reference and a target with separated modes of unequal widths is the hard case of
annealing: along the geometric path a narrow mode's share of the mass can dip to a fraction of
a percent before it rises to its final weight, and ordinary resampling leaves it a handful of
walkers at the dip (``benchmarks/hard_mixture_diagnosis.py``). Knowing the modes, resampling can
keep every mode's walkers and carry the share in the weights instead.
"""

from __future__ import annotations

import numpy as np
from jax.tree_util import Partial

from .reference import find_modes, usable_minima

__all__ = ["MODE_STARTS", "MAX_MODES", "MERGE_DISTANCE", "target_modes"]

MODE_STARTS = 1024  # L-BFGS starts: the first initial walkers (draws from the reference);
#                    256 missed the narrow mode of the hard mixture in 3 of 100 runs, 1024 in none
MAX_MODES = 8  # at most this many modes (the lowest minima) are kept
MERGE_DISTANCE = 0.25  # RMS distance, in units of the starts' robust scale, within which
#                        two end points are one mode


def _path_target(path, x):
    return path.target(x)


def target_modes(path, positions, *, num_starts: int = MODE_STARTS, max_iter: int = 200):
    """Distinct minima of the path's target energy ``U_1`` (M, dim), lowest first, found by
    L-BFGS from the first ``num_starts`` rows of ``positions``, and the gradients spent.

    End points count as in `auto_reference` (`usable_minima`). Two are one mode when their RMS
    distance, per coordinate in units of the starts' robust scale (1.4826 x their median
    absolute deviation), is below `MERGE_DISTANCE`; at most `MAX_MODES` are kept.
    """
    starts = positions[: int(num_starts)]
    xs, values, gnorms, grads = find_modes(Partial(_path_target, path), starts,
                                           max_iter=max_iter)
    x0 = np.asarray(starts)
    scale = 1.4826 * np.median(np.abs(x0 - np.median(x0, axis=0)), axis=0)  # robust scale
    scale = np.where(scale > 0, scale, 1.0)
    ok, order = usable_minima(xs, values, gnorms)
    modes: list[np.ndarray] = []
    for i in order:
        if not ok[i] or len(modes) == MAX_MODES:
            break
        if all(np.sqrt(np.mean(((xs[i] - m) / scale) ** 2)) >= MERGE_DISTANCE for m in modes):
            modes.append(xs[i])
    return np.asarray(modes).reshape(-1, xs.shape[-1]), int(grads)
