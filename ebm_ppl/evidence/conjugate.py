"""Conjugate NumPyro models with their exact evidence, for tests, benchmarks and teaching.

* [`nig_regression`][ebm_ppl.evidence.conjugate.nig_regression] -- linear regression with unknown noise:
``sigma^2 ~ InvGamma(a0, b0)``,
  ``w | sigma^2 ~ N(0, sigma^2 v0 I)``, ``y ~ N(X w, sigma^2 I)``. Marginally
  ``y ~ Student-t_{2 a0}(0, (b0 / a0) (I + v0 X X^T))`` (e.g. Bishop 2006, eq. 2.161 with the
  normal-inverse-gamma prior), so [`nig_log_evidence`][ebm_ppl.evidence.conjugate.nig_log_evidence] is exact.
* [`beta_binomial`][ebm_ppl.evidence.conjugate.beta_binomial] -- ``p ~ Beta(a, b)``,
``k_i ~ Binomial(n_i, p)``:
  ``p(k) = prod_i C(n_i, k_i) B(a + sum k, b + sum (n - k)) / B(a, b)``.
"""

from __future__ import annotations

from math import lgamma

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

__all__ = ["nig_regression", "nig_log_evidence", "beta_binomial", "beta_binomial_log_evidence",
           "NIG_PRIOR", "BETA_PRIOR"]

NIG_PRIOR = dict(a0=3.0, b0=2.0, v0=4.0)
BETA_PRIOR = dict(a=2.0, b=3.0)


def nig_regression(X, y=None, a0: float = NIG_PRIOR["a0"], b0: float = NIG_PRIOR["b0"],
                   v0: float = NIG_PRIOR["v0"]):
    """Linear regression with unknown noise and the conjugate normal-inverse-gamma prior."""
    s2 = numpyro.sample("sigma2", dist.InverseGamma(a0, b0))
    w = numpyro.sample("w", dist.Normal(0.0, jnp.sqrt(s2 * v0)).expand([X.shape[1]]).to_event(1))
    numpyro.sample("y", dist.Normal(X @ w, jnp.sqrt(s2)), obs=y)


def nig_log_evidence(X, y, a0: float = NIG_PRIOR["a0"], b0: float = NIG_PRIOR["b0"],
                     v0: float = NIG_PRIOR["v0"]) -> float:
    """Exact ``log p(y)`` of [`nig_regression`][ebm_ppl.evidence.conjugate.nig_regression]: the multivariate
    Student-t density."""
    X, y = np.asarray(X, float), np.asarray(y, float)
    n = len(y)
    shape = (b0 / a0) * (np.eye(n) + v0 * X @ X.T)
    _, logdet = np.linalg.slogdet(shape)
    nu = 2.0 * a0
    maha = float(y @ np.linalg.solve(shape, y))
    return float(lgamma((nu + n) / 2) - lgamma(nu / 2) - 0.5 * n * np.log(nu * np.pi)
                 - 0.5 * logdet - 0.5 * (nu + n) * np.log1p(maha / nu))


def beta_binomial(n_trials, k=None, a: float = BETA_PRIOR["a"], b: float = BETA_PRIOR["b"]):
    """Successes ``k`` out of ``n_trials`` with a common probability ``p ~ Beta(a, b)``."""
    p = numpyro.sample("p", dist.Beta(a, b))
    numpyro.sample("k", dist.Binomial(n_trials, p), obs=k)


def _log_beta(x, y):
    return lgamma(x) + lgamma(y) - lgamma(x + y)


def beta_binomial_log_evidence(n_trials, k, a: float = BETA_PRIOR["a"],
                               b: float = BETA_PRIOR["b"]) -> float:
    """Exact ``log p(k)`` of [`beta_binomial`][ebm_ppl.evidence.conjugate.beta_binomial]."""
    n, k = np.asarray(n_trials, int).ravel(), np.asarray(k, int).ravel()
    log_choose = sum(lgamma(ni + 1) - lgamma(ki + 1) - lgamma(ni - ki + 1) for ni, ki in zip(n, k))
    return float(log_choose + _log_beta(a + k.sum(), b + (n - k).sum()) - _log_beta(a, b))
