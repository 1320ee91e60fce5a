"""Model comparison by the evidence: a table of log Z, Bayes factors and posterior model
probabilities, each with its error bar (the counterpart of ``az.compare`` for evidences).

For models ``M_1..M_K`` with evidences ``Z_k = p(y | M_k)`` and prior probabilities ``pi_k``:

* log Bayes factor against the best model: ``log BF_k = log Z_k - log Z_best`` with
  ``se = sqrt(se_k^2 + se_best^2)`` (independent estimates);
* posterior model probability ``P(M_k | y) = pi_k Z_k / sum_j pi_j Z_j`` (Bayes' rule), with an
  interval from the evidence errors: the quantiles of the probabilities over draws
  ``log Z_k ~ N(log Z_k, se_k^2)``, independent across models.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["compare_evidence", "evidence_error"]


def evidence_error(result) -> float:
    """The error bar of an evidence result: its total error when it reports one (bias
    included), else ``log_z_se``."""
    for name in ("total_error", "error", "log_z_se"):
        value = getattr(result, name, None)
        if value is not None and not callable(value):
            return float(value)
    raise TypeError(f"{type(result).__name__} has no log_z_se: not an evidence result")


def _named(results) -> dict:
    if isinstance(results, Mapping):
        named = {str(k): v for k, v in results.items()}
    elif isinstance(results, Sequence) and not isinstance(results, str):
        named = {f"model_{i}": r for i, r in enumerate(results)}
    else:
        raise TypeError("results must be a dict {name: result} or a list of evidence results, "
                        f"got {type(results).__name__}")
    if len(named) < 2:
        raise ValueError(f"compare_evidence needs at least 2 results, got {len(named)}")
    for name, r in named.items():
        if not hasattr(r, "log_z"):
            raise TypeError(f"results[{name!r}] is a {type(r).__name__}, not an evidence result "
                            "(ep.log_evidence or ep.bridge_sampling)")
    return named


def _check_same_data(named: dict, check_data: bool) -> None:
    prints = {n: getattr(r, "data_fingerprint", None) for n, r in named.items()}
    groups: dict = {}
    for n, fp in prints.items():
        if fp is not None:
            groups.setdefault(fp, []).append(n)
    if len(groups) > 1 and check_data:
        detail = "; ".join(f"{names} on data {fp}" for fp, names in groups.items())
        raise ValueError("results were computed on different observed data, and evidences of "
                         f"different data cannot be compared: {detail} (pass "
                         "check_data=False only if the data differ in a way that cancels)")
    unknown = [n for n, fp in prints.items() if fp is None]
    if unknown and check_data:
        warnings.warn(f"cannot check that {unknown} used the same observed data as the others "
                      "(no data fingerprint: log_partition results, or files saved before it "
                      "existed)", UserWarning, stacklevel=3)


def _prior(prior_probs, names) -> np.ndarray:
    if prior_probs is None:
        return np.full(len(names), 1.0 / len(names))
    if isinstance(prior_probs, Mapping):
        missing = [n for n in names if n not in prior_probs]
        if missing:
            raise ValueError(f"prior_probs lacks the model(s) {missing}")
        p = np.array([prior_probs[n] for n in names], float)
    else:
        p = np.asarray(prior_probs, float).ravel()
        if p.size != len(names):
            raise ValueError(f"prior_probs has {p.size} entries for {len(names)} models")
    if not np.all(np.isfinite(p)) or np.any(p <= 0):
        raise ValueError(f"prior_probs must be positive, got {p.tolist()}")
    return p / p.sum()


def compare_evidence(results, prior_probs=None, *, interval: float = 0.95,
                     check_data: bool = True, num_draws: int = 20000, seed: int = 0):
    """A ``pandas.DataFrame`` comparing models by their evidence, best first.

    Args:
        results: ``{name: result}`` (or a list, named ``model_0``...) of results of
            [`ebm_ppl.log_evidence`][ebm_ppl.log_evidence] or
            [`ebm_ppl.bridge_sampling`][ebm_ppl.bridge_sampling], any mix.
        prior_probs: prior model probabilities (dict by name or sequence in order); None for
            equal ones. They are normalized.
        interval: probability mass of the posterior-probability intervals.
        check_data: refuse results whose observed-data fingerprints differ (``ValueError``);
            warn when a result has none.
        num_draws: the Monte Carlo draws of the intervals (module docstring).
        seed: See `num_draws`.

    Columns: ``rank``, ``log_z``, ``se`` (the error each result reports), ``log_bf`` and
    ``log_bf_se`` against the top row, ``prob`` (posterior model probability) with
    ``prob_lower``/``prob_upper``, ``prior``, ``method`` and ``reliable``.
    """
    import pandas as pd

    if not 0.0 < interval < 1.0:
        raise ValueError(f"interval must lie in (0, 1), got {interval!r}")
    named = _named(results)
    _check_same_data(named, check_data)
    names = list(named)
    log_z = np.array([float(named[n].log_z) for n in names])
    se = np.array([evidence_error(named[n]) for n in names])
    if not np.all(np.isfinite(log_z)):
        bad = [n for n, v in zip(names, log_z) if not np.isfinite(v)]
        raise ValueError(f"log Z is not finite for {bad}")
    prior = _prior(prior_probs, names)
    log_post = log_z + np.log(prior)
    prob = np.exp(log_post - log_post.max())
    prob /= prob.sum()
    rng = np.random.default_rng(seed)
    draws = log_post + np.where(np.isfinite(se), se, 1e3) * rng.standard_normal(
        (int(num_draws), len(names)))
    draws = np.exp(draws - draws.max(axis=1, keepdims=True))
    draws /= draws.sum(axis=1, keepdims=True)
    lo, hi = np.quantile(draws, [(1 - interval) / 2, (1 + interval) / 2], axis=0)
    best = int(np.argmax(log_z))
    log_bf = log_z - log_z[best]
    log_bf_se = np.hypot(se, se[best])
    log_bf_se[best] = 0.0
    table = pd.DataFrame({
        "log_z": log_z, "se": se, "log_bf": log_bf, "log_bf_se": log_bf_se, "prob": prob,
        "prob_lower": lo, "prob_upper": hi, "prior": prior,
        "method": [str(getattr(named[n], "method", "")) for n in names],
        "reliable": [bool(getattr(named[n], "reliable", True)) for n in names],
    }, index=pd.Index(names, name="model"))
    table = table.sort_values("log_z", ascending=False)
    table.insert(0, "rank", np.arange(len(names)))
    table.attrs["interval"] = interval
    return table
