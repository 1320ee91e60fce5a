"""Acceptance tests of issue 3: log Z and evidence against exact values (tests/groundtruth.md).

Every estimate is checked against the exact value both with the issue's absolute tolerance and
in units of its own reported standard error (|err| < 4 se), so an over-optimistic error bar
fails too. Seeds are fixed; walker counts are chosen so the absolute tolerance is at least
~4 expected standard errors.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC

import ebm_ppl as ep


def check(res, exact, tol, n_se=4.0):
    err = res.log_z - exact
    assert abs(err) < tol, f"|{res.log_z:.4f} - {exact:.4f}| >= {tol}\n{res}"
    assert abs(err) < n_se * res.log_z_se, \
        f"error {err:.4f} > {n_se} se ({res.log_z_se:.4f})\n{res}"
    return err


def weighted_mass(res, target, component):
    idx = np.asarray(target.mode_index(jnp.asarray(res.samples)))
    return float(np.sum(res.weights * (idx == component)))


# -- 1. ill-conditioned Gaussian, d = 10, kappa = 100 ------------------------------------------

@pytest.fixture(scope="module")
def gauss10():
    t = ep.targets.ill_conditioned_gaussian(10, 100.0, seed=0)  # rotated precision
    assert np.isclose(t.log_z, -2.323540132924)  # tests/groundtruth.md table
    return t


@pytest.mark.parametrize("method", [pytest.param("jarzynski", marks=pytest.mark.slow), "mala"])
def test_gaussian_d10_kappa100_default_reference(gauss10, method):
    res = ep.log_partition(gauss10, key=jax.random.key(1), method=method, num_walkers=2048,
                           progress_bar=False)
    check(res, gauss10.log_z, 0.05)
    assert res.reference_info["kind"] == "auto" and len(res.reference_info["modes"]) == 1
    assert res.schedule[0] == 0.0 and res.schedule[-1] == 1.0
    assert np.all(np.diff(res.schedule) > 0)


def test_jarzynski_is_exact_along_a_long_path(gauss10):
    """From N(0, I), far from the target (variances down to 0.01): ULA moves alone are biased,
    the eq. 102-103 weights make the estimate exact within its error bar."""
    ref = dist.Normal(jnp.zeros(10), 1.0).to_event(1)
    res = ep.log_partition(gauss10, key=jax.random.key(2), reference=ref, method="jarzynski",
                           num_walkers=2048, target_ess=0.9, progress_bar=False)
    assert res.num_stages >= 5
    check(res, gauss10.log_z, 0.2)


def test_jarzynski_loses_a_narrow_mode_and_says_so():
    """What its caution message states, kept true: modes of widths 1 (mass 0.2) and 0.5
    (mass 0.8) from N(0, 25 I). ULA's weights dissipate in the narrow mode, so Jarzynski
    returns about log 0.2 with an error bar and a verdict that do not see it; MALA on the same
    path and walkers is right within its error bar, and carries no such caution."""
    t = ep.targets.two_mode_mixture(4, separation=3, weights=(0.2, 0.8), scales=(1.0, 0.5),
                                    along_diagonal=False)
    ref = dist.Normal(jnp.zeros(4), 5.0).to_event(1)
    kw = dict(key=jax.random.key(0), reference=ref, num_walkers=512, progress_bar=False)
    jz = ep.log_partition(t, method="jarzynski", **kw)
    assert any(m.startswith("jarzynski: ULA's weight corrections") for m in jz.messages)
    assert jz.log_z < t.log_z - 5 * jz.log_z_err  # the lost mass, unseen by the error bar
    mala = ep.log_partition(t, method="mala", **kw)
    assert abs(mala.log_z - t.log_z) < 3.5 * mala.log_z_err
    assert not any(m.startswith("jarzynski") for m in mala.messages)


# -- 2. Neal's funnel, d = 10 -------------------------------------------------------------------

@pytest.mark.slow  # the slow-settings funnel; the default-settings funnel below stays in the default run
def test_funnel_d10():
    t = ep.targets.funnel(10)
    assert np.isclose(t.log_z, 10.287997620715)
    ref = dist.Normal(jnp.zeros(10), 5.0).to_event(1)
    # The neck (v < -3 holds 16% of the mass, with x-scales below 0.2) is what annealing
    # misses, biasing log Z low; many small moves per stage, no diagonal preconditioner (the
    # mouth's walkers would set it) and a wide step jitter reach it. About 5 M gradients.
    res = ep.log_partition(t, key=jax.random.key(3), reference=ref, num_walkers=4096,
                           target_ess=0.95, num_moves=10, precondition=False,
                           progress_bar=False)
    err = res.log_z - t.log_z
    assert abs(err) < 0.2, res
    # the neck is populated: weighted P(v < -3) close to Phi(-1) = 0.159
    v = np.asarray(res.samples)[:, 0]
    assert abs(np.sum(res.weights * (v < -3.0)) - 0.1587) < 0.05


def test_funnel_d10_defaults_fit_the_reference_to_a_pilot():
    """With the defaults, no Laplace mode qualifies on the funnel, so the reference is a
    Gaussian mixture fitted to a pilot annealing, with a Cauchy defensive component; ~1 M
    gradients (a fifth of the slow settings above) reach the issue's 0.2. At 1024 walkers the
    error is -0.04 on average over 100 seeds (-0.14 with a Gaussian defensive component), which
    log_z_err does not see (benchmarks/RESULTS.md, calibration)."""
    t = ep.targets.funnel(10)
    res = ep.log_partition(t, key=jax.random.key(3), progress_bar=False)
    info = res.reference_info
    assert info["kind"] == "auto (pilot)" and len(info["modes"]) == 0
    assert info["pilot_walkers"] == 256 and len(info["pilot_components"]["weights"]) == 4
    assert res.num_gradient_evals < 1.5e6
    assert any("pilot" in m and "biases log Z low" in m for m in res.messages)
    assert "0.25 broad Cauchy" in str(res)
    assert abs(res.log_z - t.log_z) < 0.2, res
    v = np.asarray(res.samples)[:, 0]
    assert abs(np.sum(res.weights * (v < -3.0)) - 0.1587) < 0.06


def test_fit_gaussian_mixture_recovers_two_weighted_components():
    """Weighted EM: draws from N(-2, 0.5^2) and N(3, 1) in equal numbers, weighted 1 : 3, are
    a 0.25 / 0.75 mixture; one Gaussian (k = 1) is the weighted mean and variance."""
    from ebm_ppl.evidence import fit_gaussian_mixture

    rng = np.random.default_rng(0)
    a = rng.normal(-2.0, 0.5, size=(4000, 2))
    b = rng.normal(3.0, 1.0, size=(4000, 2))
    x = np.concatenate([a, b])
    w = np.concatenate([np.full(4000, 1.0), np.full(4000, 3.0)])
    pi, means, var = fit_gaussian_mixture(x, w, 2, seed=1)
    order = np.argsort(means[:, 0])
    np.testing.assert_allclose(pi[order], [0.25, 0.75], atol=0.01)
    np.testing.assert_allclose(means[order], [[-2, -2], [3, 3]], atol=0.05)
    np.testing.assert_allclose(np.sqrt(var[order]), [[0.5, 0.5], [1, 1]], atol=0.05)
    pi1, m1, v1 = fit_gaussian_mixture(x, w, 1)
    wn = w / w.sum()
    np.testing.assert_allclose(m1[0], wn @ x, rtol=1e-12)
    np.testing.assert_allclose(v1[0], wn @ (x - wn @ x) ** 2, rtol=1e-10)


def test_pilot_reference_is_a_normalized_mixture_with_a_cauchy_defensive_part():
    """(1 - w) fitted Gaussians + w multivariate Cauchy with the broad fallback's location and
    scale (w = 0.25); ``tail_df=None`` keeps the Gaussian broad component instead."""
    import numpyro.distributions as ndist

    from ebm_ppl.evidence import pilot_reference
    from ebm_ppl.evidence.reference import auto_reference

    broad, info = auto_reference(ep.targets.funnel(4).energy, jax.random.key(0), num_starts=8)
    assert len(info["modes"]) == 0  # the broad fallback N(0, 3^2 I)
    x = np.random.default_rng(2).normal(size=(500, 4)) * [3.0, 1.0, 1.0, 1.0]
    lw = np.zeros(500)
    lw[0] = -np.inf  # a dead walker is ignored
    y = np.random.default_rng(3).normal(size=(7, 4)) * 4.0
    cauchy = ndist.MultivariateStudentT(1.0, broad.loc[0], 3.0 * jnp.eye(4))
    for tail_df, w, defensive in ((1.0, 0.25, np.asarray(cauchy.log_prob(jnp.asarray(y)))),
                                  (None, 0.1, _log_normal(y, np.asarray(broad.loc[0]),
                                                          9.0 * np.ones(4)))):
        ref, fitted = pilot_reference(x, lw, broad, num_components=2, seed=0,
                                      **({} if tail_df else dict(tail_df=None,
                                                                 defensive_weight=0.1)))
        assert fitted["defensive_weight"] == w and fitted["defensive_df"] == tail_df
        parts = [np.log(w) + defensive]
        for p, m, s in zip(fitted["weights"], fitted["means"], fitted["stds"]):
            parts.append(np.log((1 - w) * p) + _log_normal(y, m, s**2))
        expected = np.logaddexp.reduce(np.stack(parts), axis=0)
        np.testing.assert_allclose(np.asarray(ref.log_prob(jnp.asarray(y))), expected,
                                   rtol=1e-10)
    with pytest.raises(ValueError, match="no walker with a finite weight"):
        pilot_reference(x, np.full(500, -np.inf), broad)
    with pytest.raises(ValueError, match="tail_df must be positive"):
        pilot_reference(x, lw, broad, tail_df=0.0)


def test_tailed_reference_draws_follow_its_density():
    """Kolmogorov-Smirnov in 1-D: 20000 draws of 0.75 N(2, 0.5^2) + 0.25 t_df(0, 3) against
    the exact CDF, for df = 1 and 3; the draws of df = 1 are rejected against the CDF of
    df = 3 (the test tells the tails apart)."""
    from scipy import stats

    from ebm_ppl.evidence.reference import _mixture_class, _tailed_class

    gmm = _mixture_class()(np.array([[2.0]]), np.array([[[0.25]]]), np.ones(1))

    def cdf(df):
        return lambda v: (0.75 * stats.norm.cdf(v, 2.0, 0.5)
                          + 0.25 * stats.t.cdf(v, df, loc=0.0, scale=3.0))

    draws = {}
    for df in (1.0, 3.0):
        ref = _tailed_class()(gmm, np.zeros(1), 3.0 * np.eye(1), df, 0.25)
        draws[df] = np.asarray(ref.sample(jax.random.key(int(df)), (20000,)))[:, 0]
        assert np.all(np.isfinite(draws[df]))
        assert stats.kstest(draws[df], cdf(df)).pvalue > 0.01
    assert stats.kstest(draws[1.0], cdf(3.0)).pvalue < 1e-6


def _log_normal(y, mean, var):
    return -0.5 * np.sum((y - mean) ** 2 / var + np.log(2 * np.pi * var), axis=-1)


def test_find_modes_stops_when_every_start_has_converged():
    """L-BFGS on a quadratic converges in a few iterations: the loop stops there (and counts
    only those gradients) instead of running max_iter; an ill-conditioned one (condition
    number 1e4 in d = 50) does not converge in 5 iterations and runs all 5 (each with at least
    one line-search step: 3 evaluations), every evaluation counted."""
    from ebm_ppl.evidence import find_modes

    starts = 3.0 * jax.random.normal(jax.random.key(0), (8, 3))
    xs, values, gnorms, grads = find_modes(lambda x: 0.5 * jnp.sum((x - 1.0) ** 2), starts,
                                           max_iter=100)
    np.testing.assert_allclose(xs, 1.0, atol=1e-4)
    assert grads <= 2 * 10 * 8 + 8
    scales = jnp.logspace(0, 4, 50)
    calls = []

    def stiff(x):
        jax.debug.callback(lambda: calls.append(1))
        return 0.5 * jnp.sum(scales * x**2)

    *_, grads_stiff = find_modes(stiff, jax.random.normal(jax.random.key(1), (8, 50)),
                                 max_iter=5)
    assert grads_stiff == len(calls) * 8 and grads_stiff >= (3 * 5 + 1) * 8


def test_find_modes_counts_every_evaluation_it_computes():
    """The reported gradient count is what the vectorized search computed (every start pays for
    the longest line search), counted here by a callback in the potential; and converged
    starts no longer drag every start through optax's maximum of line-search steps (on the
    hard mixture: 174 evaluations per start before, 22 now), with the same end points."""
    from ebm_ppl.evidence import find_modes

    target = ep.targets.two_mode_mixture(10, separation=3, weights=(0.2, 0.8),
                                         scales=(1.0, 0.5), along_diagonal=False)
    calls = []

    def potential(x):
        jax.debug.callback(lambda: calls.append(1))
        return target.potential(x)

    starts = 5.0 * jax.random.normal(jax.random.key(0), (256, 10))
    xs, _, gnorms, grads = find_modes(potential, starts)
    per_start = len(calls)  # one callback per vectorized evaluation of all starts
    assert grads == per_start * 256, (grads, per_start)
    assert per_start < 40  # 174 when converged starts ran the longest line search
    ok = gnorms < 1e-3
    assert ok.mean() > 0.9
    side = np.sign(np.mean(xs[ok], axis=1))  # the modes, at -3 and +3 on every axis
    np.testing.assert_allclose(xs[ok], np.outer(3.0 * side, np.ones(10)), atol=1e-4)
    assert set(side) == {-1.0, 1.0}


def test_auto_reference_rejects_flat_minima():
    """A stationary point that does not confine some direction (curvature 1e-9 there; in float32
    the funnel's mouth, at x ~ 1e8, once passed as a mode and wrecked the run) is not a mode."""
    from ebm_ppl.evidence import auto_reference

    def u(x):
        return 0.5 * x[0] ** 2 + 0.5e-9 * x[1] ** 2

    ref, info = auto_reference(ep.energy_from_fn(u, jnp.zeros(2)), jax.random.key(0),
                               num_starts=4)
    assert len(info["modes"]) == 0 and info["rejected_flat_minima"] >= 1
    res = ep.log_partition(u, dim=2, key=jax.random.key(1), num_walkers=256,
                           num_starts=4, progress_bar=False)
    assert res.reference_info["kind"] == "auto (pilot)"


def test_auto_reference_skips_the_funnel_neck():
    """The funnel's only minimum is a needle at v = -40.5: no Laplace component goes there."""
    from ebm_ppl.evidence import auto_reference

    ref, info = auto_reference(ep.targets.funnel(10).energy, jax.random.key(0), num_starts=32)
    assert len(info["modes"]) == 0 and info["rejected_narrow_minima"] >= 1
    x = ref.sample(jax.random.key(1), (2000,))
    assert abs(float(jnp.mean(x[:, 0]))) < 0.5  # a broad Gaussian around the starts


# -- 3. seed eq. 4 mixture ---------------------------------------------------------------------

def test_figure1_mixture_log_z_and_mode_mass():
    t = ep.targets.figure1_mixture()
    assert np.isclose(t.log_z, 0.7564196037069)
    res = ep.log_partition(t, key=jax.random.key(4), num_walkers=16384, progress_bar=False)
    check(res, t.log_z, 0.02)
    mass = weighted_mass(res, t, 1)
    # sd of the mass ~ sqrt(p (1-p) / ESS) = 0.003 with 16384 walkers
    assert abs(mass - 0.176471) < 0.01, (mass, res)
    assert len(res.reference_info["modes"]) == 2


# -- 4. 10-D mixture 0.2 / 0.8 at -5u, +5u ----------------------------------------------------

def test_mixture_d10_minor_mode_mass():
    t = ep.targets.two_mode_mixture(10, separation=5.0, weights=(0.2, 0.8))
    res = ep.log_partition(t, key=jax.random.key(5), num_walkers=4096, progress_bar=False)
    check(res, t.log_z, 0.1)
    assert abs(weighted_mass(res, t, 0) - 0.2) < 0.03


# -- 5. evidence of a Bayesian linear regression ----------------------------------------------

ALPHA, SIGMA = 2.0, 0.5


def blr(phi, y=None):
    w = numpyro.sample("w", dist.Normal(0.0, 1.0 / math.sqrt(ALPHA)).expand([phi.shape[1]])
                       .to_event(1))
    numpyro.sample("y", dist.Normal(phi @ w, SIGMA).to_event(1), obs=y)


def blr_data(seed, n=20, p=3):
    rng = np.random.default_rng(seed)
    phi = rng.standard_normal((n, p))
    y = phi @ rng.standard_normal(p) + SIGMA * rng.standard_normal(n)
    cov = SIGMA**2 * np.eye(n) + phi @ phi.T / ALPHA
    _, logdet = np.linalg.slogdet(cov)
    exact = -0.5 * (n * math.log(2 * math.pi) + logdet + y @ np.linalg.solve(cov, y))
    return jnp.asarray(phi), jnp.asarray(y), exact


def test_log_evidence_bayesian_linear_regression():
    phi, y, exact = blr_data(0)
    res = ep.log_evidence(blr, phi, y=y, key=jax.random.key(6), num_walkers=8192,
                          target_ess=0.9, progress_bar=False)
    check(res, exact, 0.05)
    assert set(res.samples) == {"w"} and res.samples["w"].shape == (8192, 3)
    # the weighted posterior mean matches the conjugate one
    prec = ALPHA * np.eye(3) + np.asarray(phi).T @ np.asarray(phi) / SIGMA**2
    mean = np.linalg.solve(prec, np.asarray(phi).T @ np.asarray(y) / SIGMA**2)
    post_sd = np.sqrt(np.diag(np.linalg.inv(prec)))
    est = res.weights @ res.samples["w"]
    assert np.all(np.abs(est - mean) < 5 * post_sd / math.sqrt(res.final_ess * 8192 / 10))


EIGHT_Y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
EIGHT_SIGMA = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])


