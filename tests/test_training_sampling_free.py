"""SM, DSM, SSM and NCE recover the mean and precision of a 5-D Gaussian (seed 6.2).

Truth comparisons use the asymptotic standard errors of the maximum-likelihood estimates,
se(mean_i) = sqrt(Sigma_ii / n) and se(P_ij) = sqrt((P_ij^2 + P_ii P_jj) / n). Method checks
compare with the exact minimizer of each objective on the sample: SM's is the sample mean and
inverse sample covariance S^-1; DSM's is (S + sigma^2 I)^-1, which must NOT equal S^-1 at a
large sigma (a wrong residual sign or scale would fail there).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import optax
import pytest

import ebm_ppl as ep

D, N = 5, 4000


def _problem():
    rng = np.random.default_rng(11)
    q, _ = np.linalg.qr(rng.normal(size=(D, D)))
    cov = q @ np.diag(np.linspace(0.5, 2.0, D)) @ q.T
    mean = np.array([1.0, -1.0, 0.5, 0.0, 2.0])
    data = rng.multivariate_normal(mean, cov, size=N)
    return mean, cov, data


MEAN, COV, DATA = _problem()
PREC = np.linalg.inv(COV)
S = np.cov(DATA, rowvar=False, bias=True)
XBAR = DATA.mean(0)
SE_MEAN = np.sqrt(np.diag(COV) / N)
SE_PREC = np.sqrt((PREC**2 + np.outer(np.diag(PREC), np.diag(PREC))) / N)


def energy(params, x):
    r = (x - params["mu"]) @ params["L"]
    return 0.5 * jnp.sum(r * r)


P0 = {"mu": jnp.zeros(D), "L": jnp.eye(D)}


def _fit(method, iterations=1500, **kw):
    opt = optax.adam(optax.cosine_decay_schedule(2e-2, iterations, alpha=5e-3))
    fit = ep.train(energy, P0, DATA, key=jax.random.key(3), method=method, optimizer=opt,
                   num_iterations=iterations, progress_bar=False, **kw)
    L = np.asarray(fit.params["L"])
    return fit, np.asarray(fit.params["mu"]), L @ L.T


def _assert_truth(mu, prec, factor=1.0):
    assert np.all(np.abs(mu - MEAN) < 4 * factor * SE_MEAN), (mu, MEAN)
    assert np.all(np.abs(prec - PREC) < 4 * factor * SE_PREC), np.abs(prec - PREC) / SE_PREC


@pytest.mark.parametrize("trace", ["exact", "hutchinson"])
def test_score_matching_hits_the_sample_minimizer(trace):
    fit, mu, prec = _fit("sm", sm_trace=trace)
    _assert_truth(mu, prec)
    tol = 2e-3 if trace == "exact" else 0.05  # Hutchinson adds gradient noise only
    assert np.max(np.abs(prec - np.linalg.inv(S))) < tol
    assert np.max(np.abs(mu - XBAR)) < tol
    assert fit.history["loss"].shape == (1500,) and fit.log_z is None


def test_sliced_score_matching():
    _, mu, prec = _fit("ssm", num_projections=1)
    _assert_truth(mu, prec)
    assert np.max(np.abs(prec - np.linalg.inv(S))) < 0.05


def test_denoising_score_matching_fits_the_noised_data():
    for sigma in (0.1, 0.5):
        _, mu, prec = _fit("dsm", noise_scale=sigma)
        noised = np.linalg.inv(S + sigma**2 * np.eye(D))  # the exact DSM minimizer
        assert np.max(np.abs(prec - noised)) < 0.03
        assert np.max(np.abs(mu - XBAR)) < 0.03
        if sigma == 0.1:  # small corruption: the data's own precision
            _assert_truth(mu, prec)
        else:  # large corruption: DSM is not SM, a residual of the wrong scale would pass here
            assert np.max(np.abs(prec - np.linalg.inv(S))) > 0.1


def test_nce_recovers_gaussian_and_log_z():
    noise = dist.MultivariateNormal(jnp.asarray(XBAR), covariance_matrix=jnp.asarray(2.0 * S))
    fit, mu, prec = _fit("nce", noise=noise)
    # NCE is consistent but less efficient than maximum likelihood (about 1 + 1/nu = 2 times
    # the variance with nu = 1 and noise close to the data): allow sqrt(2) wider.
    _assert_truth(mu, prec, factor=math.sqrt(2))
    exact_log_z = 0.5 * D * math.log(2 * math.pi) - 0.5 * np.linalg.slogdet(prec)[1]
    assert abs(fit.log_z - exact_log_z) < 0.05
    assert abs(fit.history["log_z"][-1] - fit.log_z) < 0.01


def test_nce_default_noise_works():
    fit, mu, prec = _fit("nce")
    _assert_truth(mu, prec, factor=math.sqrt(2))
    exact_log_z = 0.5 * D * math.log(2 * math.pi) - 0.5 * np.linalg.slogdet(prec)[1]
    assert abs(fit.log_z - exact_log_z) < 0.05
