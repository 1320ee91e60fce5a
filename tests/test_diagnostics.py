"""Diagnostics against known answers: Kish ESS of known weights, k-hat of known tails, KL and
Fisher of seed eq. 47 at z = 2 (tests/groundtruth.md), mode masses of the eq. 4 mixture, ULA's bias
on Example 4.1, and ArviZ summaries of our MCMC runs."""

import math
import types
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ebm_ppl as ep
from ebm_ppl import diagnostics as dg

KL_Z2, FISHER_Z2 = 0.4337803501, 1.244e-5


# -- importance weights -----------------------------------------------------------------------

def test_kish_ess_of_known_weights():
    assert dg.kish_ess(np.zeros(100)) == pytest.approx(100.0)
    assert dg.kish_ess(np.log([1.0, 2.0, 3.0])) == pytest.approx(36.0 / 14.0)
    assert dg.kish_ess(np.log([1.0, 2.0, 3.0]) + 700.0) == pytest.approx(36.0 / 14.0)  # no overflow
    assert dg.kish_ess(np.array([0.0, 0.0, -np.inf, -np.inf])) == pytest.approx(2.0)


@pytest.mark.parametrize("k_true", [0.3, 0.6, 0.85])
def test_pareto_khat_of_gaussian_ratio_tail(k_true):
    """q = N(0,1), p = N(0, s^2): w = p/q has tail index k = 1 - 1/s^2."""
    x = np.random.default_rng(7).standard_normal(20_000)
    log_w = 0.5 * x**2 * k_true  # 1 - 1/s^2 = k_true
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = dg.pareto_khat(log_w)
    assert abs(res.khat - k_true) < 4 * res.se, res
    expected = "good" if k_true < 0.5 else ("ok" if k_true < 0.7 else "bad")
    assert res.diagnosis == expected
    warned = [w for w in caught if issubclass(w.category, dg.ImportanceWeightWarning)]
    assert bool(warned) == (expected != "good")


def test_pareto_khat_exact_pareto_tail_and_sign_convention():
    u = np.random.default_rng(3).uniform(size=20_000)
    log_w = -0.5 * np.log1p(-u)  # w = (1-u)^(-1/2): Pareto tail with k = 0.5 exactly
    res = dg.pareto_khat(log_w, warn=False)
    assert abs(res.khat - 0.5) < 4 * res.se
    # bounded weights (p narrower than q) give k < 0; psislw fed un-negated weights would too,
    # so the heavy tail above is what distinguishes the right sign convention
    assert dg.pareto_khat(-0.25 * np.random.default_rng(4).standard_normal(5000) ** 2).khat < 0
    smoothed, khat = dg.psis(log_w)
    assert khat == pytest.approx(res.khat) and np.exp(smoothed).sum() == pytest.approx(1.0)
    assert smoothed.max() < log_w.max() - np.log(np.exp(log_w).sum())  # the tail was smoothed


