"""Exact-answer targets (issue 2, item 5): every ``log_z`` against an independent numerical
check (scipy quadrature in 1-2 D, importance sampling with an error bar in 10-D, the values
of tests/groundtruth.md), and ``sample``, ``mean``, ``cov``, ``mode_masses`` against each other.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats
from scipy.special import logsumexp

import ebm_ppl as ep
from ebm_ppl import targets

L2PI = math.log(2 * math.pi)


def _u(target):
    f = jax.jit(target.potential)
    return lambda *x: float(f(jnp.array(x, dtype=jnp.float64)))


def _grid_integral_2d(fn, xs, ys):
    """int int fn(x, y) dx dy with Simpson's rule; ``fn`` maps (n, 2) points to n values."""
    pts = np.stack(np.meshgrid(xs, ys, indexing="ij"), axis=-1).reshape(-1, 2)
    vals = np.asarray(fn(jnp.asarray(pts))).reshape(xs.size, ys.size)
    return integrate.simpson(integrate.simpson(vals, x=ys, axis=1), x=xs)


def _quad_1d(target, lo, hi, f=lambda x: 1.0, points=None):
    """int f(x) exp(-U(x)) dx by adaptive quadrature."""
    u = _u(target)
    return integrate.quad(lambda x: f(x) * math.exp(-u(x)), lo, hi, points=points,
                          epsabs=0, epsrel=1e-11, limit=400)[0]


def _importance_log_z(target, log_q, draws):
    """log Z = log E_q[exp(-U - log q)] and its standard error (delta method)."""
    log_w = -np.asarray(jax.jit(jax.vmap(target.potential))(jnp.asarray(draws))) - log_q
    shift = log_w.max()
    w = np.exp(log_w - shift)
    se = w.std(ddof=1) / (w.mean() * np.sqrt(w.size))
    return math.log(w.mean()) + shift, se, w / w.sum()


def _check_sample_moments(x, mean, cov, n_se=4.0):
    """Sample mean and covariance (about the exact mean) within n_se standard errors."""
    x = np.asarray(x)
    n = x.shape[0]
    d = x - mean
    assert np.all(np.abs(x.mean(0) - mean) < n_se * x.std(0, ddof=1) / np.sqrt(n))
    prods = np.einsum("ni,nj->nij", d, d)
    assert np.all(np.abs(prods.mean(0) - cov) < n_se * prods.std(0, ddof=1) / np.sqrt(n))


# -- Gaussians -------------------------------------------------------------------------------

GAUSSIAN_TABLE = {  # tests/groundtruth.md: (d, kappa) -> log Z
    (2, 1): 1.837877066409, (2, 100): -0.464708026585, (2, 1000): -1.616000573082,
    (10, 1): 9.189385332047, (10, 100): -2.323540132924, (10, 1000): -8.080002865409,
    (100, 1): 91.893853320467, (100, 100): -23.235401329235, (100, 1000): -80.800028654086,
}


@pytest.mark.parametrize("d, kappa", sorted(GAUSSIAN_TABLE))
def test_gaussian_log_z_table(d, kappa):
    for seed in (None, 0):  # log Z does not depend on the rotation
        g = targets.ill_conditioned_gaussian(d, kappa, seed=seed)
        assert abs(g.log_z - GAUSSIAN_TABLE[d, kappa]) < 1e-9
        np.testing.assert_allclose(np.linalg.eigvalsh(g.precision),
                                   kappa ** (np.arange(d) / (d - 1)), rtol=1e-8)


def test_anisotropic_gaussian_by_quadrature_and_sampling():
    g = targets.anisotropic_gaussian_2d()
    np.testing.assert_allclose(g.cov, [[0.7525, 0.428683], [0.428683, 0.2575]], atol=1e-6)
    np.testing.assert_allclose(g.mean, [1.0, -1.0])
    z = _grid_integral_2d(lambda p: jnp.exp(-jax.vmap(g)(p)), np.linspace(-6, 8, 1401),
                          np.linspace(-5, 3, 1601))
    assert abs(math.log(z) - g.log_z) < 1e-9
    x = g.sample(jax.random.key(0), 100_000)
    _check_sample_moments(x, g.mean, g.cov)
    # sample <-> potential: 2U ~ chi^2_d, so E[U] = d/2 with variance d/2
    energies = np.asarray(jax.jit(jax.vmap(g))(x))
    assert abs(energies.mean() - 1.0) < 4 * 1.0 / np.sqrt(x.shape[0])


