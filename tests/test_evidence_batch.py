"""``ep.log_evidence_batch`` (issue 14): K data sets in one compiled run, each data set's result
the unbatched ``ep.log_evidence`` with the key ``split(key, K)[k]`` (log Z to 1e-6 in float64;
the runs are chaotic, so a wrong key, a wrong data set or a reordered reduction would move
log Z by about its standard error, far beyond the tolerance)."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import ebm_ppl as ep

jax.config.update("jax_enable_x64", True)


def regression(x, y=None):
    a = numpyro.sample("a", dist.Normal(0.0, 1.0))
    b = numpyro.sample("b", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    numpyro.sample("y", dist.Normal(a + x @ b, sigma), obs=y)


def _data(k, n=12):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(k, n, 2))
    noise = np.array([0.3, 1.0, 3.0])[:k, None] * rng.normal(size=(k, n))
    return jnp.asarray(x), jnp.asarray(0.5 + x @ np.array([1.0, -0.7]) + noise)


RUN = dict(num_walkers=64, progress_bar=False)


# MALA without the probe in the default run (half the compile time of HMC); the library's
# defaults (HMC, bias probe) in the slow run
@pytest.mark.parametrize("method, bias_check", [
    ("mala", False), pytest.param("hmc", True, marks=pytest.mark.slow)])
def test_each_data_set_matches_its_unbatched_run(method, bias_check):
    x, y = _data(3)
    key = jax.random.key(11)
    run = dict(RUN, method=method, bias_check=bias_check)
    batch = ep.log_evidence_batch(regression, x, y=y, key=key, **run)
    assert len(batch) == 3 and batch.log_z.shape == (3,)
    keys = jax.random.split(key, 3)
    stages = set()
    for k in range(3):
        one = ep.log_evidence(regression, x[k], y=y[k], key=keys[k], **run)
        got = batch[k]
        assert abs(got.log_z - one.log_z) <= 1e-6, (k, got.log_z, one.log_z)
        assert abs(got.log_z_se - one.log_z_se) <= 1e-6
        np.testing.assert_allclose(got.schedule, one.schedule, atol=1e-9)
        assert got.num_gradient_evals == one.num_gradient_evals
        assert got.reliable == one.reliable and got.data_fingerprint == one.data_fingerprint
        np.testing.assert_allclose(got.samples["sigma"], one.samples["sigma"], atol=1e-6)
        if bias_check:
            assert abs(got.log_z_probe - one.log_z_probe) <= 1e-6
        stages.add(got.num_stages)
    # the data sets differ (noise 0.3, 1, 3): their log Z and, here, their schedules too
    assert np.ptp(batch.log_z) > 10 * batch.log_z_se.max()
    assert len(stages) > 1, "all data sets took the same number of stages: masking untested"
    # K keys given explicitly: the same runs
    again = ep.log_evidence_batch(regression, x, y=y, key=keys, **run)
    np.testing.assert_array_equal(again.log_z, batch.log_z)
    assert batch.wall_time >= batch.compile_time >= 0.0


def _one(y):
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)


@pytest.mark.parametrize("call, match", [
    (lambda: ep.log_evidence_batch(_one, y=jnp.zeros(()), key=jax.random.key(0)),
     "model keyword argument 'y' is a scalar array"),
    (lambda: ep.log_evidence_batch(regression, jnp.zeros((3, 5, 2)), y=jnp.zeros((4, 5)),
                                   key=jax.random.key(0)), "same leading axis"),
    (lambda: ep.log_evidence_batch(_one, key=jax.random.key(0)), "needs the data"),
    (lambda: ep.log_evidence_batch(_one, jnp.zeros((3, 5)), key=jax.random.split(
        jax.random.key(0), 4)), "key must be one key or 3 keys"),
    (lambda: ep.log_evidence_batch(_one, jnp.zeros((3, 5)), key=jax.random.key(0),
                                   method="ti"), "method='ti'"),
    (lambda: ep.log_evidence_batch(_one, jnp.full((2, 5), np.nan), key=jax.random.key(0)),
     "NaN"),
    (lambda: ep.log_evidence_batch(3, jnp.zeros((2, 5)), key=jax.random.key(0)), "model"),
    (lambda: ep.log_evidence_batch(_one, jnp.zeros((2, 5)), key=jax.random.key(0),
                                   keep_modes=True, bar=True),
     "does not offer bar, keep_modes .options of ep.log_evidence"),
])
def test_bad_input_is_a_clear_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_calibration_curve_bins_and_intervals():
    from scipy.stats import beta

    from ebm_ppl.evidence.sbc import calibration_curve, posterior_model_probs

    rng = np.random.default_rng(3)
    p = rng.uniform(size=4000)
    calibrated = calibration_curve(p, rng.uniform(size=p.size) < p, num_bins=5)
    assert calibrated["count"].sum() == 4000 and len(calibrated["count"]) == 5
    covered = (calibrated["lower"] <= calibrated["predicted"]) & \
        (calibrated["predicted"] <= calibrated["upper"])
    assert covered.sum() >= 4  # 90% intervals
    # |observed - predicted| within the 99.9% binomial range in every bin
    se = np.sqrt(calibrated["predicted"] * (1 - calibrated["predicted"]) / calibrated["count"])
    assert np.all(np.abs(calibrated["observed"] - calibrated["predicted"]) < 3.3 * se)
    # overconfident probabilities (the truth follows p, the forecast says p^3 / (...)) are caught
    sharp = p ** 3 / (p ** 3 + (1 - p) ** 3)
    over = calibration_curve(sharp, rng.uniform(size=p.size) < p, num_bins=5)
    outside = (over["predicted"] < over["lower"]) | (over["predicted"] > over["upper"])
    assert outside.sum() >= 2, over
    # the Jeffreys interval of one bin, by hand
    small = calibration_curve([0.1, 0.15, 0.12], [True, False, False], num_bins=5)
    assert small["count"].tolist() == [3]
    np.testing.assert_allclose(small["lower"][0], beta.ppf(0.05, 1.5, 2.5))
    np.testing.assert_allclose(small["upper"][0], beta.ppf(0.95, 1.5, 2.5))
    # posterior model probabilities: softmax of log Z + log prior
    probs = posterior_model_probs([[0.0, np.log(3.0)]], prior_probs=[0.75, 0.25])
    np.testing.assert_allclose(probs, [[0.5, 0.5]])
