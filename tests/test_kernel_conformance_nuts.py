"""Every ep kernel against NUTS, as a table (issue 12): on the same model, the same NumPyro
calls give the same observable behaviour (keys and shapes of ``get_samples``, supports of
constrained sites, ``group_by_chain``, ``thinning``, ``Predictive``, ``init_to_value``, warm
restart, ``extra_fields``). Small model, few draws: this is about behaviour, not statistics."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC, NUTS, Predictive
from numpyro.infer.util import init_to_value

import ebm_ppl as ep

X = jnp.linspace(-1.0, 1.0, 12)
Y = 1.0 + 2.0 * X + 0.3 * jnp.asarray(np.random.default_rng(0).normal(size=12))
CHAINS, WARMUP, SAMPLES, THIN = 2, 20, 10, 2
START = {"a": 0.5, "b": 1.5, "s": 2.0}


def model(x, y=None):
    a = numpyro.sample("a", dist.Normal(0.0, 5.0))
    b = numpyro.sample("b", dist.Normal(0.0, 5.0))
    s = numpyro.sample("s", dist.HalfNormal(2.0))
    with numpyro.plate("n", x.shape[0]):
        numpyro.sample("y", dist.Normal(a + b * x, s), obs=y)


KERNELS = {
    "NUTS": lambda **kw: NUTS(model, **kw),
    "MALA": lambda **kw: ep.MALA(model, step_size=0.01, **kw),
    "RWMH": lambda **kw: ep.RWMH(model, step_size=0.05, **kw),
    "ULA": lambda **kw: ep.ULA(model, step_size=1e-3, **kw),
    "Jarzynski": lambda **kw: ep.Jarzynski(model, step_size=1e-3, **kw),
    "ParallelTempering": lambda **kw: ep.ParallelTempering(model, num_replicas=2, **kw),
}


def _shapes(tree):
    return {k: tuple(np.shape(v)) for k, v in sorted(tree.items())}


def behaviour(make):
    """What a NumPyro user observes, as plain values that can be compared across kernels."""
    out = {}
    mcmc = MCMC(make(), num_warmup=WARMUP, num_samples=SAMPLES * THIN, num_chains=CHAINS,
                thinning=THIN, chain_method="vectorized", progress_bar=False)
    mcmc.run(jax.random.key(0), X, Y, extra_fields=("potential_energy", "accept_prob"))
    flat, grouped = mcmc.get_samples(), mcmc.get_samples(group_by_chain=True)
    out["get_samples"] = _shapes(flat)
    out["group_by_chain"] = _shapes(grouped)
    out["extra_fields"] = _shapes(mcmc.get_extra_fields(group_by_chain=True))
    out["support s > 0"] = bool(np.all(np.asarray(flat["s"]) > 0))
    out["finite"] = all(bool(np.all(np.isfinite(np.asarray(v)))) for v in flat.values())
    pred = Predictive(model, posterior_samples=flat)(jax.random.key(1), X)
    out["Predictive"] = _shapes(pred)
    # warm restart: the chain continues from its last state, with the same shapes
    last_i = np.asarray(mcmc.last_state.i)
    mcmc.post_warmup_state = mcmc.last_state
    mcmc.run(mcmc.post_warmup_state.rng_key, X, Y)
    out["warm restart shapes"] = _shapes(mcmc.get_samples(group_by_chain=True))
    out["warm restart advances i by"] = np.unique(np.asarray(mcmc.last_state.i) - last_i).tolist()
    # init_to_value: the chain starts where asked (in unconstrained space)
    state = make(init_strategy=init_to_value(values=START)).init(
        jax.random.key(2), 10, None, (X, Y), {})
    out["init_to_value"] = {k: round(float(v), 6) for k, v in sorted(state.z.items())}
    return out


@pytest.fixture(scope="module")
def nuts_behaviour():
    return behaviour(KERNELS["NUTS"])


# parallel tempering (a round = a step at every rung) costs 3x the others: default run without it
@pytest.mark.parametrize("name", [
    pytest.param(k, marks=[pytest.mark.slow] if k == "ParallelTempering" else [])
    for k in KERNELS if k != "NUTS"])
def test_kernel_behaves_like_nuts(name, nuts_behaviour):
    got = behaviour(KERNELS[name])
    expected = dict(nuts_behaviour)
    # the table: every row as NUTS, with the known values spelled out so a regression of
    # NUTS's side (a NumPyro upgrade) shows too
    assert expected["get_samples"] == {"a": (CHAINS * SAMPLES,), "b": (CHAINS * SAMPLES,),
                                       "s": (CHAINS * SAMPLES,)}
    assert expected["init_to_value"] == {"a": 0.5, "b": 1.5, "s": round(float(np.log(2.0)), 6)}
    assert expected["warm restart advances i by"] == [SAMPLES * THIN]
    rows = sorted(expected)
    mismatched = [(row, got.get(row), expected[row]) for row in rows if got.get(row) != expected[row]]
    assert not mismatched, mismatched
