"""Kernel Stein discrepancy and Stein thinning (issue 19, acceptance 1), against the
``stein-thinning`` package (Riabiz et al. 2022) on the same points, kernel and preconditioner."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import ebm_ppl as ep
from ebm_ppl.diagnostics import stein_discrepancy, stein_thin
from ebm_ppl.diagnostics.stein import imq_stein_kernel

st_kmat = pytest.importorskip("stein_thinning.stein")
st_thin = pytest.importorskip("stein_thinning.thinning")


def _gaussian_case(n=400, d=3, seed=0, scale=1.3):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(d, d))
    prec = a @ a.T + np.eye(d)
    x = rng.normal(size=(n, d)) * scale + 0.2
    return x, -(x @ prec), (lambda z: 0.5 * z @ jnp.asarray(prec) @ z)


@pytest.mark.parametrize("preconditioner", ["id", "med", "sclmed", "smpcov", "2.5"])
@pytest.mark.parametrize("standardize", [False, True])
def test_ksd_matches_stein_thinning_package(preconditioner, standardize):
    x, grad, potential = _gaussian_case()
    ref = st_kmat.ksd(st_thin._make_stein_integrand(x, grad, standardize=standardize,
                                                    preconditioner=preconditioner), len(x))[-1]
    pre = float(preconditioner) if preconditioner == "2.5" else preconditioner
    got = stein_discrepancy(x, potential, preconditioner=pre, standardize=standardize,
                            block_size=64)  # several blocks and a padded last one
    assert abs(got.ksd / ref - 1) < 1e-6, (got.ksd, ref)
    # the scores given directly instead of the potential: the same number
    same = stein_discrepancy(x, scores=grad, preconditioner=pre, standardize=standardize)
    assert abs(same.ksd / ref - 1) < 1e-6


def test_weighted_and_per_chain_ksd_match_the_kernel_matrix():
    x, grad, potential = _gaussian_case(n=300)
    kmat = st_kmat.kmat(st_thin._make_stein_integrand(x, grad, standardize=False), len(x))
    lw = np.random.default_rng(3).normal(size=len(x))
    w = np.exp(lw) / np.exp(lw).sum()
    got = stein_discrepancy(x, potential, log_weights=lw)
    assert abs(got.ksd / np.sqrt(w @ kmat @ w) - 1) < 1e-6
    # U-statistic: the diagonal dropped
    off = kmat - np.diag(np.diag(kmat))
    assert abs(got.ksd_squared_u - (w @ off @ w) / (1 - np.sum(w**2))) < 1e-9 * np.abs(off).max()
    apart = stein_discrepancy(x.reshape(3, 100, -1), potential, chains="apart")
    for k in range(3):
        block = kmat[k * 100:(k + 1) * 100, k * 100:(k + 1) * 100]
        assert abs(apart.ksd_chain[k] / (np.sqrt(block.sum()) / 100) - 1) < 1e-6
    assert abs(apart.ksd / (np.sqrt(kmat.sum()) / 300) - 1) < 1e-6


def test_pairwise_kernel_matches_autodiff_definition():
    """k_p from its definition (Langevin-Stein operator on both arguments of the IMQ kernel),
    by automatic differentiation: catches a wrong sign or term in the closed form."""
    x, grad, _ = _gaussian_case(n=2, d=4, seed=5)
    linv = np.diag([0.5, 1.0, 2.0, 1.5])

    def k(a, b):
        r = a - b
        return (1.0 + r @ linv @ r) ** -0.5

    a, b, sa, sb = map(jnp.asarray, (x[0], x[1], grad[0], grad[1]))
    gx = jax.grad(k, 0)(a, b)
    gy = jax.grad(k, 1)(a, b)
    trace = jnp.trace(jax.jacfwd(jax.grad(k, 1), 0)(a, b))
    want = trace + gx @ sb + gy @ sa + k(a, b) * sa @ sb
    assert abs(float(imq_stein_kernel(a, b, sa, sb, jnp.asarray(linv))) - float(want)) < 1e-12


def test_ksd_detects_a_wrong_target_and_linear_estimate_agrees():
    target = ep.targets.ill_conditioned_gaussian(d=4, kappa=10.0, seed=0)
    key = jax.random.key(0)
    exact = np.asarray(target.sample(key, 2000))
    wrong = exact * 1.5 + np.asarray(target.mean) * -0.5  # inflated covariance
    ok = stein_discrepancy(exact, target)
    bad = stein_discrepancy(wrong, target)
    assert bad.ksd > 3 * ok.ksd
    for r in (ok, bad):
        lin = stein_discrepancy(exact if r is ok else wrong, target, method="linear",
                                key=jax.random.key(1))
        assert abs(lin.ksd_squared_u - r.ksd_squared_u) < 4 * lin.se, (lin, r)
    # exact draws: the unbiased KSD^2 is ~0 against its own linear-estimate scale
    assert abs(ok.ksd_squared_u) < 0.1 * bad.ksd_squared_u


def _normal_model(y):
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    numpyro.sample("y", dist.Normal(mu, sigma), obs=y)


def test_model_draws_are_unconstrained_with_the_models_transforms():
    y = jnp.asarray(np.random.default_rng(0).normal(0.5, 0.7, size=20))

    def by_hand(z):  # z = (mu, log sigma): ravel order of {"mu", "sigma"}, Jacobian + t
        mu, t = z[0], z[1]
        sigma = jnp.exp(t)
        return (0.5 * mu**2 + 0.5 * sigma**2 - t
                + jnp.sum((y - mu) ** 2) / (2 * sigma**2) + y.size * t)

    rng = np.random.default_rng(1)  # draws near the posterior, as two "chains"
    samples = {"mu": rng.normal(0.5, 0.2, size=(2, 150)),
               "sigma": np.exp(rng.normal(np.log(0.7), 0.15, size=(2, 150)))}
    flat = np.stack([np.asarray(samples["mu"]), np.log(np.asarray(samples["sigma"]))], -1)
    ref = stein_discrepancy(flat, by_hand, preconditioner="med")
    from_model = stein_discrepancy(samples, model=_normal_model, model_args=(y,),
                                   preconditioner="med")
    assert abs(from_model.ksd / ref.ksd - 1) < 1e-9
    # constrained values taken as if unconstrained give another (wrong) number
    naive = stein_discrepancy(np.stack([samples["mu"], samples["sigma"]], -1), by_hand,
                              preconditioner="med")
    assert abs(naive.ksd / ref.ksd - 1) > 1e-3


def test_stein_thin_selects_the_packages_points():
    x, grad, potential = _gaussian_case(n=1000, seed=1)
    for pre, std in (("id", True), ("med", False), ("smpcov", True)):
        ref = st_thin.thin(x, grad, 40, standardize=std, preconditioner=pre)
        dt = stein_thin(x, potential, 40, preconditioner=pre, standardize=std)
        np.testing.assert_array_equal(dt["sample_stats"]["index"].values[0], ref)
        np.testing.assert_allclose(dt["posterior"]["x"].values[0], x[ref])
    # the running KSD of the selection, from the package's own Stein kernel
    dt = stein_thin(x, potential, 40)
    idx = dt["sample_stats"]["index"].values[0]
    integ = st_thin._make_stein_integrand(x, grad, standardize=True)
    cum = [np.sqrt(sum(integ([i], [j]).item() for i in idx[:k] for j in idx[:k])) / k
           for k in (1, 5, 40)]
    np.testing.assert_allclose(dt["sample_stats"]["ksd"].values[0][[0, 4, 39]], cum, rtol=1e-9)


def test_user_errors_are_clear():
    x, grad, potential = _gaussian_case(n=20)
    with pytest.raises(ValueError, match="needs the target"):
        stein_discrepancy(x)
    with pytest.raises(ValueError, match="preconditioner"):
        stein_discrepancy(x, potential, preconditioner="nope")
    with pytest.raises(ValueError, match="beta"):
        stein_discrepancy(x, potential, beta=0.5)
    with pytest.raises(ValueError, match="draws must have shape"):
        stein_discrepancy(np.zeros((2, 2, 2, 2)), potential)
    with pytest.raises(ValueError, match="latent sites"):
        stein_discrepancy({"mu": np.zeros((1, 5))}, model=_normal_model, model_args=(x[:, 0],))
    with pytest.raises(ValueError, match="NaN"):
        stein_discrepancy(np.full((5, 3), np.nan), potential)
