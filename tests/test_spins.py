"""Spin models, exact answers, spin-flip kernels and their NumPyro adapter (issue 5)."""

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer import MCMC

import ebm_ppl as ep
from ebm_ppl import spins
from ebm_ppl.spins import (T_CRITICAL, BoltzmannMachine, CurieWeiss, Ising, enumerate_exact,
                           ising_exact, ising_log_z, ising_transfer_matrix)

# tests/groundtruth.md: 2-D Ising, J = 1, 2 L^2 bonds
GROUNDTRUTH_LOG_Z = {(4, 2.0): 17.105367118732, (4, T_CRITICAL): 15.521915458755,
                     (4, 3.0): 13.281033455584, (8, 2.0): 66.344581879228,
                     (8, T_CRITICAL): 60.141780789069, (8, 3.0): 52.261409659555}


def random_bm(n, seed, scale=0.5):
    rng = np.random.default_rng(seed)
    a = np.triu(rng.normal(size=(n, n)) * scale, 1)
    return BoltzmannMachine(J=a + a.T, h=0.3 * rng.normal(size=n))


# -- exact answers ------------------------------------------------------------------------------

@pytest.mark.parametrize("L", [2, 3, 4])
@pytest.mark.parametrize("T", [1.0, 2.0, T_CRITICAL, 3.0, 10.0])
def test_kaufman_matches_brute_force(L, T):
    brute = enumerate_exact(Ising(L, T=T))
    exact = ising_exact(L, T)
    assert abs(exact.log_z - brute.log_z) < 1e-8
    assert abs(exact.energy_per_spin - brute.energy_per_spin) < 1e-8
    assert abs(exact.specific_heat - brute.specific_heat) < 1e-8
    assert abs(exact.m2 - brute.m2) < 1e-8  # transfer matrix vs enumeration


def test_kaufman_matches_groundtruth_table():
    for (L, T), value in GROUNDTRUTH_LOG_Z.items():
        assert abs(ising_log_z(L, T) - value) < 1e-9, (L, T)
    assert abs(ising_exact(4, T_CRITICAL).energy_per_spin - -1.5656237876) < 1e-9
    e8 = ising_exact(8, T_CRITICAL)
    assert abs(e8.energy_per_spin - -1.4915891074) < 1e-9
    assert abs(e8.m2 - 0.6469115750) < 1e-9
    assert abs(ising_exact(4, T_CRITICAL).m2 - 0.7613589086) < 1e-9


def test_kaufman_matches_transfer_matrix_beyond_enumeration():
    for L in (5, 6):
        for T in (1.5, T_CRITICAL, 4.0):
            assert abs(ising_log_z(L, T) - ising_transfer_matrix(L, T)[0]) < 1e-9


def test_transfer_matrix_with_field_matches_enumeration():
    lz, m, m2 = ising_transfer_matrix(3, 2.0, h=0.3)
    brute = enumerate_exact(Ising(3, T=2.0, h=0.3), correlations=True)
    assert abs(lz - brute.log_z) < 1e-10 and abs(m2 - brute.m2) < 1e-10
    assert abs(m - brute.mean_spin.mean()) < 1e-10


def test_curie_weiss_exact_matches_enumeration():
    model = CurieWeiss(12, beta=1.3, h=0.1)
    brute, exact = enumerate_exact(model), spins.curie_weiss_exact(12, 1.3, h=0.1)
    for field in ("log_z", "energy_per_spin", "specific_heat", "m2", "abs_m"):
        assert abs(getattr(brute, field) - getattr(exact, field)) < 1e-10, field
    assert model.log_z == exact.log_z


def test_onsager_magnetization():
    assert spins.onsager_magnetization(3.0) == 0.0
    assert abs(spins.onsager_magnetization(2.0) - 0.9113194) < 1e-6


# -- energies and local fields --------------------------------------------------------------------

def _models():
    xi = np.asarray(jax.random.rademacher(jax.random.key(3), (3, 20)), float)
    return [Ising(4, T=2.0, h=0.2), Ising(5, T=1.5, J=-1.0), Ising(2, T=1.0),
            CurieWeiss(30, beta=0.7, h=-0.2), random_bm(9, 0),
            spins.Hopfield(patterns=xi, beta=2.0), Ising(6, T=2.0).tempered(0.37)]