def test_gaussian_10d_sample_matches_potential_mean_and_cov():
    g = targets.ill_conditioned_gaussian(10, 100.0, mean=np.linspace(-1, 1, 10), seed=3)
    x = g.sample(jax.random.key(1), 50_000)
    _check_sample_moments(x, g.mean, g.cov)
    energies = np.asarray(jax.jit(jax.vmap(g))(x))
    assert abs(energies.mean() - 5.0) < 4 * np.sqrt(5.0 / x.shape[0])


@pytest.mark.parametrize("h, kl", [(1e-4, 6.2925e-6), (1e-3, 6.6920e-4), (5e-3, 2.2827e-2),
                                   (1e-2, 0.153433), (1.5e-2, 0.806867), (1.9e-2, 8.00216)])
def test_ula_kl_table(h, kl):
    g = targets.anisotropic_gaussian_2d()
    assert abs(g.ula_kl(h) - kl) < 1e-4 * kl
    # and from the closed-form stationary covariance, KL(N(mu, B) || N(mu, Sigma))
    b, a = g.ula_stationary_cov(h), g.precision
    direct = 0.5 * (np.trace(a @ b) - 2 - np.linalg.slogdet(a @ b)[1])
    assert abs(direct - kl) < 1e-4 * kl


# -- mixtures --------------------------------------------------------------------------------

def test_figure1_mixture_by_quadrature():
    m = targets.figure1_mixture()
    assert m.dim == 1
    assert abs(m.log_z - 0.7564196037069) < 1e-12
    z = _quad_1d(m, -15.0, 15.0, points=[0.0, 5.0])  # adaptive quadrature
    assert abs(math.log(z) - m.log_z) < 1e-9
    # moments and component mass by Simpson's rule on a fine grid
    grid = np.linspace(-15.0, 15.0, 60_001)
    dens = np.exp(-np.asarray(jax.jit(jax.vmap(m))(jnp.asarray(grid[:, None]))))
    resp = np.asarray(jax.jit(m.responsibilities)(jnp.asarray(grid[:, None])))

    def integral(f):
        return integrate.simpson(f * dens, x=grid) / z

    assert abs(integral(resp[:, 1]) - 0.15 / 0.85) < 1e-9
    assert abs(m.mode_masses[1] - 0.176471) < 1e-6
    mean = integral(grid)
    np.testing.assert_allclose(m.mean, [mean], rtol=1e-9)
    np.testing.assert_allclose(m.cov, [[integral((grid - mean) ** 2)]], rtol=1e-9)
    # sample agrees with mean/cov and mode masses; mode_index with the region masses
    x = m.sample(jax.random.key(2), 100_000)
    _check_sample_moments(x, m.mean, m.cov)
    r = np.asarray(jax.jit(m.responsibilities)(x))
    se = r.std(0, ddof=1) / np.sqrt(x.shape[0])
    assert np.all(np.abs(r.mean(0) - m.mode_masses) < 4 * se)
    # mode_index splits the line where the responsibilities cross
    cross = grid[np.argmax(resp[:, 1] > 0.5)]
    index = np.asarray(jax.jit(m.mode_index)(jnp.asarray(grid[:, None])))
    np.testing.assert_array_equal(index, (resp[:, 1] > resp[:, 0]).astype(int))
    right = _quad_1d(m, cross, 15.0, points=[5.0]) / z
    frac = np.mean(np.asarray(jax.jit(m.mode_index)(x)) == 1)
    assert abs(frac - right) < 4 * math.sqrt(right * (1 - right) / x.shape[0])


