"""Acceptance tests of the kernels (issue 2, items 1-3).

Statistical checks use many independent vectorized chains started from exact draws: each
chain gives one estimate (a time average around the known mean), and the Monte Carlo
standard error is the spread of those independent estimates over sqrt(n_chains).
"""

import inspect

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer import MCMC

import ebm_ppl as ep
from ebm_ppl.mcmc import PureKernelSampler

TARGET = ep.targets.anisotropic_gaussian_2d()
N_CHAINS = 1000


def _kernel_classes():
    """ep.ULA, ep.MALA, ep.RWMH and every other public PureKernelSampler subclass of the
    library (Jarzynski, spin sweeps, parallel tempering, ... whatever exists)."""
    found, todo = [], [PureKernelSampler]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub not in found:
                found.append(sub)
                todo.append(sub)
    return [c for c in found
            if c.__module__.startswith("ebm_ppl") and not c.__name__.startswith("_")]


KERNELS = _kernel_classes()


def _run(kernel, init, *, num_warmup, num_samples, thinning=1, seed=1, extra_fields=()):
    mcmc = MCMC(kernel, num_warmup=num_warmup, num_samples=num_samples,
                num_chains=init.shape[0], chain_method="vectorized", progress_bar=False,
                thinning=thinning)
    mcmc.run(jax.random.key(seed), init_params=init, extra_fields=extra_fields)
    return mcmc


def _per_chain_moments(draws, mean):
    """Per-chain mean and second moment about the known ``mean``, averaged over chains,
    with standard errors from the spread of the independent per-chain estimates."""
    draws = np.asarray(draws)
    n = draws.shape[0]
    centred = draws - mean
    means = draws.mean(axis=1)
    covs = np.einsum("cti,ctj->cij", centred, centred) / draws.shape[1]
    return (means.mean(0), means.std(0, ddof=1) / np.sqrt(n),
            covs.mean(0), covs.std(0, ddof=1) / np.sqrt(n))


def _exact_start(n=N_CHAINS, seed=0):
    return TARGET.sample(jax.random.key(seed), n)


# -- 1. ULA is biased exactly as Example 4.1 says --------------------------------------------

def test_ula_stationary_cov_closed_form_solves_the_ar1_lyapunov_equation():
    """Independent check of the formula the next test relies on: ULA on a Gaussian is the
    AR(1) recursion x' = (I - hA) x + sqrt(2h) xi, whose stationary covariance C solves
    C = M C M^T + 2h I."""
    from scipy.linalg import solve_discrete_lyapunov

    a = TARGET.precision
    for h in (0.001, 0.01, 0.015, 0.019):
        m = np.eye(2) - h * a
        lyap = solve_discrete_lyapunov(m, 2 * h * np.eye(2))
        np.testing.assert_allclose(TARGET.ula_stationary_cov(h), lyap, rtol=1e-10)


@pytest.mark.parametrize("h", [0.01, 0.015])
def test_ula_matches_biased_covariance_and_not_the_exact_one(h):
    mcmc = _run(ep.ULA(potential_fn=TARGET, step_size=h), _exact_start(),
                num_warmup=300, num_samples=3000, thinning=5)
    draws = mcmc.get_samples(group_by_chain=True)
    mean, mean_se, cov, cov_se = _per_chain_moments(draws, TARGET.mean)
    biased = TARGET.ula_stationary_cov(h)

    assert np.all(np.abs(mean - TARGET.mean) < 4 * mean_se)  # ULA's mean is exact here
    assert np.all(np.abs(cov - biased) < 4 * cov_se), (cov, biased, cov_se)
    # the stiff eigen-direction (precision eigenvalue 100) carries the bias: variance
    # 0.01 / (1 - 50 h) instead of 0.01, i.e. 2x at h = 0.01 and 4x at h = 0.015
    lam, vecs = np.linalg.eigh(TARGET.precision)
    v = vecs[:, -1]
    proj = np.einsum("cti,i->ct", np.asarray(draws) - TARGET.mean, v) ** 2
    var, var_se = proj.mean(1).mean(), proj.mean(1).std(ddof=1) / np.sqrt(N_CHAINS)
    assert abs(var - 1 / lam[-1] / (1 - 0.5 * h * lam[-1])) < 4 * var_se
    if h == 0.015:  # an unbiased kernel would give the exact Sigma and fail here
        assert abs(var - v @ TARGET.cov @ v) > 50 * var_se
        assert np.max(np.abs(cov - TARGET.cov) / cov_se) > 10


# -- 2. MALA and RWMH are exact --------------------------------------------------------------

