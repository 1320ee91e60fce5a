"""Free energies of spin systems by annealing from beta = 0 through the evidence engine
(issue 5, acceptance 2 and 4)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ebm_ppl as ep
from ebm_ppl import spins
from ebm_ppl.spins import T_CRITICAL


def _check(result, exact, tol):
    err = result.log_z - exact
    assert abs(err) < 4 * result.log_z_se, (result.log_z, result.log_z_se, exact)
    assert abs(err) < tol and result.log_z_se < tol, (result.log_z, result.log_z_se, exact)


def test_ising_l8_at_tc_matches_kaufman():
    """Acceptance 2: within 0.1 of Kaufman, the reported standard error covering the truth."""
    model = spins.Ising(8, T=T_CRITICAL)
    exact = spins.ising_log_z(8, T_CRITICAL)
    res = spins.log_partition(model, key=jax.random.key(0), num_walkers=4096, target_ess=0.9,
                              progress_bar=False)
    assert isinstance(res, ep.EvidenceResult) and res.schedule[0] == 0 and res.schedule[-1] == 1
    _check(res, exact, 0.1)
    # resolution: the log Z of a temperature 1% away is rejected
    assert abs(res.log_z - spins.ising_log_z(8, 1.01 * T_CRITICAL)) > 4 * res.log_z_se


def test_boltzmann_machine_log_z_matches_enumeration(kernel="metropolis"):
    rng = np.random.default_rng(4)
    a = np.triu(rng.normal(size=(12, 12)) * 0.6, 1)
    model = spins.BoltzmannMachine(J=a + a.T, h=0.3 * rng.normal(size=12))
    res = spins.log_partition(model, key=jax.random.key(1), kernel=kernel, num_walkers=1024,
                              progress_bar=False)
    _check(res, spins.enumerate_exact(model).log_z, 0.1)


def test_curie_weiss_reduced():
    """Acceptance 4, reduced: N = 1000, beta = 1.5 with 1024 walkers (se ~ 0.12); the full
    0.1 criterion is the slow test."""
    model = spins.CurieWeiss(1000, beta=1.5)
    res = spins.log_partition(model, key=jax.random.key(2), num_walkers=1024, target_ess=0.9,
                              progress_bar=False)
    _check(res, model.log_z, 0.5)


@pytest.mark.slow
def test_curie_weiss_n1000_beta15_within_01():
    model = spins.CurieWeiss(1000, beta=1.5)
    res = spins.log_partition(model, key=jax.random.key(3), num_walkers=16384, target_ess=0.9,
                              progress_bar=False)
    _check(res, model.log_z, 0.1)


def test_free_energy_bad_input():
    model = spins.Ising(4, T=2.0)
    with pytest.raises(ValueError, match="spin model"):
        spins.log_partition(lambda s: s.sum(), key=jax.random.key(0))
    with pytest.raises(ValueError, match="kernel"):
        spins.log_partition(model, key=jax.random.key(0), kernel="hmc")
    with pytest.raises(ValueError, match="num_walkers"):
        spins.log_partition(model, key=jax.random.key(0), num_walkers=0)
    with pytest.raises(ValueError, match="key"):
        spins.log_partition(model, key=3)


def test_ep_log_partition_hands_spin_models_to_spins_log_partition():
    """The top-level entry point works on a spin model too: same key, same estimate as
    ep.spins.log_partition, within 4 se of the exact Ising log Z; options that only continuous
    energies have are refused by name."""
    model = spins.Ising(4, T=2.5)
    kw = dict(key=jax.random.key(0), num_walkers=2048, progress_bar=False)
    top = ep.log_partition(model, **kw)
    assert top.log_z == spins.log_partition(model, **kw).log_z
    assert abs(top.log_z - spins.ising_log_z(4, 2.5)) < 4 * top.log_z_se
    with pytest.raises(ValueError, match="method, step_size: not options of spin models"):
        ep.log_partition(model, key=jax.random.key(0), method="mala", step_size=jnp.asarray(0.1))


def test_a_spin_model_gives_its_own_annealing_path():
    """evidence does not import spins: the model hands ep.log_partition its path; a look-alike
    that is not a SpinModel is told what to subclass instead of failing inside the engine."""
    model = spins.Ising(4, T=2.5)
    path = model.annealing_path()
    assert path.log_z0 == pytest.approx(16 * np.log(2.0)) and path.model is model

    class LookAlike:
        dim = 4

        def tempered(self, t):
            return self

        def random_spins(self, key, num=None):
            return model.random_spins(key, num)

    with pytest.raises(TypeError, match="subclass ep.spins.SpinModel"):
        ep.log_partition(LookAlike(), key=jax.random.key(0), progress_bar=False)
