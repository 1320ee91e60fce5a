"""Simulation-based calibration of Bayes factors (Schad, Nicenboim, Buerkner, Betancourt and
Vasishth 2022, "Workflow techniques for the robust use of Bayes factors").

Can a Bayes factor be trusted? Simulate: draw a true model ``m ~ p(M)`` and data
``y ~ p(y | M_m)`` from its prior predictive, K times; compute every model's evidence on every
data set and the posterior model probabilities ``P(M_j | y) = p(y | M_j) p(M_j) / sum_i
p(y | M_i) p(M_i)``. If the evidences are right, the probabilities are calibrated: among the
data sets given ``P(M_j | y) ~ 0.8``, model j is the true one 80% of the time, since
``P(true = j | P(M_j | y) = p) = p`` by Bayes' rule when the simulation follows the prior. A
biased evidence (e.g. an annealing run that loses mass, biased low) shows up as probabilities
that are too confident or pulled toward one model. Two necessary checks:

* the calibration curve (``calibration_curve``): binned ``P(M_j | y)`` against the
  observed frequency of ``true = j``, with binomial (Jeffreys) intervals;
* the data-averaged posterior equals the prior, ``E_y[P(M_j | y)] = p(M_j)`` (Schad et al.
  2022), with its standard error over the K data sets.

``bayes_factor_calibration`` does the simulation and the evidences, with one batched run
per model (``log_evidence_batch``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import check_positive
from .batch import EvidenceBatch, log_evidence_batch
from .options import typed_key

__all__ = ["bayes_factor_calibration", "BayesFactorCalibration", "calibration_curve",
           "plot_calibration", "posterior_model_probs"]


def posterior_model_probs(log_z, prior_probs=None) -> np.ndarray:
    """``P(M_j | y_i) = softmax_j(log Z_ij + log p(M_j))`` for a (K, M) array of log evidences."""
    log_z = np.atleast_2d(np.asarray(log_z, float))
    prior = _prior(prior_probs, log_z.shape[1])
    a = log_z + np.log(prior)
    a = a - np.max(a, axis=1, keepdims=True)
    p = np.exp(a)
    return p / p.sum(axis=1, keepdims=True)


def calibration_curve(probs, is_true, num_bins: int = 5, interval: float = 0.9) -> dict:
    """Binned predicted probabilities against observed frequencies (a reliability diagram).

    ``probs`` are K predicted probabilities of an event (``P(M_j | y_i)``), ``is_true`` whether
    it happened (``true model == j``). The K values are cut into ``num_bins`` equal-width bins
    of [0, 1]; for each non-empty bin: the mean predicted probability, the observed frequency,
    the count, and the Jeffreys ``interval`` for the frequency (Beta(k + 1/2, n - k + 1/2)
    quantiles, the usual binomial interval for small counts). Calibrated probabilities put the
    frequency within its interval about ``interval`` of the time.
    """
    from scipy.stats import beta

    probs = np.asarray(probs, float).ravel()
    hit = np.asarray(is_true, bool).ravel()
    if probs.shape != hit.shape:
        raise ValueError(f"probs and is_true need the same length, got {probs.size} and "
                         f"{hit.size}")
    check_positive("num_bins", num_bins, integer=True)
    edges = np.linspace(0.0, 1.0, int(num_bins) + 1)
    which = np.clip(np.digitize(probs, edges[1:-1]), 0, int(num_bins) - 1)
    rows: dict[str, list] = dict(predicted=[], observed=[], count=[], lower=[], upper=[])
    for b in range(int(num_bins)):
        sel = which == b
        n = int(sel.sum())
        if n == 0:
            continue
        k = int(hit[sel].sum())
        tail = (1.0 - interval) / 2.0
        rows["predicted"].append(float(probs[sel].mean()))
        rows["observed"].append(k / n)
        rows["count"].append(n)
        rows["lower"].append(float(beta.ppf(tail, k + 0.5, n - k + 0.5)) if k > 0 else 0.0)
        rows["upper"].append(float(beta.ppf(1 - tail, k + 0.5, n - k + 0.5)) if k < n else 1.0)
    out = {name: np.asarray(v) for name, v in rows.items()}
    out["edges"] = edges
    return out


@dataclass(frozen=True)
class BayesFactorCalibration:
    """What ``bayes_factor_calibration`` simulated and estimated.

    ``log_z`` (K, M) and ``log_z_se`` (K, M): each model's log evidence on each data set;
    ``true_model`` (K,): the index of the model each data set was drawn from; ``data`` (K, ...)
    the simulated observations; ``prior_probs`` (M,); ``batches``: the M
    ``EvidenceBatch`` results (per-data-set details).
    """

    log_z: np.ndarray
    log_z_se: np.ndarray
    true_model: np.ndarray
    data: Any
    prior_probs: np.ndarray
    batches: tuple = ()
    wall_time: float = 0.0

    @property
    def posterior_probs(self) -> np.ndarray:
        """(K, M) posterior model probabilities from the estimated evidences."""
        return posterior_model_probs(self.log_z, self.prior_probs)

    @property
    def log_bayes_factor(self) -> np.ndarray:
        """(K,) ``log Z_0 - log Z_1`` (model 0 against model 1) on each data set."""
        return self.log_z[:, 0] - self.log_z[:, 1]

    def calibration(self, model: int = 0, num_bins: int = 5, interval: float = 0.9) -> dict:
        """``calibration_curve`` of ``P(M_model | y)`` against ``true_model == model``."""
        return calibration_curve(self.posterior_probs[:, model], self.true_model == model,
                                 num_bins, interval)

    def mean_posterior(self, model: int = 0) -> tuple[float, float]:
        """The data-averaged ``P(M_model | y)`` and its standard error over the K data sets; it
        should match ``prior_probs[model]`` (Schad et al. 2022)."""
        p = self.posterior_probs[:, model]
        return float(p.mean()), float(p.std(ddof=1) / np.sqrt(p.size))

    def plot(self, ax=None, model: int = 0, num_bins: int = 5, label: str = "estimated",
             **kwargs):
        """Draw the calibration curve of ``P(M_model | y)`` (with its binomial intervals and
        the diagonal) on ``ax`` (a new figure when None); returns ``ax``."""
        return plot_calibration(self.calibration(model, num_bins), ax=ax, label=label,
                                **kwargs)


def plot_calibration(curve: dict, ax=None, label: str = "estimated", diagonal: bool = True,
                     **kwargs):
    """Reliability diagram of a ``calibration_curve``: observed frequency against mean
    predicted probability per bin, with the binomial intervals as error bars."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4.2), layout="constrained")
    if diagonal:
        ax.plot([0, 1], [0, 1], color="0.6", ls="--", lw=1, label="calibrated")
    obs = curve["observed"]
    err = np.stack([obs - curve["lower"], curve["upper"] - obs])
    ax.errorbar(curve["predicted"], obs, yerr=err, fmt="o-", capsize=3, label=label, **kwargs)
    ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), xlabel="predicted P(M | data)",
           ylabel="observed frequency of M true")
    return ax