def _mixture_proposal(m, widen, n, seed):
    """Equal-weight mixture of N(mu_k, (widen s_k)^2 I): draws and log density."""
    rng = np.random.default_rng(seed)
    k = rng.integers(0, len(m.scales), n)
    s = widen * m.scales
    draws = m.means[k] + s[k, None] * rng.standard_normal((n, m.dim))
    sq = ((draws[:, None, :] - m.means[None]) ** 2).sum(-1)
    log_q = logsumexp(np.log(1 / len(s)) - 0.5 * m.dim * np.log(2 * np.pi * s**2)
                      - sq / (2 * s**2), axis=1)
    return draws, log_q


@pytest.mark.parametrize("mixture", [
    targets.two_mode_mixture(d=10),
    targets.two_mode_mixture(d=10, weights=(0.5, 0.5), scales=(1.0, 0.5), separation=4.0),
    targets.GaussianMixture(means=np.stack([-np.ones(10), np.ones(10)]) * 2.0,
                            scales=[1.0, 0.7], weights=[0.5, 0.5]),
], ids=["default", "unequal_scales_equal_masses", "unequal_scales_equal_weights"])
def test_mixture_10d_by_importance_sampling(mixture):
    draws, log_q = _mixture_proposal(mixture, 1.2, 200_000, seed=0)
    log_z, se, w = _importance_log_z(mixture, log_q, draws)
    assert se < 0.01 and abs(log_z - mixture.log_z) < 4 * se, (log_z, mixture.log_z, se)
    # mode masses, mean and cov from the same weighted draws (self-normalized IS)
    resp = np.asarray(jax.jit(mixture.responsibilities)(jnp.asarray(draws)))
    ess = 1.0 / np.sum(w**2)
    for est, exact, f in [
        (w @ resp, mixture.mode_masses, resp),
        (w @ draws, mixture.mean, draws),
    ]:
        sd = np.sqrt(np.maximum(w @ (f - est) ** 2, 1e-300))
        assert np.all(np.abs(est - exact) < 4 * sd / np.sqrt(ess) + 1e-12)
    centred = draws - mixture.mean
    cov_is = np.einsum("n,ni,nj->ij", w, centred, centred)
    assert np.max(np.abs(cov_is - mixture.cov)) < 0.05 * np.max(np.abs(mixture.cov))
    # exact sampler vs the exact moments and masses
    x = mixture.sample(jax.random.key(4), 100_000)
    _check_sample_moments(x, mixture.mean, mixture.cov)
    idx = np.asarray(jax.jit(mixture.mode_index)(x))
    p = mixture.mode_masses
    assert np.all(np.abs(np.bincount(idx, minlength=2) / x.shape[0] - p)
                  < 4 * np.sqrt(p * (1 - p) / x.shape[0]))


def test_two_mode_mixture_weights_are_mode_masses():
    for d in (1, 10, 50):
        m = targets.two_mode_mixture(d=d, weights=(0.3, 0.7), scales=(1.0, 0.5))
        np.testing.assert_allclose(m.mode_masses, [0.3, 0.7], rtol=1e-10)
        # log Z of normalized components times masses summing to one: log Z = 0
        assert abs(m.log_z) < 1e-10


# -- Neal's funnel ---------------------------------------------------------------------------

def test_funnel_2d_by_quadrature():
    f = targets.funnel(2)

    def integrand(p):  # x = e^{v/2} t, dx = e^{v/2} dt: a fixed grid in (v, t) then suffices
        v, t = p[:, 0], p[:, 1]
        x = jnp.exp(v / 2) * t
        return jnp.exp(-jax.vmap(f)(jnp.stack([v, x], axis=1)) + v / 2)

    z = _grid_integral_2d(integrand, np.linspace(-40, 40, 2001), np.linspace(-12, 12, 1201))
    assert abs(math.log(z) - f.log_z) < 1e-9
    assert abs(f.log_z - (math.log(3) + L2PI)) < 1e-12


