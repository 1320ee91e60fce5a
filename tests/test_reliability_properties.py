"""Property-based tests (hypothesis) of the weight arithmetic, issue 8.

* log Z shifts by exactly -c when U shifts by c (through the annealing engine, eq. 104);
* weights, ESS, conditional ESS and resampling are invariant to adding a constant to every
  walker's log weight (and log-mean-exp shifts by it);
* systematic resampling is unbiased (E[count_i] = n W_i) with counts floor/ceil(n W_i), and
  ``resample_if`` keeps the running log Z;
* the adaptive schedule is strictly increasing, meets its conditional-ESS target and reaches 1.

Example counts are small and compiled programs are shared across examples (shapes fixed,
varying numbers passed as traced arguments).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from jax.tree_util import Partial

import ebm_ppl as ep
from ebm_ppl.evidence import moves, resampling as rs
from ebm_ppl.evidence.schedules import Adaptive, increment, next_beta

SETTINGS = dict(deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
N = 32
finite_log_w = arrays(np.float64, N, elements=st.floats(-30.0, 30.0))
constants = st.floats(-1e4, 1e4)


def _with_dead(log_w, dead):
    """Some walkers dead (log weight -inf), at least one alive."""
    lw, mask = np.array(log_w), np.array(dead)
    mask[-1] = False
    lw[mask] = -np.inf
    return lw


# -- log Z shifts by -c when U shifts by c ---------------------------------------------------

TARGET = ep.targets.anisotropic_gaussian_2d()
PATH = ep.evidence.geometric_path(TARGET.energy, dist.Normal(jnp.zeros(2), 2.0).to_event(1))
START = jax.jit(PATH.evaluate_batch)(PATH.sample_base(jax.random.key(0), 256))


def _shifted_delta(c, state):
    return state.delta + c  # V = U - U_0, so U -> U + c is V -> V + c


def _anneal(c):
    """``c`` a constant, or one shift per walker (the same shapes: compiled once)."""
    c = jnp.broadcast_to(jnp.asarray(c, START.delta.dtype), START.delta.shape)
    return ep.evidence.anneal(
        jax.random.key(1), START, delta_fn=Partial(_shifted_delta, c),
        move=moves.hmc_move(PATH, 3), schedule=Adaptive(0.6), num_moves=2, step_size=0.3,
        num_groups=4, progress_bar=False)


@pytest.fixture(scope="module")
def unshifted():
    return _anneal(0.0)


@settings(max_examples=6, **SETTINGS)
@given(c=st.floats(-1e3, 1e3))
def test_log_z_shifts_by_minus_c_when_the_energy_shifts_by_c(unshifted, c):
    out = _anneal(c)
    tol = 1e-9 * max(1.0, abs(c))
    assert abs(out.log_z - (unshifted.log_z - c)) < tol
    np.testing.assert_allclose(out.group_log_z, unshifted.group_log_z - c, atol=tol, rtol=0)
    np.testing.assert_allclose(out.history["beta"], unshifted.history["beta"], rtol=1e-9)
    # the same walkers and the same self-normalized weights
    np.testing.assert_allclose(out.state.position, unshifted.state.position, rtol=1e-7,
                               atol=1e-9)
    np.testing.assert_allclose(rs.normalize_log_weights(out.log_weights),
                               rs.normalize_log_weights(unshifted.log_weights), atol=1e-7)


def test_the_shift_property_is_not_vacuous(unshifted):
    """A shift that does not cancel (here a walker-dependent one) changes log Z: the property
    above would catch arithmetic that dropped the normalization of the increments."""
    assert np.all(np.diff(unshifted.history["beta"]) > 0) and unshifted.history["beta"][-1] == 1
    assert abs(unshifted.log_z - TARGET.log_z) < 4 * np.std(unshifted.group_log_z) / 2 + 0.05
    wrong = _anneal(0.3 * START.position[:, 0])
    assert abs(wrong.log_z - unshifted.log_z) > 1e-3


# -- invariance to a constant added to every log weight --------------------------------------

@jax.jit
def _weight_functions(lw, inc):
    return (rs.normalize_log_weights(lw), rs.log_mean_exp(lw), rs.ess(lw),
            rs.conditional_ess(lw, inc), rs.systematic_resample(jax.random.key(3), lw))


@settings(max_examples=25, **SETTINGS)
@given(log_w=finite_log_w, c=constants,
       dead=arrays(np.bool_, N, elements=st.booleans()),
       inc=arrays(np.float64, N, elements=st.floats(-5.0, 5.0)))
def test_weights_are_invariant_to_a_common_constant(log_w, c, dead, inc):
    lw = _with_dead(log_w, dead)
    shifted = lw + c
    scale = 1e-12 * (1.0 + abs(c))  # the rounding of lw + c
    norm_s, lme_s, ess_s, cess_s, idx = _weight_functions(shifted, inc)
    norm, lme, ess, cess, _ = _weight_functions(lw, inc)
    np.testing.assert_allclose(norm_s, norm, atol=100 * scale)
    assert abs(float(lme_s) - float(lme) - c) < 100 * scale
    assert np.isclose(ess_s, ess, rtol=1e-9) and np.isclose(cess_s, cess, rtol=1e-9)
    assert np.isclose(ep.diagnostics.kish_ess(shifted), ep.diagnostics.kish_ess(lw), rtol=1e-9)
    np.testing.assert_allclose(ep.diagnostics.normalized_weights(shifted),
                               ep.diagnostics.normalized_weights(lw), atol=1e-9)
    res = ep.EvidenceResult(0.0, 0.0, np.zeros((N, 1)), shifted, np.zeros(0), np.zeros(2), 0, 0)
    ref = ep.EvidenceResult(0.0, 0.0, np.zeros((N, 1)), lw, np.zeros(0), np.zeros(2), 0, 0)
    np.testing.assert_allclose(res.weights, ref.weights, atol=1e-9)
    assert np.isclose(res.final_ess, ref.final_ess, rtol=1e-9)
    # dead walkers keep weight exactly zero and are never drawn
    assert np.all(res.weights[np.isinf(lw)] == 0.0)
    assert not np.any(np.isinf(lw[np.asarray(idx)]))


# -- systematic resampling is unbiased ---------------------------------------------------------

REPS = 400
_counts = jax.jit(jax.vmap(lambda k, lw: jnp.bincount(rs.systematic_resample(k, lw), length=N),
                           in_axes=(0, None)))


def check_resampler_counts(counts, log_w):
    """Counts of each walker over REPS independent resamples: each is floor or ceil of n W_i,
    and their mean is n W_i within 4 standard errors (a count's variance is at most 1/4)."""
    w = np.exp(log_w - np.max(log_w))
    expected = N * w / w.sum()
    assert np.all(counts.sum(axis=1) == N)
    assert np.all(counts >= np.floor(expected) - 1e-9)
    assert np.all(counts <= np.ceil(expected) + 1e-9)
    assert np.all(np.abs(counts.mean(axis=0) - expected) < 4 * 0.5 / np.sqrt(REPS) + 1e-9)


@settings(max_examples=12, **SETTINGS)
@given(log_w=arrays(np.float64, N, elements=st.floats(-8.0, 8.0)),
       dead=arrays(np.bool_, N, elements=st.booleans()), seed=st.integers(0, 2**31 - 1))
def test_systematic_resampling_is_unbiased(log_w, dead, seed):
    lw = _with_dead(log_w, dead)
    keys = jax.random.split(jax.random.key(seed), REPS)
    check_resampler_counts(np.asarray(_counts(keys, jnp.asarray(lw))), lw)


def test_the_unbiasedness_check_rejects_wrong_resamplers():
    lw = np.log(np.linspace(0.2, 3.0, N))
    keys = jax.random.split(jax.random.key(0), REPS)
    multinomial = jax.vmap(lambda k: jnp.bincount(
        jax.random.categorical(k, jnp.asarray(lw), shape=(N,)), length=N))(keys)
    tempered = _counts(keys, jnp.asarray(2.0 * lw))  # resampling with the wrong weights
    for wrong in (multinomial, tempered):
        with pytest.raises(AssertionError):
            check_resampler_counts(np.asarray(wrong), lw)


_resample_if = jax.jit(rs.resample_if)  # the threshold is traced: one compilation


@settings(max_examples=20, **SETTINGS)
@given(log_w=finite_log_w, dead=arrays(np.bool_, N, elements=st.booleans()),
       threshold=st.sampled_from([0.0, 0.3, 0.7, 1.0]))
def test_resample_if_keeps_the_running_log_z(log_w, dead, threshold):
    lw = jnp.asarray(_with_dead(log_w, dead))
    out = _resample_if(jax.random.key(5), lw, threshold)
    after = float(out.log_z_increment + rs.log_mean_exp(out.log_w))
    assert abs(after - float(rs.log_mean_exp(lw))) < 1e-10 * (1 + abs(after))
    if bool(out.resampled):
        assert np.all(np.isfinite(np.asarray(lw)[np.asarray(out.indices)]))


# -- the adaptive schedule ---------------------------------------------------------------------

_next = jax.jit(next_beta, static_argnums=3)
_cess = jax.jit(lambda lw, v, db: rs.conditional_ess(lw, increment(v, db)))


@settings(max_examples=10, **SETTINGS)
@given(v=arrays(np.float64, N, elements=st.floats(-50.0, 50.0)),
       target=st.sampled_from([0.3, 0.6, 0.9]), resample=st.booleans())
def test_adaptive_schedule_is_monotone_meets_its_target_and_reaches_one(v, target, resample):
    sched = Adaptive(target_ess=target, min_step=1e-4)
    v = jnp.asarray(v)
    log_w, beta, betas = jnp.zeros(N), 0.0, [0.0]
    for _ in range(int(1 / sched.min_step) + 1):
        b = float(_next(log_w, v, jnp.asarray(beta), sched))
        assert beta < b <= 1.0
        if b < 1.0 and b > beta + sched.min_step:  # an interior bisection result
            assert float(_cess(log_w, v, b - beta)) >= target - 1e-9
        log_w = jnp.zeros(N) if resample else log_w + increment(v, b - beta)
        beta = b
        betas.append(b)
        if b == 1.0:
            break
    assert betas[-1] == 1.0, f"did not reach 1 in {len(betas) - 1} stages"
    assert np.all(np.diff(betas) > 0)
    if float(jnp.std(v)) == 0.0:  # constant V: every beta' has CESS 1, one stage suffices
        assert len(betas) == 2