def _prior(prior_probs, m: int) -> np.ndarray:
    if prior_probs is None:
        return np.full(m, 1.0 / m)
    p = np.asarray(prior_probs, float).ravel()
    if p.shape != (m,) or not np.all(np.isfinite(p)) or np.any(p <= 0) or \
            abs(p.sum() - 1.0) > 1e-9:
        raise ValueError(f"prior_probs must be {m} positive probabilities summing to 1 (one "
                         f"per model), got {prior_probs!r}")
    return p


def bayes_factor_calibration(models: Sequence[Callable], *model_args, key,
                             num_datasets: int = 100, observed: str = "y", prior_probs=None,
                             model_kwargs: dict | None = None,
                             **options) -> BayesFactorCalibration:
    """Simulation-based calibration of posterior model probabilities (Bayes factors).

    Draws ``num_datasets`` (K) true models from ``prior_probs`` (uniform by default) and, for
    each, a data set from that model's prior predictive: the value of the observed site
    ``observed`` of ``model(*model_args, **model_kwargs)`` run without data. Every model then
    gets its evidence on every data set, the data passed as the keyword ``observed``, in one
    ``log_evidence_batch`` call per model (``options``, e.g.
    ``num_walkers``, ``method``, go to it). The models share ``model_args`` (e.g. a design
    matrix; nested models can slice it) and the name of their observed site.

    Returns a ``BayesFactorCalibration``: ``.calibration()`` / ``.plot()`` give the
    calibration curve of ``P(M_0 | y)``, ``.mean_posterior()`` the data-averaged posterior to
    compare with the prior.
    """
    models = list(models) if not callable(models) else [models]
    if len(models) < 2 or not all(callable(m) for m in models):
        raise ValueError("models must be a sequence of at least two callable NumPyro models")
    k = int(check_positive("num_datasets", num_datasets, integer=True))
    if not isinstance(observed, str):
        raise ValueError(f"observed must be the name of the models' observed site, got "
                         f"{observed!r}")
    prior = _prior(prior_probs, len(models))
    model_kwargs = dict(model_kwargs or {})
    if observed in model_kwargs:
        raise ValueError(f"model_kwargs holds {observed!r}, the data this function simulates")
    import time

    from numpyro.infer import Predictive

    t0 = time.perf_counter()
    key = typed_key(key)
    k_true, k_sim, k_ev = jax.random.split(key, 3)
    true_model = np.asarray(jax.random.choice(k_true, len(models), (k,), p=jnp.asarray(prior)))
    draws = []
    for j, (model, kj) in enumerate(zip(models, jax.random.split(k_sim, len(models)))):
        sites = Predictive(model, num_samples=k, return_sites=[observed])(
            kj, *model_args, **model_kwargs)
        if observed not in sites:
            raise ValueError(f"model {j} ({getattr(model, '__name__', model)}) has no site "
                             f"{observed!r} to simulate the data from")
        draws.append(np.asarray(sites[observed]))
    shapes = {d.shape for d in draws}
    if len(shapes) > 1:
        raise ValueError(f"the models simulate data of different shapes {sorted(shapes)}")
    data = np.stack(draws)[true_model, np.arange(k)]
    tile = _tiler(k)
    args = jax.tree.map(tile, tuple(model_args))
    kwargs = jax.tree.map(tile, model_kwargs)
    batches = []
    run_kwargs: dict[str, Any] = dict(options, **kwargs)
    run_kwargs[observed] = jnp.asarray(data)
    for model, kj in zip(models, jax.random.split(k_ev, len(models))):
        batch: EvidenceBatch = log_evidence_batch(model, *args, key=kj, **run_kwargs)
        batches.append(batch)
    return BayesFactorCalibration(
        log_z=np.stack([b.log_z for b in batches], axis=1),
        log_z_se=np.stack([b.log_z_se for b in batches], axis=1), true_model=true_model,
        data=data, prior_probs=prior, batches=tuple(batches),
        wall_time=time.perf_counter() - t0)


def _tiler(k: int):
    def tile(a):
        if isinstance(a, jax.Array | np.ndarray):
            return jnp.broadcast_to(jnp.asarray(a), (k,) + np.shape(a))
        return a
    return tile