def test_funnel_10d_by_importance_sampling_and_its_moments():
    f = targets.funnel(10)
    assert abs(f.log_z - 10.287997620715) < 1e-11
    rng = np.random.default_rng(1)
    n, sv, sx = 200_000, 3.3, 1.2
    v = sv * rng.standard_normal(n)
    x = sx * np.exp(v / 2)[:, None] * rng.standard_normal((n, 9))
    log_q = (stats.norm.logpdf(v, 0, sv)
             + stats.norm.logpdf(x, 0, sx * np.exp(v / 2)[:, None]).sum(1))
    log_z, se, _ = _importance_log_z(f, log_q, np.column_stack([v, x]))
    assert se < 0.01 and abs(log_z - f.log_z) < 4 * se, (log_z, f.log_z, se)
    # cov: Var v = 9 and Var x_i = E[e^v] under v ~ N(0, 9), by quadrature
    e_ev = integrate.quad(lambda t: math.exp(t) * stats.norm.pdf(t, 0, 3), -40, 40)[0]
    np.testing.assert_allclose(np.diag(f.cov), [9.0] + [e_ev] * 9, rtol=1e-9)
    np.testing.assert_array_equal(f.mean, np.zeros(10))
    # the sampler: v ~ N(0, 9) and x_i e^{-v/2} ~ N(0, 1) independently (KS tests)
    s = np.asarray(f.sample(jax.random.key(5), 20_000))
    assert stats.kstest(s[:, 0] / 3.0, "norm").pvalue > 1e-3
    assert stats.kstest(s[:, 1] * np.exp(-s[:, 0] / 2), "norm").pvalue > 1e-3
    # sample <-> potential: v^2/9 and x_i^2 e^{-v} are chi^2_1 and E[v] = 0, so E[U] = d/2
    energies = np.asarray(jax.jit(jax.vmap(f))(jnp.asarray(s)))
    assert abs(energies.mean() - 5.0) < 4 * energies.std() / np.sqrt(energies.size)


# -- tilted double well ----------------------------------------------------------------------

@pytest.mark.parametrize("a, log_z, p_left", [(2, 0.728569025224, 0.8573731680),
                                              (5, 0.231409917528, 0.8698513069),
                                              (10, -0.132845728891, 0.8762847873)])
def test_tilted_double_well(a, log_z, p_left):
    t = targets.tilted_double_well(a)
    assert abs(t.log_z - log_z) < 1e-9
    assert abs(t.mode_masses[0] - p_left) < 1e-8 and abs(t.mode_masses.sum() - 1) < 1e-12
    # the barrier is the local maximum of U between the wells
    b = t.barrier
    assert abs(4 * a * b * (b**2 - 1) + 1) < 1e-9 and 12 * a * b**2 - 4 * a < 0
    # independent adaptive quadrature, split at the barrier
    lo, hi = -4.0, 4.0
    left, right = _quad_1d(t, lo, b), _quad_1d(t, b, hi)
    assert abs(math.log(left + right) - t.log_z) < 1e-9
    assert abs(left / (left + right) - t.mode_masses[0]) < 1e-9
    mean = (_quad_1d(t, lo, b, lambda x: x) + _quad_1d(t, b, hi, lambda x: x)) / (left + right)
    # the sampler against the quadrature: mean and the mass of each well
    x = np.asarray(t.sample(jax.random.key(6), 100_000))
    assert abs(x.mean() - mean) < 4 * x.std() / np.sqrt(x.size)
    idx = np.asarray(t.mode_index(jnp.asarray(x)))
    frac = np.mean(idx == 0)
    assert abs(frac - p_left) < 4 * math.sqrt(p_left * (1 - p_left) / x.size)
    np.testing.assert_array_equal(idx, (x[:, 0] > b).astype(int))


def test_targets_are_energies():
    for t in (targets.anisotropic_gaussian_2d(), targets.figure1_mixture(),
              targets.two_mode_mixture(), targets.funnel(), targets.tilted_double_well()):
        e = ep.as_energy(t)
        assert e.dim == t.dim
        x = jnp.full((t.dim,), 0.3)
        np.testing.assert_allclose(jax.jit(e)(x), jax.jit(t)(x))
        assert jnp.shape(jax.jit(jax.grad(t))(x)) == (t.dim,)
