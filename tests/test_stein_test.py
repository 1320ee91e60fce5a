"""The KSD goodness-of-fit test (issue 19, acceptance 2-3): calibrated on exact and MALA draws,
powerful against ULA's bias while R-hat is fine, on a Gaussian and a NumPyro logistic
regression; reported by ``summary`` and the sampler-bias report."""

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC

import ebm_ppl as ep
from ebm_ppl.diagnostics import stein_test

GAUSS5 = ep.targets.ill_conditioned_gaussian(d=5, kappa=10.0, seed=0)
EX41 = ep.targets.anisotropic_gaussian_2d()


def _langevin_chains(target, step_fn, h, num_chains, num_draws, thin=1):
    """Chains of a pure Langevin kernel started at exact draws: (chain, draw, dim)."""
    potential = target.energy.potential_fn

    def run(key):
        state = jax.vmap(lambda x: ep.kernels.langevin_init(x, potential))(
            target.sample(key, num_chains))

        def one(state, k):
            keys = jax.random.split(k, num_chains)
            return jax.vmap(lambda kk, s: step_fn(kk, s, potential, h)[0])(keys, state)

        def body(state, k):  # thin steps, one kept draw
            state = jax.lax.fori_loop(0, thin, lambda i, st: one(st, jax.random.fold_in(k, i)),
                                      state)
            return state, state.position

        _, xs = jax.lax.scan(body, state, jax.random.split(jax.random.fold_in(key, 1),
                                                           num_draws))
        return jnp.swapaxes(xs, 0, 1)

    return jax.jit(jax.vmap(run))


def _max_rhat(x):
    return float(az.rhat(az.from_dict({"posterior": {"x": x}}))["x"].max())


def _ula_ex41(num_seeds):
    """ULA at the seed's h = 0.015 on Example 4.1: 4 chains x 500 kept draws (2000 draws),
    every 100th step kept so that R-hat is precise."""
    run = _langevin_chains(EX41, ep.kernels.ula_step, 0.015, 4, 500, thin=100)
    xs = np.asarray(run(jax.random.split(jax.random.key(0), num_seeds)))
    tests = [stein_test(x, EX41, key=jax.random.key(s)) for s, x in enumerate(xs)]
    return tests, [_max_rhat(x) for x in xs]


def test_ula_bias_is_rejected_while_rhat_is_fine():
    tests, rhats = _ula_ex41(3)
    assert all(t.reject for t in tests), [t.p_value for t in tests]
    assert max(rhats) < 1.01, rhats
    assert "not from the target" in tests[0].reading


def test_exact_draws_are_not_rejected_and_the_bootstrap_is_the_wild_one():
    x = np.asarray(EX41.sample(jax.random.key(3), 2000)).reshape(4, 500, 2)
    res = stein_test(x, EX41, key=jax.random.key(0))
    assert res.p_value > 0.05 and not res.reject
    assert res.flip_prob == pytest.approx(1 / (8 * res.tau))
    assert "no evidence against the target" in res.reading
    # the same draws against a target with the wrong stiff variance: rejected
    wrong = ep.targets.gaussian(EX41.mean, EX41.cov * np.array([[1.0, 1.0], [1.0, 1.3]]))
    assert stein_test(x, wrong, key=jax.random.key(0)).reject


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["exact", "mala"])
def test_calibration_on_200_seeds(kind):
    """Level 0.05: the rejection rate over 200 seeds lies in [2%, 9%] (binomial sd 1.5%)."""
    seeds = 200
    if kind == "exact":
        xs = np.asarray(jax.vmap(lambda k: GAUSS5.sample(k, 2000))(
            jax.random.split(jax.random.key(0), seeds))).reshape(seeds, 4, 500, 5)
    else:
        run = _langevin_chains(GAUSS5, ep.kernels.mala_step, 0.12, 4, 500)
        xs = np.asarray(run(jax.random.split(jax.random.key(0), seeds)))
    rate = np.mean([stein_test(x, GAUSS5, key=jax.random.key(1000 + s)).reject
                    for s, x in enumerate(xs)])
    print(f"{kind}: rejection rate at 0.05 over {seeds} seeds: {rate:.3f}")
    assert 0.02 <= rate <= 0.09, rate


@pytest.mark.slow
def test_ula_power_on_200_seeds():
    tests, rhats = _ula_ex41(200)
    reject, fine = np.mean([t.reject for t in tests]), np.mean(np.asarray(rhats) < 1.01)
    print(f"ULA h=0.015: rejected in {reject:.3f} of 200 seeds; R-hat < 1.01 in {fine:.3f} "
          f"(max {max(rhats):.4f})")
    assert reject >= 0.95
    assert fine >= 0.95, max(rhats)


def logistic_regression(x, y=None):
    w = numpyro.sample("w", dist.Normal(0.0, 1.0).expand([x.shape[1]]).to_event(1))
    b = numpyro.sample("b", dist.Normal(0.0, 1.0))
    numpyro.sample("y", dist.Bernoulli(logits=x @ w + b), obs=y)


def logistic_data(n=200, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    y = rng.random(n) < 1 / (1 + np.exp(-(x @ np.array([1.0, -1.0, 0.5]) + 0.3)))
    return jnp.asarray(x), jnp.asarray(y.astype(np.float64))


@pytest.mark.slow
def test_logistic_regression_ula_rejected_mala_not():
    """Slow (two NumPyro compilations); the example `stein_diagnostics.py` runs the same in
    its quick mode in the default run (tests/test_examples.py)."""
    x, y = logistic_data()
    tables = {}
    for name, kernel in (("ULA", ep.ULA(model=logistic_regression, step_size=0.025)),
                         ("MALA", ep.MALA(model=logistic_regression))):
        mcmc = MCMC(kernel, num_warmup=500, num_samples=500, num_chains=4,
                    chain_method="vectorized", progress_bar=False)
        mcmc.run(jax.random.key(1), x, y)
        tables[name] = ep.diagnostics.summary(mcmc, stein={"key": jax.random.key(2)})
        print(name, tables[name].attrs["stein_test"], "max R-hat", tables[name]["r_hat"].max())
    for name, table in tables.items():
        assert {"r_hat", "ess_bulk", "ksd", "ksd_p"} <= set(table.columns)
        assert table["r_hat"].max() < 1.05, (name, table["r_hat"].max())
    assert tables["ULA"].attrs["stein_test"].reject, tables["ULA"].attrs["stein_test"]
    assert not tables["MALA"].attrs["stein_test"].reject, tables["MALA"].attrs["stein_test"]
    assert tables["ULA"]["ksd"].iloc[0] > 2 * tables["MALA"]["ksd"].iloc[0]


def test_bias_report_carries_the_test():
    report = ep.diagnostics.sampler_bias_report(
        EX41, key=jax.random.key(0), ula_step_sizes=(1.5e-2,), mala=True, nuts=False,
        num_chains=4, num_warmup=300, num_samples=2000, progress_bar=False)
    assert report.stein["ULA h=0.015"].reject
    assert not report.stein["MALA"].reject
    assert "ULA h=0.015: KSD" in str(report) and "not from the target" in str(report)


def test_user_errors():
    x = np.asarray(EX41.sample(jax.random.key(0), 40))
    with pytest.raises(ValueError, match="level"):
        stein_test(x, EX41, level=1.5)
    with pytest.raises(ValueError, match="flip_prob"):
        stein_test(x, EX41, flip_prob=0.9)
    with pytest.raises(ValueError, match="stein must be"):
        ep.diagnostics.summary({"x": x.reshape(2, 20, 2)}, stein=3)
