"""Training configured the optax way: each estimator factory binds its own options and checks
them at once; ``train(..., estimator=, optimizer=)``; the old keyword spelling still works,
gives the same numbers, and warns."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import assert_same

import ebm_ppl as ep
from ebm_ppl.training import estimators as E
from ebm_ppl.weights import threshold_from_variance

DATA = jax.random.normal(jax.random.key(100), (64, 2)) * 0.7 + jnp.array([0.5, -0.5])
PARAMS0 = {"mu": jnp.zeros(2), "log_s2": jnp.zeros(())}


def energy(params, x):
    return 0.5 * jnp.sum((x - params["mu"]) ** 2) * jnp.exp(-params["log_s2"])


def _fit(**kw):
    return ep.train(energy, PARAMS0, DATA, key=jax.random.key(9), optimizer=optax.adam(0.05),
                    num_iterations=6, progress_bar=False, **kw)


def _same(a, b):
    assert_same(a.params, b.params, "params")
    assert_same(a.history, b.history, "history")


@pytest.mark.parametrize("old, new", [
    (dict(method="jarzynski", num_walkers=64, step_size=0.05, log_z0=float(np.log(2 * np.pi)),
          num_equilibration_steps=5, resample_threshold=0.25),
     E.jarzynski(num_walkers=64, step_size=0.05, log_z0=float(np.log(2 * np.pi)),
                 num_equilibration_steps=5, resample_threshold=1 / 1.25)),
    (dict(method="pcd", num_walkers=64, step_size=0.05, noise_scale=9.0),  # noise_scale: not PCD's
     E.pcd(num_walkers=64, step_size=0.05)),
    (dict(method="sm", sm_trace="exact"), E.score_matching(trace="exact")),
])
def test_old_keyword_spelling_warns_and_gives_the_same_numbers(old, new):
    with pytest.warns(DeprecationWarning, match=r"estimator=ep\.training\."):
        before = _fit(**old)
    _same(before, _fit(estimator=new))
    assert before.method == new.method


def test_a_method_name_is_its_default_estimator_without_warning(recwarn):
    _same(_fit(estimator="dsm"), _fit(estimator=E.denoising_score_matching()))
    assert not [w for w in recwarn if issubclass(w.category, DeprecationWarning)]


def test_resample_threshold_means_an_ess_fraction_in_the_new_spelling():
    """Old: resample when E[w^2]/E[w]^2 - 1 > t. New: when ESS/n < threshold = 1/(1+t).
    Resampling every iteration (threshold 1) and never (0) must differ, and the old t maps."""
    kw = dict(num_walkers=64, step_size=0.3, log_z0=float(np.log(2 * np.pi)),
              num_equilibration_steps=5)
    always = _fit(estimator=E.jarzynski(resample_threshold=1.0, **kw)).history["resampled"]
    never = _fit(estimator=E.jarzynski(resample_threshold=0.0, **kw)).history["resampled"]
    assert always.all() and not never.any()
    assert E.jarzynski().option("resample_threshold") == threshold_from_variance(0.4)


@pytest.mark.parametrize("call, match", [
    (lambda: E.jarzynski(num_walkers=0), "num_walkers"),
    (lambda: E.jarzynski(resample_threshold=1.5), "resample_threshold is an ESS fraction"),
    (lambda: E.cd(reinit_every=0), "reinit_every"),
    (lambda: E.score_matching(trace="fast"), "sm_trace"),
    (lambda: E.nce(noise_ratio=0), "noise_ratio"),
    (lambda: E.nce(noise="gauss"), "noise must be a NumPyro distribution"),
    (lambda: _fit(estimator="bogus"), "estimator"),
    (lambda: _fit(estimator=E.pcd(), num_walkers=5), "not beside estimator="),
])
def test_options_are_checked_when_bound(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_unknown_keyword_is_a_type_error():
    with pytest.raises(TypeError, match="unexpected keyword argument 'num_walker'"):
        _fit(num_walker=5)


def test_training_train_is_the_function_and_the_driver_module_still_imports():
    from ebm_ppl.training.train import METHODS  # the old module path

    assert callable(ep.training.train) and ep.training.train is ep.train
    assert METHODS == E.METHODS and ep.training.loop.train is ep.train
