"""A goodness-of-fit test for MCMC draws: the KSD with a wild-bootstrap p-value that stays
calibrated for correlated draws (Chwialkowski, Strathmann & Gretton 2016, ICML, Sec. 2.2-3).

H0: the draws come (as a stationary, mixing sequence) from rho = exp(-U)/Z. The statistic is
the V-statistic ``V_n = n^-2 sum_ij k_p(x_i, x_j)`` (the squared KSD). Its null law is mimicked
by ``B_n = n^-2 sum_ij W_i W_j k_p(x_i, x_j)``, where W is a Markov chain of signs that flips
with probability ``a`` at each draw (their eq. 6): W has autocorrelation (1 - 2a)^|t|, so with
a correlation length longer than that of the draws, B_n reproduces the dependence of the
draws (Leucht & Neumann 2013; Chwialkowski et al. 2014). Chains are independent, so W restarts
at every chain. p = (1 + #{B_n >= V_n}) / (1 + num_bootstrap).

The flip probability defaults to ``a = 1 / (kappa tau)``, capped at 1/2, with tau the largest
integrated autocorrelation time of the coordinates and scores of the draws (n / ESS, NumPyro's
estimator) and ``kappa = 8``: W then stays correlated over about 4 tau draws. For an AR(1)
feature of autocorrelation time tau the bootstrap recovers a fraction 1 / (1 + 1/kappa) of its
long-run variance, so a shorter W under-states the null spread: with kappa = 4 (0.8 of it) MALA
draws of a 5-D Gaussian (tau ~ 19) were rejected in 10% of 200 seeds at level 0.05, with
kappa = 8 in 5.5% (the same draws). A longer W leaves fewer independent sign blocks
(about ESS / kappa), which is what bounds kappa from above.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import check_key, check_positive
from .stein import (_quadratic_forms, _row_blocks, _standardized,
                    make_preconditioner, stein_inputs)

KAPPA = 8.0

BIASED = ("these draws are not from the target: the sampler is biased or has not converged "
          "(KSD test p = {p:.3g} < {level:g})")
FINE = ("no evidence against the target (KSD test p = {p:.3g} >= {level:g}): the draws are "
        "consistent with exp(-U), up to the test's power at this sample size")


@dataclass(frozen=True)
class SteinTest:
    """Result of [`stein_test`][ebm_ppl.diagnostics.stein_gof.stein_test].

    Attributes:
        ksd: sqrt(V_n), the KSD of the pooled draws.
        statistic: n V_n.
        p_value: wild-bootstrap p-value.
        reject: ``p_value < level``.
        level: the test level.
        flip_prob: the sign-flip probability ``a`` used by the bootstrap.
        tau: the autocorrelation time that set ``flip_prob`` (NaN when it was given).
        n: sizes.
        num_chains: See `n`.
        num_bootstrap: See `n`.
    """

    ksd: float
    statistic: float
    p_value: float
    reject: bool
    level: float
    flip_prob: float
    tau: float
    n: int
    num_chains: int
    num_bootstrap: int

    @property
    def reading(self) -> str:
        """One line for a report: what the test says about the draws."""
        text = BIASED if self.reject else FINE
        return text.format(p=self.p_value, level=self.level)

    def __str__(self) -> str:
        return f"KSD = {self.ksd:.4g}, p = {self.p_value:.3g}: {self.reading}"


def autocorrelation_time(x: np.ndarray) -> float:
    """The largest integrated autocorrelation time n_draw * num_chains / ESS over the columns
    of ``x`` (chain, draw, k), with NumPyro's ESS (Geyer's initial monotone sequence)."""
    from numpyro.diagnostics import effective_sample_size

    n_chain, n_draw, _ = x.shape
    if n_draw < 4:
        return 1.0
    ess = np.asarray(effective_sample_size(np.asarray(x, np.float64)))
    ess = ess[np.isfinite(ess) & (ess > 0)]
    if ess.size == 0:
        return 1.0
    return float(max(1.0, n_chain * n_draw / ess.min()))


def _sign_processes(key, num_chains, num_draws, num_bootstrap, flip_prob):
    """(chain * draw, num_bootstrap) Markov sign chains, restarted at each chain."""
    k0, k1 = jax.random.split(key)
    first = jax.random.rademacher(k0, (num_chains, 1, num_bootstrap), dtype=jnp.float64)
    flips = jax.random.uniform(k1, (num_chains, num_draws - 1, num_bootstrap)) < flip_prob
    steps = jnp.concatenate([first, jnp.where(flips, -1.0, 1.0)], axis=1)
    return jnp.cumprod(steps, axis=1).reshape(num_chains * num_draws, num_bootstrap)


def stein_test(draws, potential_fn=None, *, key=None, level: float = 0.05,
               num_bootstrap: int = 500, flip_prob: float | None = None, model=None,
               model_args=(), model_kwargs=None, scores=None, preconditioner="med",
               c: float = 1.0, beta: float = -0.5, standardize: bool = False,
               block_size: int | None = None) -> SteinTest:
    """Test whether MCMC ``draws`` come from rho = exp(-U)/Z, with a calibrated p-value.

    Inputs are as for [`stein_discrepancy`][ebm_ppl.diagnostics.stein_discrepancy] (an array, constrained
    sites with ``model=``, or an MCMC). Keep the chains apart in the input ((chain, draw, d)):
    the bootstrap signs restart at each chain. ``flip_prob`` is the per-draw sign-flip
    probability of the wild bootstrap (default from the autocorrelation time, see the module
    notes); ``preconditioner`` defaults to ``"med"`` (the median-distance length scale, which
    makes the test invariant to the units of the draws). Cost: one O(n^2 (d + num_bootstrap))
    pass in blocks.

    Returns a [`SteinTest`][ebm_ppl.diagnostics.stein_gof.SteinTest] (``p_value``, ``reject``, ``reading``).
    """
    key = jax.random.key(0) if key is None else check_key(key)
    if not 0.0 < float(level) < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level!r}")
    num_bootstrap = check_positive("num_bootstrap", num_bootstrap, integer=True)
    if flip_prob is not None and not 0.0 < float(flip_prob) <= 0.5:
        raise ValueError(f"flip_prob must lie in (0, 0.5], got {flip_prob!r}")
    c = check_positive("c", c)
    if not -1.0 < float(beta) < 0.0:
        raise ValueError(f"beta must lie in (-1, 0), got {beta!r}")
    inp = stein_inputs(draws, potential_fn, model=model, model_args=model_args,
                       model_kwargs=model_kwargs, scores=scores)
    n_chain, n_draw, d = inp.x.shape
    n = n_chain * n_draw
    if n_draw < 2:
        raise ValueError("stein_test needs at least 2 draws per chain")
    if flip_prob is None:
        tau = autocorrelation_time(np.concatenate([inp.x, inp.score], axis=-1))
        flip_prob = min(0.5, 1.0 / (KAPPA * tau))
    else:
        tau = float("nan")
    x, s = _standardized(inp.x.reshape(n, d), inp.score.reshape(n, d), standardize)
    linv = make_preconditioner(x, preconditioner)
    signs = _sign_processes(key, n_chain, n_draw, num_bootstrap, float(flip_prob))
    weights = jnp.concatenate([jnp.ones((n, 1)), signs], axis=1) / n
    q = np.asarray(_quadratic_forms(jnp.asarray(x), jnp.asarray(s), weights, jnp.asarray(linv),
                                    c=float(c), beta=float(beta),
                                    block=_row_blocks(n, block_size)))
    v, boot = float(q[0]), q[1:]
    p = float((1 + np.sum(boot >= v)) / (1 + num_bootstrap))
    return SteinTest(ksd=float(np.sqrt(max(v, 0.0))), statistic=n * v, p_value=p,
                     reject=bool(p < level), level=float(level), flip_prob=float(flip_prob),
                     tau=float(tau), n=n, num_chains=n_chain, num_bootstrap=num_bootstrap)


def _draws_of(obj):
    """What [`stein_test`][ebm_ppl.diagnostics.stein_gof.stein_test] takes, from what ``summary`` takes."""
    import xarray as xr

    if isinstance(obj, xr.DataTree):
        post = obj["posterior"].to_dataset()
        data = {k: np.asarray(post[k].values) for k in post.data_vars}
        return next(iter(data.values())) if len(data) == 1 else data
    return obj


def with_stein_columns(table, obj, stein):
    """``table`` (one row per scalar coordinate) with the KSD test of ``obj`` beside R-hat and
    ESS: columns ``ksd`` and ``ksd_p`` (one joint test, so the same value on every row) and
    ``table.attrs["stein_test"]`` (the [`SteinTest`][ebm_ppl.diagnostics.stein_gof.SteinTest], with its
    one-line ``reading``).

    ``stein``: True (``obj`` is an MCMC, whose model or potential is the target), a potential
    U, or a dict of keyword arguments for [`stein_test`][ebm_ppl.diagnostics.stein_gof.stein_test] (e.g.
    ``{"model": m,
    "model_args": (x, y)}``).
    """
    if stein is None or stein is False:
        return table
    if stein is True:
        kwargs = {}
    elif isinstance(stein, dict):
        kwargs = dict(stein)
    elif callable(stein):
        kwargs = {"potential_fn": stein}
    else:
        raise ValueError("stein must be True, a potential U or a dict of stein_test arguments, "
                         f"got {type(stein).__name__}")
    result = stein_test(_draws_of(obj), **kwargs)
    table = table.copy()
    table["ksd"] = result.ksd
    table["ksd_p"] = result.p_value
    table.attrs["stein_test"] = result
    return table
