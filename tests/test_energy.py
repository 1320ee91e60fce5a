"""Energies of NumPyro models and plain functions (issue 2, item 4; NUTS vs MALA).

The model has a constrained site (a HalfNormal scale, unconstrained by sigma = exp(z)) and
observed data; every reference value is computed independently with scipy.
"""

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC, NUTS
from numpyro.infer.util import potential_energy
from scipy import integrate, stats

import ebm_ppl as ep

Y = np.random.default_rng(0).normal(0.5, 0.8, size=20)
MU_SD = 2.0


def model(y):
    mu = numpyro.sample("mu", dist.Normal(0.0, MU_SD))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    with numpyro.plate("data", y.shape[0]):
        numpyro.sample("y", dist.Normal(mu, sigma), obs=y)


@pytest.fixture(scope="module")
def energy():
    return ep.energy_from_model(model, jnp.asarray(Y))


def _points(n=8, seed=1):
    return np.random.default_rng(seed).normal(0.0, 1.5, size=(n, 2))


def _scipy_log_prior(mu, z):
    """log N(mu; 0, 2) + log HalfNormal(e^z; 1) + z (log |d sigma / d z|)."""
    return stats.norm.logpdf(mu, 0.0, MU_SD) + stats.halfnorm.logpdf(np.exp(z)) + z


def _scipy_log_lik(mu, z):
    return np.sum(stats.norm.logpdf(Y, mu, np.exp(z)))


def test_layout_and_constrain(energy):
    assert energy.dim == 2 and energy.site_names == ("mu", "sigma")
    values = energy.constrain(jnp.array([0.3, -0.2]))
    assert set(values) == {"mu", "sigma"}
    np.testing.assert_allclose([values["mu"], values["sigma"]], [0.3, np.exp(-0.2)], rtol=1e-14)


def test_energy_equals_numpyro_potential_energy(energy):
    for mu, z in _points():
        expected = potential_energy(model, (jnp.asarray(Y),), {}, {"mu": mu, "sigma": z})
        np.testing.assert_allclose(energy(jnp.array([mu, z])), expected, rtol=1e-12)


def test_log_prior_plus_log_likelihood_is_minus_energy(energy):
    for mu, z in _points():
        x = jnp.array([mu, z])
        prior, lik = float(energy.log_prior_fn(x)), float(energy.log_likelihood_fn(x))
        np.testing.assert_allclose(prior, _scipy_log_prior(mu, z), rtol=1e-12)
        np.testing.assert_allclose(lik, _scipy_log_lik(mu, z), rtol=1e-12)
        np.testing.assert_allclose(prior + lik, -float(energy(x)), rtol=1e-12)


def test_log_prior_is_a_normalized_density_in_unconstrained_space(energy):
    """The Jacobian is included: exp(log_prior) integrates to 1 over R^2 (Simpson's rule on
    a grid; a missing Jacobian would give E[1/sigma] = inf, a doubled one E[sigma])."""
    mu = np.linspace(-12 * MU_SD, 12 * MU_SD, 1201)
    z = np.linspace(-40.0, 4.0, 2201)
    grid = np.stack(np.meshgrid(mu, z, indexing="ij"), axis=-1).reshape(-1, 2)
    log_prior = jax.jit(jax.vmap(energy.log_prior_fn))(jnp.asarray(grid))
    density = np.exp(np.asarray(log_prior)).reshape(mu.size, z.size)
    total = integrate.simpson(integrate.simpson(density, x=z, axis=1), x=mu)
    assert abs(total - 1.0) < 1e-6


def test_prior_draws_map_back_to_the_prior_mean(energy):
    n = 40_000
    flat = energy.sample_prior(jax.random.key(3), n)
    assert flat.shape == (n, 2)
    draws = jax.vmap(energy.constrain)(flat)
    mu, sigma = np.asarray(draws["mu"]), np.asarray(draws["sigma"])
    assert np.all(sigma > 0)
    assert abs(mu.mean()) < 4 * MU_SD / np.sqrt(n)
    halfnormal_mean, halfnormal_sd = np.sqrt(2 / np.pi), np.sqrt(1 - 2 / np.pi)
    # an unconstrained draw returned as is would have mean E[log sigma] = -0.64
    assert abs(sigma.mean() - halfnormal_mean) < 4 * halfnormal_sd / np.sqrt(n)
    assert abs(np.mean(sigma**2) - 1.0) < 4 * np.std(sigma**2) / np.sqrt(n)


