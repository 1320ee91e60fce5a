"""Weighted results cannot be summarized as unweighted (issue 12): one rule for every result
with weights (``ep.diagnostics.weighted_datatree``): ``posterior`` is an equal-weight resample
of size ~ Kish ESS, the weighted walkers and their weights have their own group, and
``ep.diagnostics.summary`` gives the same weighted numbers for a result, its tree and its
netCDF file."""

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ebm_ppl as ep
from ebm_ppl import diagnostics as dg
from test_evidence import EIGHT_SIGMA, EIGHT_Y, eight_schools


@pytest.fixture(scope="module", params=["is", "default"])
def schools(request):
    kwargs = {"method": "is", "num_walkers": 4096} if request.param == "is" else {
        "num_walkers": 512}
    res = ep.log_evidence(eight_schools, jnp.asarray(EIGHT_SIGMA), y=jnp.asarray(EIGHT_Y),
                          key=jax.random.key(0), progress_bar=False, **kwargs)
    return request.param, res


def _weighted_mu(res):
    w = res.weights
    mu = np.asarray(res.samples["mu"])
    mean = float(w @ mu)
    sd = float(np.sqrt(w @ (mu - mean) ** 2))
    return mean, sd / np.sqrt(dg.kish_ess(res.log_weights)), mu


def test_every_summary_of_a_weighted_result_is_weighted(schools, tmp_path):
    method, res = schools
    mean, se, mu = _weighted_mu(res)
    kish = dg.kish_ess(res.log_weights)
    dt = res.to_arviz()
    # posterior: the equal-weight resample, of size round(Kish ESS)
    assert dt["posterior"]["mu"].shape == (1, int(round(kish)))
    assert dt.attrs["kish_ess"] == pytest.approx(kish)
    assert dt.attrs["resampled_from"] == res.num_walkers
    # ArviZ on it: the weighted mean within 4 se; an ESS about the Kish ESS, not n
    az_row = az.summary(dt, var_names=["mu"]).loc["mu"]
    assert abs(az_row["mean"] - mean) < 4 * se, (az_row["mean"], mean, se)
    assert az_row["ess_bulk"] < 1.5 * kish + 10, (az_row["ess_bulk"], kish)
    # ep.diagnostics.summary of the result, its tree, and both netCDF files: identical
    nc_tree = tmp_path / "tree.nc"
    dt.to_netcdf(nc_tree, engine="h5netcdf")
    nc_result = res.save(tmp_path / "result.nc")
    tables = [dg.summary(res), dg.summary(dt), dg.summary(nc_tree), dg.summary(str(nc_result)),
              dg.summary(ep.EvidenceResult.load(nc_result))]
    for table in tables[1:]:
        np.testing.assert_allclose(table.loc["mu", ["mean", "sd", "mcse_mean", "ess_kish"]],
                                   tables[0].loc["mu", ["mean", "sd", "mcse_mean", "ess_kish"]],
                                   rtol=1e-10)
    assert tables[0].loc["mu", "mean"] == pytest.approx(mean, rel=1e-10)
    assert dg.summary(dt, var_names=["mu"]).index.tolist() == ["mu"]
    # the weighted walkers and their weights are kept, in their own group
    np.testing.assert_array_equal(dt["weighted_posterior"]["log_weight"].values[0],
                                  res.log_weights)
    if method == "is":
        # the case the rule exists for: dropping the weights is off by far more than 4 se
        assert abs(mu.mean() - mean) > 10 * se, (mu.mean(), mean, se)


def test_loo_runs_on_an_evidence_result(schools):
    _, res = schools
    assert set(res.log_likelihood) == {"obs"}
    assert res.log_likelihood["obs"].shape == (res.num_walkers, 8)
    dt = res.to_arviz()
    assert dt["log_likelihood"]["obs"].shape == dt["posterior"]["mu"].shape + (8,)
    loo = az.loo(dt)
    assert np.isfinite(loo.elpd) and -60 < loo.elpd < -25, loo


def test_weighted_datatree_rule_on_known_weights():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 2))
    lw = 1.5 * x[:, 0]  # tilts N(0, 1) to N(1.5, 1) in the first coordinate
    dt = dg.weighted_datatree(x, lw)
    kish = dg.kish_ess(lw)
    post = dt["posterior"]["x"].values
    assert post.shape == (1, int(round(kish)), 2)
    assert abs(post[0, :, 0].mean() - 1.5) < 4 / np.sqrt(kish)
    table = dg.summary(dt)
    assert table.loc["x[0]", "mean"] == pytest.approx(float(np.exp(lw - lw.max()) @ x[:, 0]
                                                            / np.exp(lw - lw.max()).sum()))
    # unweighted trees are unchanged: ArviZ's summary
    plain = az.from_dict({"posterior": {"x": x.reshape(4, 1000, 2)}})
    assert "r_hat" in dg.summary(plain).columns


def test_jarzynski_mcmc_summaries_use_its_weights():
    from numpyro.infer import MCMC

    t = ep.targets.anisotropic_gaussian_2d()
    n = 64
    mcmc = MCMC(ep.Jarzynski(potential_fn=t, step_size=0.005), num_warmup=0, num_samples=20,
                num_chains=n, chain_method="vectorized", progress_bar=False)
    mcmc.run(jax.random.key(7), init_params=t.sample(jax.random.key(8), n),
             extra_fields=("log_weight",))
    lw = np.asarray(mcmc.get_extra_fields()["log_weight"])
    x = np.asarray(mcmc.get_samples())
    want = dg.weighted_summary(x, lw, warn=False)
    got = dg.summary(mcmc, warn=False)
    np.testing.assert_allclose(got[["mean", "sd", "ess_kish"]].values,
                               want[["mean", "sd", "ess_kish"]].values, rtol=1e-12)
    assert "weighted_posterior" in dg.to_datatree(mcmc).children
    mcmc.run(jax.random.key(7), init_params=t.sample(jax.random.key(8), n))  # no log_weight
    with pytest.warns(UserWarning, match="extra_fields=\\('log_weight',\\)"):
        dg.summary(mcmc)


def test_weighted_training_walkers_follow_the_rule():
    rng = np.random.default_rng(1)
    walkers = rng.normal(size=(2000, 2))
    lw = 0.8 * walkers[:, 1]
    res = ep.TrainResult(params={}, history={"iteration": np.arange(3), "loss": np.zeros(3)},
                         walkers=walkers, log_weights=lw, log_z=None, method="jarzynski")
    dt = res.to_arviz()
    assert {"training", "posterior", "weighted_posterior"} <= set(dt.children)
    assert dt["posterior"]["x"].shape == (1, int(round(dg.kish_ess(lw))), 2)
    table = dg.summary(dt)
    np.testing.assert_allclose(table["mean"].values,
                               dg.weighted_summary(walkers, lw)["mean"].values, rtol=1e-12)
    unweighted = ep.TrainResult(params={}, history={"iteration": np.arange(3)}, walkers=walkers,
                                log_weights=None, log_z=None, method="pcd")
    assert set(unweighted.to_arviz().children) == {"training"}