@pytest.mark.parametrize("kernel, target_accept", [
    (ep.MALA(potential_fn=TARGET, step_size=0.01), 0.574),
    # the step at which ULA is 4x off in the stiff direction: the MH test removes the bias
    (ep.MALA(potential_fn=TARGET, step_size=0.015, adapt_step_size=False), None),
    (ep.RWMH(potential_fn=TARGET, step_size=0.1), 0.234),
], ids=["mala", "mala_fixed_h0.015", "rwmh"])
def test_mala_and_rwmh_match_exact_mean_and_covariance(kernel, target_accept):
    mcmc = _run(kernel, _exact_start(), num_warmup=500, num_samples=2000, thinning=4,
                extra_fields=("accept_prob",))
    mean, mean_se, cov, cov_se = _per_chain_moments(
        mcmc.get_samples(group_by_chain=True), TARGET.mean)
    assert np.all(np.abs(mean - TARGET.mean) < 4 * mean_se), (mean, mean_se)
    assert np.all(np.abs(cov - TARGET.cov) < 4 * cov_se), (cov, cov_se)
    accept = float(np.mean(mcmc.get_extra_fields()["accept_prob"]))
    if target_accept is not None:  # warmup tuned the step toward the target acceptance
        # the final step is the averaged one of a damped final window restarted at the
        # previous window's averaged step (ep.mcmc._steadier_step_adaptation); with
        # NumPyro's restarts RWMH sampled at 0.18 (Jensen: its acceptance is convex in
        # log step at 0.234). Observed 0.225 (RWMH), 0.585 (MALA) over these 1000 chains
        assert abs(accept - target_accept) < 0.05, accept


# -- 3. NumPyro conformance ------------------------------------------------------------------

FIELDS = ("accept_prob", "potential_energy")
N_CONF = 2  # chains (each on its own fake host device with chain_method="parallel")


def _is_spin_kernel(cls):
    return cls.__module__.startswith("ebm_ppl.spins")


def _recipe(cls):
    """(kernel factory, init_params for N_CONF chains, potential) for a kernel class."""
    if _is_spin_kernel(cls):  # sweeps of +-1 spins take the spin model itself
        ising = ep.spins.Ising(L=4, T=2.5)
        return (lambda potential: cls(potential_fn=potential),
                ising.random_spins(jax.random.key(0), N_CONF), ising)
    kwargs = {"step_size": 0.01}
    if "num_replicas" in inspect.signature(cls).parameters:
        kwargs["num_replicas"] = 3
    init = jnp.asarray(np.random.default_rng(0).normal(size=(N_CONF, 2)))
    return lambda potential: cls(potential_fn=potential, **kwargs), init, TARGET


def _conformance_run(cls, method, bar, num_samples, potential=None):
    make, init, target = _recipe(cls)
    mcmc = MCMC(make(potential or target), num_warmup=50, num_samples=num_samples,
                num_chains=N_CONF, chain_method=method, progress_bar=bar)
    mcmc.run(jax.random.key(1), init_params=init, extra_fields=FIELDS)
    return mcmc


def _collected(mcmc):
    extra = mcmc.get_extra_fields(group_by_chain=True)
    return [np.asarray(mcmc.get_samples(group_by_chain=True))] + [
        np.asarray(extra[f]) for f in FIELDS]


def _assert_same_draws(got, reference, what):
    for ref, a in zip(reference, got):
        # identical draws; the per-step jit of the progress bar may fuse operations
        # differently, so allow float rounding, far below any statistical difference
        np.testing.assert_allclose(a, ref, rtol=1e-9, atol=1e-12, err_msg=what)


def _conformance_params():
    """The full matrix for the foundation kernels (ebm_ppl.mcmc); kernels of other modules
    (spin sweeps, tempering: also tested in their own files) get the three chain methods
    with a warm restart by default and the full matrix under ``-m slow``."""
    for cls in KERNELS:
        if cls.__module__ == "ebm_ppl.mcmc":
            yield pytest.param(cls, True, id=cls.__name__)
        else:
            yield pytest.param(cls, False, id=cls.__name__ + "-light")
            yield pytest.param(cls, True, id=cls.__name__ + "-full", marks=pytest.mark.slow)


