"""Weights, ESS and systematic resampling (ebm_ppl.evidence.resampling)."""

import jax
import jax.numpy as jnp
import numpy as np

from ebm_ppl.evidence import resampling as rs


def test_log_mean_exp_and_ess_match_direct_formulas():
    rng = np.random.default_rng(0)
    lw = rng.normal(size=257) * 3.0 + 700.0  # large offset: overflows without the max trick
    w = np.exp(lw - lw.max())
    assert np.isclose(rs.log_mean_exp(jnp.asarray(lw)), lw.max() + np.log(w.mean()))
    assert np.isclose(rs.ess(jnp.asarray(lw)), w.sum() ** 2 / (w**2).sum())
    assert np.isclose(rs.ess_fraction(jnp.zeros(10)), 1.0)
    one_hot = jnp.full(10, -jnp.inf).at[3].set(0.0)
    assert np.isclose(rs.ess(one_hot), 1.0)
    assert rs.ess(jnp.full(4, -jnp.inf)) == 0.0


def test_conditional_ess_reduces_to_ess_with_equal_weights_and_uses_weights():
    rng = np.random.default_rng(1)
    inc = jnp.asarray(rng.normal(size=100))
    assert np.isclose(rs.conditional_ess(jnp.zeros(100), inc), rs.ess_fraction(inc))
    # weights concentrated on one walker: the increment is then one number, CESS = 1
    lw = jnp.full(100, -1e3).at[7].set(0.0)
    assert np.isclose(rs.conditional_ess(lw, inc), 1.0, atol=1e-8)


def test_systematic_resample_counts_are_floor_or_ceil_and_unbiased():
    rng = np.random.default_rng(2)
    n = 1000
    lw = jnp.asarray(rng.normal(size=n) * 2.0)
    W = np.asarray(jnp.exp(rs.normalize_log_weights(lw)))
    counts_sum = np.zeros(n)
    reps = 200
    for s in range(reps):
        idx = np.asarray(rs.systematic_resample(jax.random.key(s), lw))
        counts = np.bincount(idx, minlength=n)
        assert counts.sum() == n
        assert np.all(counts >= np.floor(n * W) - 1e-9) and np.all(counts <= np.ceil(n * W) + 1e-9)
        counts_sum += counts
    # E[count_i] = n W_i: the largest-weight walker's mean count within a few standard errors
    i = int(np.argmax(W))
    assert abs(counts_sum[i] / reps - n * W[i]) < 4 * 0.5 / np.sqrt(reps) + 1e-9
    # a wrong method (uniform resampling) would give mean counts of 1 everywhere
    assert n * W[i] > 5


def test_resample_if_preserves_running_log_z_and_respects_threshold():
    key = jax.random.key(3)
    lw = jnp.asarray(np.random.default_rng(3).normal(size=64) * 4.0)
    before = rs.log_mean_exp(lw)
    out = rs.resample_if(key, lw, threshold=0.5)
    assert bool(out.resampled)
    assert np.isclose(out.log_z_increment + rs.log_mean_exp(out.log_w), before)
    assert np.all(np.asarray(out.log_w) == 0.0)
    kept = rs.resample_if(key, jnp.zeros(64), threshold=0.5)
    assert not bool(kept.resampled) and np.all(np.asarray(kept.indices) == np.arange(64))
    always = rs.resample_if(key, jnp.zeros(64), threshold=1.0)
    assert bool(always.resampled)
    # vmapped over groups (both branches run as a select)
    groups = jax.vmap(rs.resample_if, in_axes=(0, 0, None))(
        jax.random.split(key, 2), jnp.stack([lw, jnp.zeros(64)]), 0.5)
    assert np.asarray(groups.resampled).tolist() == [True, False]


def test_dead_population_gives_identity_indices_and_minus_inf():
    lw = jnp.full(8, -jnp.inf)
    assert np.all(np.asarray(rs.systematic_resample(jax.random.key(0), lw)) == np.arange(8))
    assert rs.log_mean_exp(lw) == -jnp.inf
