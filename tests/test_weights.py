"""ebm_ppl.weights: one implementation of the weight arithmetic, the same on JAX and NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_ppl import weights as W

LW = np.log(np.array([1.0, 2.0, 3.0, 0.0, 4.0]))  # one zero weight


def test_known_values_on_numpy_and_jax_agree():
    for lw in (LW, jnp.asarray(LW)):
        assert float(W.log_mean_exp(lw)) == pytest.approx(np.log(10.0 / 5.0), abs=1e-12)
        assert float(W.ess(lw)) == pytest.approx(100.0 / 30.0, abs=1e-12)  # (sum w)^2 / sum w^2
        assert float(W.ess_fraction(lw)) == pytest.approx(100.0 / 30.0 / 5.0, abs=1e-12)
        np.testing.assert_allclose(np.exp(W.normalize_log_weights(lw)), [0.1, 0.2, 0.3, 0, 0.4],
                                   atol=1e-12)
    assert isinstance(W.ess(LW), np.ndarray | np.floating)
    assert isinstance(W.ess(jnp.asarray(LW)), jax.Array)
    assert float(W.ess(np.full(3, -np.inf))) == 0.0 == float(W.ess(jnp.full(3, -jnp.inf)))
    assert float(W.ess(LW + 800.0)) == pytest.approx(100.0 / 30.0)  # no overflow


def test_conditional_ess_with_equal_weights_is_the_ess_of_the_increment():
    inc = np.log(np.array([1.0, 2.0, 3.0, 4.0]))
    for xp in (np, jnp):
        got = W.conditional_ess(xp.zeros(4), xp.asarray(inc))
        assert float(got) == pytest.approx(float(W.ess_fraction(inc)), abs=1e-12)


def test_one_meaning_of_resample_threshold():
    lw = np.log(np.array([1.0, 1.0, 1.0, 5.0]))  # ESS fraction 64/28/4 = 0.571
    assert W.should_resample(lw, 0.6) and not W.should_resample(lw, 0.5)
    assert W.should_resample(np.zeros(4), 1.0) and not W.should_resample(lw, 0.0)
    assert bool(jax.jit(W.should_resample)(jnp.asarray(lw), 0.6))
    # training's old "relative variance above t" is "ESS fraction below 1/(1+t)"
    n_over_ess_minus_1 = 1.0 / float(W.ess_fraction(lw)) - 1.0  # = 0.75
    for t in (0.7, 0.8):
        assert W.should_resample(lw, W.threshold_from_variance(t)) == (n_over_ess_minus_1 > t)


def test_systematic_resample_copies_each_walker_floor_or_ceil_of_n_w_times():
    lw = jnp.log(jnp.array([0.05, 0.15, 0.3, 0.5]))
    for seed in range(5):
        idx = np.asarray(W.systematic_resample(jax.random.key(seed), lw, 40))
        counts = np.bincount(idx, minlength=4)
        expected = 40 * np.array([0.05, 0.15, 0.3, 0.5])
        assert np.all(np.abs(counts - expected) < 1.0 + 1e-9), counts
    dead = W.systematic_resample(jax.random.key(0), jnp.full(4, -jnp.inf))
    np.testing.assert_array_equal(dead, np.arange(4))