@pytest.mark.parametrize("model", _models(), ids=lambda m: getattr(m, "name", "tempered"))
def test_flip_costs_match_energy_differences(model):
    s = np.asarray(jax.random.rademacher(jax.random.key(1), (model.dim,)), float)
    s = jnp.asarray(s)
    sites = jnp.arange(model.dim)

    @jax.jit
    def costs(s):
        cache = model.sweep_cache(s)
        brute = jax.vmap(lambda i: model(s.at[i].multiply(-1)) - model(s))(sites)
        return brute, (model.flip_delta(s), jax.vmap(lambda i: model.site_delta(s, i))(sites),
                       jax.vmap(lambda i: model.cached_site_delta(s[i], cache, i))(sites))

    brute, fast = costs(s)
    for f in fast:
        np.testing.assert_allclose(f, brute, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("model", [Ising(4), Ising(5), Ising(2)], ids=["L4", "L5", "L2"])
def test_colors_are_independent_sets_covering_the_lattice(model):
    masks = np.asarray(model.colors)
    assert np.all(masks.sum(0) == 1)
    s0 = np.ones(model.dim)
    for mask in masks:  # flipping a whole colour changes U by the sum of the single flips
        s1 = np.where(mask, -s0, s0)
        joint = float(model(jnp.asarray(s1)) - model(jnp.asarray(s0)))
        singles = jnp.sum(jnp.where(mask, model.flip_delta(jnp.asarray(s0)), 0))
        assert abs(joint - float(singles)) < 1e-9
    assert masks.shape[0] == 2 if model.L % 2 == 0 else masks.shape[0] <= 4


# -- kernels vs exact enumeration (issue 5, acceptance 1) ------------------------------------------

TEMPS = np.array([2.0, T_CRITICAL, 3.0])


def _ising_chains(sweep, flip_prob=None, num_chains=32, num_sweeps=2500, burn=200):
    """Chains of L = 4 at the three temperatures at once (one compile): energy and m^2 draws."""
    base = Ising(4, T=1.0)

    def chain(key, beta):
        model = base.tempered(beta)
        x = model.base.random_spins(key)

        def body(st, k):
            if flip_prob is None:
                st, _ = sweep(k, st, model)
            else:
                st, _ = spins.spin_sweep(k, st, model, flip_prob)
            return st, (base.hamiltonian(st.position) / 16, jnp.mean(st.position) ** 2)

        return jax.lax.scan(body, spins.spin_init(x, model), jax.random.split(key, num_sweeps))[1]

    keys = jax.random.split(jax.random.key(11), (3, num_chains))
    e, m2 = jax.jit(jax.vmap(jax.vmap(chain, (0, None)), (0, 0)))(keys, jnp.asarray(1.0 / TEMPS))
    return np.asarray(e)[:, :, burn:], np.asarray(m2)[:, :, burn:]


@pytest.mark.parametrize("sweep", [spins.metropolis_sweep, spins.gibbs_sweep],
                         ids=["metropolis", "gibbs"])
def test_ising_l4_energy_and_m2_match_enumeration(sweep):
    e, m2 = _ising_chains(sweep)
    for k, T in enumerate(TEMPS):
        exact = enumerate_exact(Ising(4, T=T))
        for draws, truth in ((e[k], exact.energy_per_spin), (m2[k], exact.m2)):
            se = float(az.mcse(draws))
            assert abs(draws.mean() - truth) < 4 * se, (T, draws.mean(), truth, se)
            assert se < 0.01


def test_wrong_flip_rule_is_rejected():
    """Power check: Metropolis with exp(-dU/2) samples at 2T; the same test must fail."""
    e, _ = _ising_chains(None, flip_prob=lambda d: jnp.exp(-jnp.maximum(d, 0.0) / 2),
                         num_chains=8, num_sweeps=700)
    exact = enumerate_exact(Ising(4, T=TEMPS[0]))
    assert abs(e[0].mean() - exact.energy_per_spin) > 20 * float(az.mcse(e[0]))


def test_generic_function_path_matches_model_path():
    """A plain function of the spins (no local fields) gives the same sweep as the model."""
    model = random_bm(8, 1)
    fn = lambda s: model(s)  # noqa: E731
    x = model.random_spins(jax.random.key(0))
    keys = jax.random.split(jax.random.key(1), 20)

    def run(sweep, potential):
        def body(state, k):
            return sweep(k, state, potential)[0], None
        return jax.jit(lambda ks: jax.lax.scan(body, spins.spin_init(x, potential), ks)[0])(keys)

    for sweep in (spins.gibbs_sweep, spins.metropolis_sweep):
        a, b = run(sweep, model), run(sweep, fn)
        assert not np.array_equal(a.position, x)
        np.testing.assert_array_equal(a.position, b.position)
        assert abs(float(a.potential_energy - b.potential_energy)) < 1e-10


# -- NumPyro adapter ----------------------------------------------------------------------------

def _run_mcmc(kernel_cls, model, method, num_samples=300, progress_bar=False):
    mcmc = MCMC(kernel_cls(potential_fn=model), num_warmup=50, num_samples=num_samples,
                num_chains=4, chain_method=method, progress_bar=progress_bar)
    init = model.random_spins(jax.random.key(5), 4)
    mcmc.run(jax.random.key(7), init_params=init,
             extra_fields=("potential_energy", "accept_prob"))
    return mcmc


def test_numpyro_chain_methods_agree_and_restart():
    model = Ising(4, T=T_CRITICAL)
    runs = {m: _run_mcmc(spins.SpinGibbs, model, m)
            for m in ("sequential", "vectorized", "parallel")}
    ref = runs["vectorized"].get_samples()
    for m, mcmc in runs.items():
        np.testing.assert_array_equal(mcmc.get_samples(), ref, err_msg=m)
    z = np.asarray(ref)
    assert set(np.unique(z)) == {-1.0, 1.0}
    pe = runs["vectorized"].get_extra_fields()["potential_energy"]
    np.testing.assert_allclose(pe, model.potential(jnp.asarray(z)), rtol=1e-12)
    mcmc = runs["vectorized"]
    mcmc.post_warmup_state = mcmc.last_state
    mcmc.run(mcmc.post_warmup_state.rng_key)
    assert mcmc.get_samples().shape == (4 * 300, 16)
    dt = az.from_numpyro(mcmc)
    assert np.all(np.isfinite(az.ess(dt)["Param:0"].values))
    met = [_run_mcmc(spins.SpinMetropolis, model, m, num_samples=50).get_samples()
           for m in ("sequential", "vectorized")]
    np.testing.assert_array_equal(*met)


def test_numpyro_spin_sampler_matches_exact_energy():
    model = Ising(4, T=T_CRITICAL)
    mcmc = _run_mcmc(spins.SpinGibbs, model, "vectorized", num_samples=2000)
    z = mcmc.get_samples(group_by_chain=True)
    e = np.asarray(model.hamiltonian(z)) / 16
    assert abs(e.mean() - ising_exact(4, T_CRITICAL).energy_per_spin) < 4 * float(az.mcse(e))


def test_spin_sampler_bad_input():
    model = Ising(4, T=2.0)
    with pytest.raises(ValueError, match="potential_fn"):
        spins.SpinGibbs(model=lambda: None)
    with pytest.raises(ValueError, match="init_params"):
        MCMC(spins.SpinGibbs(potential_fn=model), num_warmup=1, num_samples=1,
             progress_bar=False).run(jax.random.key(0), init_params=0.5 * np.ones(16))
    with pytest.raises(ValueError, match="coordinates"):
        MCMC(spins.SpinMetropolis(potential_fn=model.energy), num_warmup=1, num_samples=1,
             progress_bar=False).run(jax.random.key(0), init_params=np.ones(9))


# -- models: bad input --------------------------------------------------------------------------

@pytest.mark.parametrize("make, match", [
    (lambda: Ising(1), "L"), (lambda: Ising(4, T=-1.0), "T"),
    (lambda: Ising(4, T=1, beta=1), "T= or beta="),
    (lambda: Ising(4, beta=float("nan")), "beta"), (lambda: CurieWeiss(0), "N"),
    (lambda: BoltzmannMachine(J=np.ones((3, 3))), "diagonal"),
    (lambda: BoltzmannMachine(J=np.array([[0, 1.0], [0.5, 0]])), "symmetric"),
    (lambda: BoltzmannMachine(J=np.zeros((3, 3)), h=np.zeros(2)), "h"),
    (lambda: spins.Hopfield(patterns=np.array([[1, 0, 1]])), "patterns"),
    (lambda: enumerate_exact(CurieWeiss(30)), "N <= 24"),
    (lambda: ising_transfer_matrix(9, 2.0), "L <= 8"),
    (lambda: ising_log_z(4, 0.0), "T"),
])
def test_bad_input_raises_value_error(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_models_are_energies_for_the_rest_of_the_library():
    model = Ising(4, T=2.0)
    assert model.energy.dim == 16 and model.T == 2.0 and model.beta == 0.5
    assert float(model(jnp.ones(16))) == -32 / 2.0
    assert CurieWeiss(10, T=0.5).beta == 2.0
    assert ep.spins is spins