@pytest.mark.parametrize("cls, full", list(_conformance_params()))
def test_chain_methods_progress_bar_and_warm_restart_agree(cls, full):
    """One key, identical draws and extra fields under sequential / vectorized / parallel,
    progress bar on and off; a warm restart continues the chain exactly where it stopped."""
    assert jax.local_device_count() >= N_CONF, "conftest should provide 4 host devices"
    _, _, target = _recipe(cls)
    reference = _collected(_conformance_run(cls, "sequential", False, 40))
    z, accept, energy = reference
    assert np.all(np.isfinite(z)) and np.all((accept >= 0) & (accept <= 1))
    np.testing.assert_allclose(energy, jax.vmap(jax.vmap(target))(z), rtol=1e-12, atol=1e-12)
    assert all(np.any(chain[1:] != chain[:-1]) for chain in z), "a chain does not move"
    for method in ("sequential", "vectorized", "parallel"):
        for bar in (False, True) if full else (False,):
            what = f"{method}, progress_bar={bar}"
            if (method, bar) == ("sequential", False):
                continue  # the reference
            if method == "parallel":  # 40 draws in one go
                _assert_same_draws(_collected(_conformance_run(cls, method, bar, 40)),
                                   reference, what)
                continue
            # 20 draws, then a warm restart for 20 more: together the reference run
            mcmc = _conformance_run(cls, method, bar, 20)
            first = _collected(mcmc)
            mcmc.post_warmup_state = mcmc.last_state
            mcmc.run(mcmc.post_warmup_state.rng_key, extra_fields=FIELDS)
            second = _collected(mcmc)
            _assert_same_draws([np.concatenate(p, axis=1) for p in zip(first, second)],
                               reference, what + ", warm restart")
    dt = az.from_numpyro(mcmc)
    for stat in (az.rhat(dt), az.ess(dt, method="bulk"), az.ess(dt, method="tail")):
        values = np.concatenate([np.ravel(stat[name].values) for name in stat.data_vars])
        assert values.size == z.shape[-1] and np.all(np.isfinite(values)), values


def test_progress_bar_run_does_not_retrace_per_draw():
    calls = []

    def counted(x):
        calls.append(1)
        return TARGET(x)

    mcmc = _conformance_run(ep.MALA, "sequential", True, 40, potential=counted)
    # init check, init (+3 in the warmup adapter's step-size search: pure init, first move,
    # loop body), and per phase (warmup, sampling) the step and that search: 14; a retrace
    # per draw would give ~360 (90 draws x 4)
    assert len(mcmc.get_samples()) == N_CONF * 40 and len(calls) <= 14, len(calls)


def _one_step_params():
    for cls in KERNELS:
        marks = []
        if _is_spin_kernel(cls):
            marks.append(pytest.mark.skip(reason="spin sweeps use local fields, not U"))
        yield pytest.param(cls, id=cls.__name__, marks=marks)


@pytest.mark.parametrize("cls", list(_one_step_params()))
def test_one_step_costs_one_potential_evaluation(cls):
    """U is traced once per step (a gradient kernel's single value_and_grad traces it once;
    a second grad, or re-evaluating U for potential_energy, would trace it again)."""
    calls = []

    def counted(x):
        calls.append(1)
        return TARGET(x)

    make, init, _ = _recipe(cls)
    kernel = make(counted)
    if getattr(kernel, "_adapt", False) and kernel.supports_mass_matrix:
        # the step-size search of the warmup adapter (a cond branch taken only at the start
        # and at mass-matrix window ends) traces U too: count the step itself
        kernel._adapt = False
    state = kernel.init(jax.random.key(0), 10, init[0], (), {})
    calls.clear()
    jax.make_jaxpr(lambda s: kernel.sample(s, (), {}))(state)
    assert len(calls) == 1
    state = jax.vmap(lambda k, x: kernel.init(k, 10, x, (), {}))(
        jax.random.split(jax.random.key(0), N_CONF), init)
    calls.clear()
    jax.make_jaxpr(jax.vmap(lambda s: kernel.sample(s, (), {})))(state)
    assert len(calls) == 1


def test_kernel_object_reused_across_chain_methods():
    """One kernel instance serves vectorized, then sequential, then vectorized runs (the
    adapter rebinds its sample function at every init) with identical draws for one key."""
    target = ep.targets.anisotropic_gaussian_2d()
    kernel = ep.MALA(potential_fn=target)
    draws = []
    for method in ("vectorized", "sequential", "vectorized"):
        mcmc = MCMC(kernel, num_warmup=30, num_samples=30, num_chains=2, chain_method=method,
                    progress_bar=False)
        mcmc.run(jax.random.key(0), init_params=jnp.zeros((2, 2)))
        draws.append(np.asarray(mcmc.get_samples()))
    np.testing.assert_allclose(draws[0], draws[1], rtol=0, atol=1e-10)
    np.testing.assert_array_equal(draws[0], draws[2])