def eight_schools(sigma, y=None):
    """Centered eight schools: the hierarchical funnel Bayesians meet (tau -> 0)."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("J", len(sigma)):
        theta = numpyro.sample("theta", dist.Normal(mu, tau))
        numpyro.sample("obs", dist.Normal(theta, sigma), obs=y)


def eight_schools_exact_log_evidence():
    """theta and mu integrate out in closed form, y | tau ~ N(0, diag(sigma^2 + tau^2) + 25),
    leaving one quadrature over the HalfCauchy(5) prior of tau."""
    from scipy import integrate, stats

    def log_lik(tau):
        cov = np.diag(EIGHT_SIGMA**2 + tau**2) + 25.0
        return stats.multivariate_normal(np.zeros(8), cov).logpdf(EIGHT_Y)

    top = log_lik(5.0)
    val, err = integrate.quad(lambda t: np.exp(log_lik(t) - top) * 2 * stats.cauchy(0, 5).pdf(t),
                              0, np.inf, limit=200)
    assert err < 1e-8 * val
    return top + np.log(val)


def test_log_evidence_eight_schools_centered_by_quadrature():
    """Defaults on a 10-parameter hierarchical model with a funnel (centered theta) and a
    constrained scale (tau > 0, log-transformed with its Jacobian): log p(y) = -31.3113 by
    quadrature. Over 16 seeds the error stayed within 0.07 and |err| < 2 se in 14."""
    exact = eight_schools_exact_log_evidence()
    assert np.isclose(exact, -31.311347, atol=1e-5)
    res = ep.log_evidence(eight_schools, jnp.asarray(EIGHT_SIGMA), y=jnp.asarray(EIGHT_Y),
                          key=jax.random.key(0), progress_bar=False)
    check(res, exact, 0.15)
    assert set(res.samples) == {"mu", "tau", "theta"} and np.all(res.samples["tau"] > 0)


# -- 7. the Jarzynski kernel at a fixed energy -----------------------------------------------

def test_jarzynski_kernel_fixed_energy_reweights_ula_bias():
    """Chains start from exact draws; after 50 ULA steps at h = 0.005 the unweighted variance
    along the stiff axis is ULA's biased 0.01333 (seed eq. 73) while the eq. 102-103 weights
    restore the exact 0.01."""
    t = ep.targets.anisotropic_gaussian_2d()
    n, h = 4000, 0.005
    mcmc = MCMC(ep.Jarzynski(potential_fn=t, step_size=h), num_warmup=0, num_samples=50,
                num_chains=n, chain_method="vectorized", progress_bar=False)
    mcmc.run(jax.random.key(7), init_params=t.sample(jax.random.key(8), n),
             extra_fields=("log_weight",))
    x = np.asarray(mcmc.get_samples(group_by_chain=True)[:, -1])
    lw = np.asarray(mcmc.get_extra_fields(group_by_chain=True)["log_weight"][:, -1])
    w = np.exp(lw - lw.max())
    w /= w.sum()
    lam, vec = np.linalg.eigh(t.cov)
    y = x @ vec[:, 0]
    exact, biased = lam[0], vec[:, 0] @ t.ula_stationary_cov(h) @ vec[:, 0]
    weighted = w @ (y - w @ y) ** 2
    unweighted = y.var()
    se_w = exact * math.sqrt(2.0 / (1.0 / np.sum(w**2)))
    se_u = biased * math.sqrt(2.0 / n)
    assert abs(weighted - exact) < 4 * se_w
    assert abs(unweighted - biased) < 4 * se_u
    assert abs(unweighted - exact) > 8 * se_u  # the bias is visible without weights
    # weighted means of both coordinates are exact too
    assert np.all(np.abs(w @ x - t.mean) < 4 * np.sqrt(np.diag(t.cov) / (1.0 / np.sum(w**2))))


# -- 8. shift by a constant, determinism -------------------------------------------------------

def test_shift_and_same_key_reproducibility():
    t = ep.targets.anisotropic_gaussian_2d()
    c = 3.7
    ref = dist.Normal(jnp.zeros(2), 2.0).to_event(1)
    kw = dict(key=jax.random.key(9), reference=ref, method="mala", num_walkers=512,
              progress_bar=False)
    a = ep.log_partition(t, **kw)
    b = ep.log_partition(t, **kw)
    assert a.log_z == b.log_z and np.array_equal(a.log_weights, b.log_weights)
    shifted = ep.log_partition(lambda x: t.potential(x) + c, dim=2, **kw)
    assert abs((shifted.log_z - a.log_z) + c) < 1e-8
    np.testing.assert_allclose(shifted.schedule, a.schedule, rtol=1e-10)
