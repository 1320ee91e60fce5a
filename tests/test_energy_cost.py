"""``energy_from_model`` computes NumPyro's potential with fewer operations (issue 14, item 5).

NumPyro (>= 0.22) checks at every log-prob call that the value lies in the support, and its
Bernoulli-with-logits log-prob guards against infinite logits; ``energy_from_model`` skips the
support checks that concern the value alone (the data are checked once per call) and writes
Bernoulli's log-prob as ``y l - softplus(l)``. These tests pin that the numbers (values and
gradients) stay NumPyro's on models that exercise every branch (fixed and parameter-dependent
supports, wrapped distributions, masks, subsampling scales, factors, transforms), that a
parameter-dependent support is still enforced, that out-of-support data are still refused,
and that the logistic regression's program carries no per-observation checks.
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro import handlers
from numpyro.infer.util import potential_energy

import ebm_ppl as ep

RNG = np.random.default_rng(3)
X = jnp.asarray(RNG.normal(size=(40, 3)))
YB = jnp.asarray((RNG.uniform(size=40) < 0.4).astype(np.float64))
YC = jnp.asarray(RNG.uniform(0.0, 1.5, size=40))


def logistic(x, y=None):
    b = numpyro.sample("b", dist.Normal(0.0, 1.0).expand([x.shape[1]]).to_event(1))
    numpyro.sample("y", dist.Bernoulli(logits=x @ b), obs=y)


def logistic_event(x, y=None):  # Independent(BernoulliLogits), a Gamma scale on the logits
    b = numpyro.sample("b", dist.Normal(0.0, 1.0).expand([x.shape[1]]).to_event(1))
    s = numpyro.sample("s", dist.Gamma(2.0, 2.0))
    numpyro.sample("y", dist.Bernoulli(logits=s * (x @ b)).to_event(1), obs=y)


def dependent_support(y):  # the data's support depends on a parameter: Uniform(0, theta)
    theta = numpyro.sample("theta", dist.Gamma(3.0, 1.0))
    with numpyro.plate("n", y.shape[0]):
        numpyro.sample("y", dist.Uniform(0.0, theta), obs=y)


def masked_scaled_factor(x, y):  # a mask, a subsampling scale, a factor, a Beta latent
    p = numpyro.sample("p", dist.Beta(2.0, 3.0))
    w = numpyro.sample("w", dist.Normal(0.0, 1.0))
    with handlers.mask(mask=jnp.arange(y.shape[0]) % 3 != 0):
        numpyro.sample("y", dist.Bernoulli(logits=w * x[:, 0] + jnp.log(p)), obs=y)
    with handlers.scale(scale=2.5):
        numpyro.sample("z", dist.Normal(w, 1.0), obs=x[:, 1])
    numpyro.factor("penalty", -0.5 * w**2)


CASES = [(logistic, (X, YB)), (logistic_event, (X, YB)), (dependent_support, (YC,)),
         (masked_scaled_factor, (X, YB))]


@pytest.mark.filterwarnings("ignore:Out-of-support")  # NumPyro's random init tries
@pytest.mark.parametrize("model, args", CASES, ids=lambda c: getattr(c, "__name__", ""))
def test_values_and_gradients_are_numpyros(model, args):
    energy = ep.energy_from_model(model, *args)
    pts = jnp.asarray(np.random.default_rng(0).normal(0.0, 0.7, size=(4, energy.dim)))

    def numpyro_u(z):
        return potential_energy(model, args, {}, energy.structure.unravel_dict(z))

    got = jax.vmap(jax.value_and_grad(energy.potential_fn))(pts)
    want = jax.vmap(jax.value_and_grad(numpyro_u))(pts)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-10, atol=1e-12)
    parts = jax.vmap(lambda z: energy.log_prior_fn(z) + energy.log_likelihood_fn(z))(pts)
    np.testing.assert_allclose(parts, -want[0], rtol=1e-12, atol=1e-12)


@pytest.mark.filterwarnings("ignore:Out-of-support")  # NumPyro's warning at eager calls
def test_a_parameter_dependent_support_is_still_enforced():
    energy = ep.energy_from_model(dependent_support, YC)
    inside, outside = jnp.log(jnp.array([2.0])), jnp.log(jnp.array([1.2]))  # max(YC) ~ 1.5
    assert np.isfinite(float(energy(inside)))
    assert float(energy(outside)) == np.inf
    assert float(energy.log_likelihood_fn(outside)) == -np.inf


def test_out_of_support_data_are_still_refused():
    """By NumPyro's checks, on a first call (a new structure) and on a later call (a cached
    structure, new data of the same shapes: ``checked_potential``)."""
    bad = YB.at[0].set(0.5)
    with pytest.warns(UserWarning, match="Out-of-support"), pytest.raises(ValueError):
        ep.energy_from_model(logistic, X[:7], y=bad[:7])
    ep.energy_from_model(logistic, X, y=YB)
    with pytest.raises(ValueError, match="not finite"):
        ep.energy_from_model(logistic, X, y=bad)


def test_the_logistic_regression_program_has_no_per_observation_checks():
    """NumPyro's own program tests every observation for finiteness and support (the
    ``is_finite`` of its Bernoulli guard, ``ne ... inf`` of the support check); ours does
    neither, hence its cost (``benchmarks/model_gradient_cost.py``: 1.9x -> ~1.0x of a
    hand-written log density)."""
    energy = ep.energy_from_model(logistic, X, y=YB)
    b = jnp.zeros(3)
    ours = str(jax.make_jaxpr(jax.value_and_grad(energy.potential_fn))(b))
    theirs = str(jax.make_jaxpr(jax.value_and_grad(
        lambda z: potential_energy(logistic, (X,), {"y": YB}, {"b": z})))(b))
    assert "is_finite" in theirs and "is_finite" not in ours
    assert "bool[40]" in theirs and "bool[40]" not in ours.split("custom_jvp_call")[0]