def test_pareto_khat_of_tied_weights_after_resampling():
    """Equal (resampled) or group-wise constant weights are bounded: no tail, k-hat = -inf."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", dg.ImportanceWeightWarning)
        for log_w in (np.zeros(1024), np.repeat(np.linspace(-0.1, 0.1, 16), 64)):
            res = dg.pareto_khat(log_w)
            assert res.khat == -np.inf and res.diagnosis == "good"
            assert dg.psis(log_w)[0] == pytest.approx(log_w - np.log(np.exp(log_w).sum()))


def _is_draws(seed, n=20_000):
    """Draws from q = N(0, 2^2) weighted toward p = N(1, 0.5^2) (unnormalized log weights)."""
    x = 2.0 * np.random.default_rng(seed).standard_normal(n)
    log_w = -0.5 * ((x - 1.0) / 0.5) ** 2 + 0.5 * (x / 2.0) ** 2
    return x, log_w


def test_weighted_mean_self_normalized():
    x, log_w = _is_draws(0)
    est = dg.weighted_mean(np.stack([x, x**2], axis=1), log_w)
    assert np.all(np.abs(est.z_score([1.0, 1.25])) < 4), est
    plain = dg.weighted_mean(x)  # ignoring the weights is the wrong method
    assert abs(plain.z_score(1.0)) > 20


def test_weighted_mean_chains_uses_autocorrelation():
    """AR(1) chains x_t = phi x_{t-1} + e_t: the MCSE is sqrt((1+phi)/(1-phi)) times the iid one."""
    phi, rng = 0.9, np.random.default_rng(1)
    e = rng.standard_normal((8, 5000))
    x = np.zeros_like(e)
    x[:, 0] = e[:, 0] / math.sqrt(1 - phi**2)
    for t in range(1, e.shape[1]):
        x[:, t] = phi * x[:, t - 1] + e[:, t]
    est = dg.weighted_mean(x, chains=True)
    iid = x.std() / math.sqrt(x.size)
    assert est.se / iid == pytest.approx(math.sqrt((1 + phi) / (1 - phi)), rel=0.2)


def test_resample_to_unweighted_datatree():
    x, log_w = _is_draws(2, n=10_000)
    idx = dg.systematic_indices(jax.random.key(0), log_w)
    counts = np.bincount(idx, minlength=x.size)
    expected = x.size * dg.normalized_weights(log_w)
    assert np.all(np.abs(counts - expected) < 1.0 + 1e-9)  # systematic: floor or ceil of n*w
    dt = dg.resample({"x": x}, log_w, key=jax.random.key(0))
    post = dt["posterior"].to_dataset()
    assert post["x"].shape == (1, x.size)
    se = 0.5 / math.sqrt(dg.kish_ess(log_w))
    assert abs(float(post["x"].mean()) - 1.0) < 4 * se
    assert dt.attrs["kish_ess"] == pytest.approx(dg.kish_ess(log_w))


# -- divergences (seed eq. 46-48, Remark 3.1) -------------------------------------------------

def test_quadrature_matches_groundtruth_table():
    table = {0.5: (0.03092977559, 7.264e-7), 1.0: (0.1201143933, 2.946e-6),
             2.0: (KL_Z2, FISHER_Z2), 8.0: (3.307168722, 4.989e-4)}
    for z, (kl, fisher) in table.items():
        got = dg.divergences_by_quadrature(*map(dg.log_density, dg.remark31_mixtures(z)), -15, 15)
        assert got[0] == pytest.approx(kl, rel=1e-8)
        assert got[1] == pytest.approx(fisher, rel=1e-3)


def test_kl_and_fisher_from_samples_at_z2():
    rho1, rho2 = dg.remark31_mixtures(2.0)
    log_p, log_q = dg.log_density(rho1), dg.log_density(rho2)
    x = rho1.sample(jax.random.key(0), 20_000)
    kl = dg.kl_divergence(x, log_p, log_q)
    assert abs(kl.z_score(KL_Z2)) < 3, kl
    reverse = dg.kl_divergence(rho2.sample(jax.random.key(1), 20_000), log_q, log_p)
    assert abs(reverse.z_score(KL_Z2)) > 3  # KL(rho2||rho1) ~ 0.33 is another quantity
    # Remark 3.1: D_F's integrand lives between the modes, where rho1 has no samples
    assert dg.fisher_divergence(x[:10_000], log_p, log_q).value < 0.1 * FISHER_Z2
    # weighted draws from a proposal that covers the valley estimate it honestly
    y = 4.0 * jax.random.normal(jax.random.key(2), (20_000, 1))
    log_w = jax.vmap(log_p)(y) + 0.5 * (y[:, 0] / 4.0) ** 2
    fisher = dg.fisher_divergence(y, log_p, log_q, log_weights=log_w)
    assert abs(fisher.z_score(FISHER_Z2)) < 3, fisher
    kl_w = dg.kl_divergence(y, log_p, log_q, log_weights=log_w)
    assert abs(kl_w.z_score(KL_Z2)) < 3, kl_w


# -- mode masses -------------------------------------------------------------------------------

def test_mode_masses_of_eq4_mixture():
    target = ep.targets.figure1_mixture()
    truth = 0.15 / 0.85
    x = target.sample(jax.random.key(0), 40_000)
    masses = dg.mode_masses(x, target)
    assert masses.value.shape == (2,) and masses.value.sum() == pytest.approx(1.0)
    assert abs(masses.z_score([1 - truth, truth])[1]) < 4, masses
    # weighted draws from a broad proposal N(2.5, 3^2)
    y = 2.5 + 3.0 * np.random.default_rng(5).standard_normal((40_000, 1))
    log_w = -np.asarray(jax.vmap(target)(jnp.asarray(y))) + 0.5 * ((y[:, 0] - 2.5) / 3.0) ** 2
    weighted = dg.mode_masses(y, target, log_weights=log_w)
    assert abs(weighted.z_score(truth)[1]) < 4, weighted
    assert abs(dg.mode_masses(y, target).z_score(truth)[1]) > 10  # weights ignored: wrong
    # the barrier of the energy as the basin boundary works the same way
    barrier = lambda p: (p[..., 0] > 3.42).astype(int)  # noqa: E731
    assert abs(dg.mode_masses(x, barrier, num_modes=2).z_score(truth)[1]) < 4


def test_mode_masses_of_stuck_chains_have_large_se():
    labels = np.zeros((4, 1000), dtype=int)
    labels[2:] = 1  # two chains never left mode 0, two never left mode 1
    est = dg.mode_masses(labels, chains=True, num_modes=2)
    assert est.value[1] == pytest.approx(0.5) and est.se[1] > 0.1
    iid = dg.mode_masses(labels.ravel(), num_modes=2)
    assert iid.se[1] < 0.02  # pretending independence would be badly overconfident


# -- sampler bias (Example 4.1) and summaries -------------------------------------------------

@pytest.fixture(scope="module")
def bias_report():
    return dg.sampler_bias_report(ep.targets.anisotropic_gaussian_2d(), key=jax.random.key(0),
                                  ula_step_sizes=(0.01, 0.015), num_chains=8, num_warmup=500,
                                  num_samples=2000, progress_bar=False)


def test_bias_report_example41(bias_report):
    t = bias_report.table
    assert set(t.index.get_level_values(0)) == {"ULA h=0.01", "ULA h=0.015", "MALA", "NUTS"}
    assert np.all(np.abs(t["z_theory"]) < 4), t[np.abs(t["z_theory"]) >= 4]
    for h in (0.01, 0.015):  # the stiff axis is inflated exactly as eq. 73 says ...
        row = t.loc[(f"ULA h={h:g}", "var_pc[1]")]
        assert row["theory"] == pytest.approx(0.01 / (1 - h / 0.02))
        assert abs(row["z_exact"]) > 10  # ... and is not the exact variance
    for name in ("MALA", "NUTS"):
        assert np.all(np.abs(t.loc[name]["z_exact"]) < 4)
    assert "ULA h=0.015" in str(bias_report)


def test_summary_and_convergence_of_mcmc_runs(bias_report):
    dt = dg.to_datatree({"x": bias_report.draws["NUTS"]})
    table = dg.summary(dt)
    assert {"r_hat", "ess_bulk", "ess_tail", "mcse_mean"} <= set(table.columns)
    conv = dg.convergence(dt)["x"]
    assert np.all(conv["r_hat"] < 1.02) and np.all(conv["ess_bulk"] > 1000)
    # a numpyro MCMC object goes through az.from_numpyro
    from numpyro.infer import MCMC
    target = ep.targets.anisotropic_gaussian_2d()
    mcmc = MCMC(ep.MALA(potential_fn=target), num_warmup=200, num_samples=300, num_chains=2,
                chain_method="vectorized", progress_bar=False)
    mcmc.run(jax.random.key(1), init_params=target.sample(jax.random.key(2), 2))
    assert np.all(np.isfinite(dg.summary(mcmc)["r_hat"]))


def test_weighted_summary_of_a_weighted_result():
    x, log_w = _is_draws(3)
    result = types.SimpleNamespace(samples=x[:, None], log_weights=log_w)
    table = dg.summary(result)
    assert list(table.index) == ["x[0]"]
    row = table.iloc[0]
    assert abs(row["mean"] - 1.0) < 4 * row["mcse_mean"]
    assert row["sd"] == pytest.approx(0.5, rel=0.05)
    assert row["ess_kish"] == pytest.approx(dg.kish_ess(log_w)) and row["pareto_k"] < 0.5
    dt = dg.to_datatree(result)
    assert dt["sample_stats"].to_dataset()["log_weight"].shape == (1, x.size)


# -- bad input ---------------------------------------------------------------------------------

@pytest.mark.parametrize("call, match", [
    (lambda: dg.kish_ess([0.0, np.nan]), "log_weights"),
    (lambda: dg.kish_ess([-np.inf, -np.inf]), "log_weights"),
    (lambda: dg.weighted_mean(np.ones(3), np.zeros(4)), "log_weights"),
    (lambda: dg.weighted_mean(np.array([1.0, np.inf])), "values"),
    (lambda: dg.pareto_khat(np.zeros(5)), "log_weights"),
    (lambda: dg.kl_divergence(np.zeros(10), "p", lambda x: x[0]), "log_p"),
    (lambda: dg.fisher_divergence(np.full(10, np.nan), lambda x: x[0], lambda x: x[0]), "samples"),
    (lambda: dg.mode_masses(np.array([0, 1, 2]), num_modes=2), "labels"),
    (lambda: dg.resample(np.zeros(3), np.zeros(3), key=0), "key"),
    (lambda: dg.sampler_bias_report(ep.targets.anisotropic_gaussian_2d(), key=jax.random.key(0),
                                    ula_step_sizes=(0.03,)), "ula_step_sizes"),
    (lambda: dg.sampler_bias_report(ep.targets.anisotropic_gaussian_2d(), key=jax.random.key(0),
                                    num_chains=0), "num_chains"),
    (lambda: dg.to_datatree(object()), "DataTree"),
])
def test_bad_input_raises_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()