def _posterior_means_by_quadrature():
    """E[mu | y] and E[sigma | y] in constrained space, with scipy's dblquad on the
    closed-form log posterior (sufficient statistics of the data)."""
    n, sy, syy = Y.size, Y.sum(), np.sum(Y**2)

    def log_post(sigma, mu):
        return (-0.5 * (mu / MU_SD) ** 2 - 0.5 * sigma**2 - n * np.log(sigma)
                - (syy - 2 * mu * sy + n * mu**2) / (2 * sigma**2))

    shift = log_post(0.8, 0.5)

    def moment(f):
        return integrate.dblquad(lambda s, m: f(m, s) * np.exp(log_post(s, m) - shift),
                                 -3.0, 4.0, 1e-3, 4.0, epsabs=0, epsrel=1e-9)[0]

    z = moment(lambda m, s: 1.0)
    return moment(lambda m, s: m) / z, moment(lambda m, s: s) / z


def test_mala_on_the_model_agrees_with_nuts_on_the_same_energy_and_with_quadrature(energy):
    truth = _posterior_means_by_quadrature()
    # MALA built from the model: returns constrained samples
    n_chains = 64
    mala = MCMC(ep.MALA(model=model), num_warmup=500, num_samples=1000, num_chains=n_chains,
                chain_method="vectorized", progress_bar=False)
    mala.run(jax.random.key(0), jnp.asarray(Y))
    samples = mala.get_samples(group_by_chain=True)
    assert set(samples) == {"mu", "sigma"} and samples["sigma"].shape == (n_chains, 1000)
    assert np.all(np.asarray(samples["sigma"]) > 0)
    # NumPyro's NUTS on ep's flat energy, mapped back with energy.constrain
    nuts = MCMC(NUTS(potential_fn=energy.potential_fn), num_warmup=300, num_samples=1000,
                num_chains=4, chain_method="parallel", progress_bar=False)
    nuts.run(jax.random.key(1), init_params=jnp.zeros((4, 2)))
    nuts_draws = jax.vmap(jax.vmap(energy.constrain))(nuts.get_samples(group_by_chain=True))

    for i, name in enumerate(("mu", "sigma")):
        per_chain = np.asarray(samples[name]).mean(axis=1)
        m_mala, se_mala = per_chain.mean(), per_chain.std(ddof=1) / np.sqrt(n_chains)
        dt = az.from_dict({"posterior": {name: np.asarray(nuts_draws[name])}})
        m_nuts = float(np.mean(nuts_draws[name]))
        se_nuts = float(az.mcse(dt)[name].values)
        assert abs(m_mala - truth[i]) < 4 * se_mala, (name, m_mala, truth[i], se_mala)
        assert abs(m_nuts - truth[i]) < 4 * se_nuts, (name, m_nuts, truth[i], se_nuts)
        assert abs(m_mala - m_nuts) < 4 * np.hypot(se_mala, se_nuts)
        # the comparison has power: errors are small next to the posterior spread
        assert se_mala < 0.05 * np.std(np.asarray(samples[name]))


def test_energy_from_fn_with_a_pytree():
    def fn(p):
        return 0.5 * jnp.sum(p["a"] ** 2) + 0.5 * (p["b"] - 1.0) ** 2 / 4.0

    e = ep.energy_from_fn(fn, {"a": jnp.zeros(3), "b": jnp.array(0.0)})
    assert e.dim == 4
    x = jnp.array([1.0, 2.0, 3.0, 5.0])  # ravel order: a then b
    np.testing.assert_allclose(e(x), 0.5 * 14 + 0.5 * 16 / 4.0)
    back = e.constrain(x)
    np.testing.assert_array_equal(back["a"], [1.0, 2.0, 3.0])
    np.testing.assert_allclose(e.batch(jnp.stack([x, jnp.zeros(4)])), [9.0, 0.125])
    assert ep.as_energy(e) is e and ep.as_energy(ep.targets.funnel()).dim == 10
    np.testing.assert_allclose(ep.as_energy(lambda x: jnp.sum(x**2), dim=3)(jnp.ones(3)), 3.0)
