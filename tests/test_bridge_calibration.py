"""Issue 16, acceptance 2 (slow): the bridge sampling error bar is calibrated. Over 150 seeds
(independent groups of 4 chains x 1000 draws, drawn as one vectorized run), the exact log
evidence lies within +-2 reported se in 85% to 99% of the runs, on the normal-inverse-gamma
regression and the beta-binomial model, from NUTS draws and from autocorrelated random-walk
Metropolis draws (thinning 1).

The issue asks for 50 seeds; with 50, a perfectly calibrated error bar reads 100% (above the
99% bound) in 8% of runs, and the first 50 RWMH groups did (50/50 on both models, although
over 150 groups the z-scores have sd 1.04 and 0.98). 150 seeds make that chance 0.05%.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer import MCMC, NUTS

import ebm_ppl as ep
from ebm_ppl.evidence import conjugate

SEEDS, CHAINS = 150, 4


def nig_case():
    rng = np.random.default_rng(1)
    X = np.column_stack([np.ones(30), rng.normal(size=(30, 2))])
    y = X @ np.array([0.5, -1.0, 2.0]) + 1.2 * rng.normal(size=30)
    return (conjugate.nig_regression, (jnp.asarray(X),), dict(y=jnp.asarray(y)),
            conjugate.nig_log_evidence(X, y))


def bb_case():
    n, k = np.array([10, 20, 15, 30]), np.array([3, 8, 4, 12])
    return (conjugate.beta_binomial, (jnp.asarray(n),), dict(k=jnp.asarray(k)),
            conjugate.beta_binomial_log_evidence(n, k))


def z_scores(case, sampler):
    model, args, kw, exact = case
    kernel = NUTS(model) if sampler == "nuts" else ep.RWMH(model)
    mcmc = MCMC(kernel, num_warmup=1000, num_samples=1000, num_chains=SEEDS * CHAINS,
                chain_method="vectorized", progress_bar=False)
    mcmc.run(jax.random.key(2026), *args, **kw)
    draws = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
    out = []
    for s in range(SEEDS):
        sub = {k: v[CHAINS * s:CHAINS * (s + 1)] for k, v in draws.items()}
        res = ep.bridge_sampling(sub, model, *args, key=jax.random.key(s), **kw)
        out.append((res.log_z - exact) / res.log_z_se)
    return np.asarray(out)


@pytest.mark.slow
@pytest.mark.parametrize("sampler", ["nuts", "rwmh"])
@pytest.mark.parametrize("case", [nig_case, bb_case], ids=["nig_regression", "beta_binomial"])
def test_coverage_of_two_se(case, sampler):
    z = z_scores(case(), sampler)
    coverage = float(np.mean(np.abs(z) < 2))
    print(f"{case.__name__} {sampler}: coverage {coverage:.2f}, mean z {z.mean():+.2f}, "
          f"sd z {z.std():.2f}")
    assert 0.85 <= coverage <= 0.99, (coverage, z)
