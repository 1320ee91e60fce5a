"""log_partition / log_evidence: input errors, baselines (IS, TI, NUTS), BAR check, ArviZ
export, the engine's contract with a custom move, compilation caching, and (slow) the
calibration of log_z_se over 50 seeds (acceptance 6 of issue 3)."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

import ebm_ppl as ep
from ebm_ppl.evidence import engine, schedules


@pytest.fixture(scope="module")
def aniso():
    return ep.targets.anisotropic_gaussian_2d()


def ref2(scale=2.0):
    return dist.Normal(jnp.zeros(2), scale).to_event(1)


# -- input errors, raised before any tracing -------------------------------------------------

@pytest.mark.parametrize("fn", [ep.log_partition, ep.log_evidence])
def test_public_signatures_carry_every_run_option_with_its_default(fn):
    """Both entry points build one AnnealOptions from their keywords: each must spell out
    every option, with the same default (None: the method's default)."""
    import dataclasses
    import inspect

    public = inspect.signature(fn).parameters
    options = inspect.signature(ep.evidence.AnnealOptions).parameters
    assert set(options) == {f.name for f in dataclasses.fields(ep.evidence.AnnealOptions)}
    for name, p in options.items():
        if name in ("method", "adapt_gain"):
            continue
        assert name in public, name
        assert public[name].default == p.default, name


@pytest.mark.parametrize("kwargs, match", [
    (dict(method="smc"), "method"),
    (dict(num_walkers=0), "num_walkers"),
    (dict(num_walkers=100, num_groups=16), "num_walkers=100"),
    (dict(step_size=-1.0), "step_size"),
    (dict(target_ess=1.5), "target_ess"),
    (dict(num_moves=0), "num_moves"),
    (dict(schedule="cosine", num_stages=3), "schedule"),
    (dict(schedule="linear"), "num_stages"),
    (dict(schedule=[0.0, 0.7, 0.5, 1.0]), "increasing"),
    (dict(reference=dist.Normal(jnp.zeros(2), 1.0)), "to_event"),
    (dict(reference=dist.Normal(jnp.zeros(3), 1.0).to_event(1)), "event_shape"),
    (dict(reference="normal"), "reference"),
    (dict(key=0), "key"),
    (dict(step_jitter=-1.0), "step_jitter"),
])
def test_bad_input_is_a_value_error_naming_the_argument(aniso, kwargs, match):
    args = dict(key=jax.random.key(0), num_walkers=64, progress_bar=False, reference=ref2())
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        ep.log_partition(aniso, **args)


def test_plain_function_needs_dim_and_model_must_be_callable():
    with pytest.raises(ValueError, match="dim"):
        ep.log_partition(lambda x: jnp.sum(x**2), key=jax.random.key(0), progress_bar=False)
    with pytest.raises(ValueError, match="model"):
        ep.log_evidence(42, key=jax.random.key(0), progress_bar=False)


# -- baselines ------------------------------------------------------------------------------------

def test_importance_sampling_eq2(aniso):
    res = ep.log_partition(aniso, key=jax.random.key(1), reference=ref2(), method="is",
                           num_walkers=20000, progress_bar=False)
    err = res.log_z - aniso.log_z
    assert abs(err) < 4 * res.log_z_se and res.log_z_se < 0.05
    assert res.num_stages == 1 and res.method == "is"


def test_thermodynamic_integration_and_nuts_share_one_compiled_stage():
    t = ep.targets.tilted_double_well(5.0)
    ref = dist.Normal(jnp.zeros(1), 1.5).to_event(1)
    kw = dict(reference=ref, num_walkers=1024, progress_bar=False)
    ti = ep.log_partition(t, key=jax.random.key(2), method="ti", **kw)
    assert ti.num_stages == 32 and "quadrature" in ti.messages[0]
    # trapezoid error over 32 power-4 stages is well below 0.05 here
    assert abs(ti.log_z - t.log_z) < 0.05 + 4 * ti.log_z_se
    nuts = ep.log_partition(t, key=jax.random.key(3), method="nuts", schedule="power",
                            num_stages=32, num_moves=2, **kw)
    assert abs(nuts.log_z - t.log_z) < 4 * nuts.log_z_se
    left = np.sum(nuts.weights * (np.asarray(nuts.samples)[:, 0] < t.barrier))
    assert abs(left - t.mode_masses[0]) < 0.05


# -- BAR: forward / reverse consistency -------------------------------------------------------

def test_bar_agrees_with_a_quasi_static_run(aniso):
    res = ep.log_partition(aniso, key=jax.random.key(4), reference=ref2(), num_walkers=1024,
                           target_ess=0.9, bar=True, progress_bar=False)
    assert res.bar_consistent is True, res
    assert abs(res.log_z_bar - aniso.log_z) < 4 * res.log_z_bar_se + 0.02
    assert "BAR" in str(res)


def test_bar_flags_a_too_fast_protocol():
    """Three stages with one HMC move each, from N(0, I) to a kappa = 100 Gaussian: the forward
    estimate (biased low) and the reverse one (biased high) are far apart: hysteresis."""
    t = ep.targets.ill_conditioned_gaussian(10, 100.0, seed=0)
    res = ep.log_partition(t, key=jax.random.key(5), reference=dist.Normal(
        jnp.zeros(10), 1.0).to_event(1), schedule=[0.0, 0.1, 0.4, 1.0], num_moves=1,
        num_walkers=1024, bar=True, progress_bar=False)
    assert res.bar_consistent is False
    assert res.log_z < res.log_z_bar < res.log_z_reverse
    assert res.log_z_reverse > t.log_z + 1.0
    assert any("hysteresis" in m for m in res.messages)


# -- result object and ArviZ --------------------------------------------------------------------

def test_result_fields_and_arviz_datatree(aniso):
    res = ep.log_partition(aniso, key=jax.random.key(6), reference=ref2(), num_walkers=512,
                           progress_bar=False)
    assert res.samples.shape == (512, 2) and res.log_weights.shape == (512,)
    assert np.isclose(np.log(np.mean(np.exp(res.log_weights))), res.log_z)
    assert len(res.ess) == res.num_stages and res.num_resamples == res.num_stages
    assert res.num_gradient_evals > 512 * res.num_stages
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.log_z = 0.0  # frozen
    dt = res.to_arviz()
    w = dt["sample_stats"]["weight"].values
    assert w.shape == (1, 512) and np.isclose(w.sum(), 1.0)
    np.testing.assert_allclose(dt["sample_stats"]["log_weight"].values[0], res.log_weights)
    assert dt["posterior"]["x"].shape == (1, 512, 2)
    assert dt.attrs["log_z"] == res.log_z
    text = str(res)
    assert "log Z" in text and "+-" in text and "gradient evals" in text


def test_compiled_stage_is_reused_across_seeds_and_references(aniso):
    kw = dict(num_walkers=512, progress_bar=False)
    ep.log_partition(aniso, key=jax.random.key(7), reference=ref2(2.0), **kw)
    before = engine._stage._cache_size()
    ep.log_partition(aniso, key=jax.random.key(8), reference=ref2(3.0), **kw)
    assert engine._stage._cache_size() == before


def test_plain_function_reuses_the_compiled_stage():
    """A plain function of a flat array is used as is (no new wrapper per call), so a second
    call with the same function, a new key and a new reference compiles nothing new."""
    def u(x):
        return 0.5 * jnp.sum(x**2 / jnp.array([1.0, 0.25]))

    kw = dict(dim=2, num_walkers=256, progress_bar=False)
    first = ep.log_partition(u, key=jax.random.key(1), reference=ref2(2.0), **kw)
    before = engine._stage._cache_size()
    second = ep.log_partition(u, key=jax.random.key(2), reference=ref2(3.0), **kw)
    assert engine._stage._cache_size() == before
    exact = np.log(2 * np.pi * 0.5)
    for res in (first, second):
        assert abs(res.log_z - exact) < 4 * res.log_z_se + 1e-3


def test_stage_cap_is_reported_by_both_annealing_entry_points(aniso):
    """An adaptive run cut off by max_stages jumps to beta = 1; both ep.log_partition and
    ep.spins.log_partition say so (one shared note), and an uncut run does not."""
    kw = dict(key=jax.random.key(3), num_walkers=256, progress_bar=False)
    cut = ep.log_partition(aniso, reference=ref2(20.0), max_stages=2, **kw)
    assert cut.num_stages == 2
    assert any("max_stages=2 reached" in m for m in cut.messages)
    full = ep.log_partition(aniso, reference=ref2(20.0), **kw)
    assert full.num_stages > 2 and not any("max_stages" in m for m in full.messages)
    spin = ep.spins.log_partition(ep.spins.Ising(4, T=2.0), max_stages=1, **kw)
    assert any("max_stages=1 reached" in m for m in spin.messages)


# -- the engine's contract with a custom (exact) move -----------------------------------------

def test_engine_with_an_exact_independence_move_and_schedules():
    """Path from N(0, 1) to N(0, 1/4) in 1-D (log Z_1 = 0.5 log(2 pi / 4)) with a move that
    redraws every walker exactly from exp(-U_beta): the generic loop is then exact."""
    def delta_fn(x):
        return 1.5 * x[:, 0] ** 2  # U_beta = (1 + 3 beta) x^2 / 2

    def move(key, x, beta, step_size):
        new = jax.random.normal(key, x.shape) / jnp.sqrt(1.0 + 3.0 * beta)
        n = x.shape[0]
        return new, engine.MoveInfo(jnp.ones(n), jnp.zeros(n), jnp.zeros(()))

    x0 = jax.random.normal(jax.random.key(9), (4096, 1))
    exact = 0.5 * math.log(2 * math.pi / 4.0)
    for sched in (schedules.Adaptive(0.5), schedules.linear(4)):
        opts = ep.evidence.AnnealOptions(method="mala", num_walkers=4096, num_groups=8,
                                         num_moves=1, step_jitter=0.2, adapt_step_size=False,
                                         progress_bar=False)
        out = engine.anneal(jax.random.key(10), x0, delta_fn=delta_fn, move=move,
                            schedule=sched, log_z0=0.5 * math.log(2 * math.pi), options=opts)
        with pytest.warns(DeprecationWarning, match="options="):  # the keyword spelling
            old = engine.anneal(jax.random.key(10), x0, delta_fn=delta_fn, move=move,
                                schedule=sched, log_z0=0.5 * math.log(2 * math.pi),
                                num_groups=8, adapt_step_size=False, progress_bar=False)
        assert old.log_z == out.log_z
        beta = out.history["beta"]
        assert beta[-1] == 1.0 and np.all(np.diff(beta) > 0)
        g = out.group_log_z
        se = np.std(np.exp(g - g.max()), ddof=1) / np.sqrt(8) / np.mean(np.exp(g - g.max()))
        assert abs(out.log_z - exact) < 4 * se + 1e-3


def test_adaptive_schedule_hits_the_target_ess():
    rng = np.random.default_rng(0)
    v = jnp.asarray(rng.normal(size=2000) * 3.0)
    lw = jnp.zeros(2000)
    b = schedules.next_beta(lw, v, jnp.asarray(0.0), schedules.Adaptive(0.5))
    from ebm_ppl.evidence.resampling import conditional_ess
    assert 0.0 < float(b) < 1.0
    assert abs(float(conditional_ess(lw, -b * v)) - 0.5) < 1e-3
    # when the whole remaining step is cheap, jump to 1
    assert float(schedules.next_beta(lw, v * 1e-6, jnp.asarray(0.2),
                                     schedules.Adaptive(0.5))) == 1.0


# -- 6. calibration of log_z_se (slow) -----------------------------------------------------

def _coverage(run, exact, seeds):
    z = []
    for s in seeds:
        res = run(s)
        z.append((res.log_z - exact) / res.log_z_se)
    z = np.asarray(z)
    return float(np.mean(np.abs(z) < 2.0)), z


@pytest.mark.slow
def test_log_z_se_calibration_over_50_seeds():
    """log_z +- 2 se covers the exact value in 85-99% of 50 runs, on two targets."""
    from test_evidence import blr, blr_data

    t = ep.targets.ill_conditioned_gaussian(10, 100.0, seed=0)
    ref = dist.Normal(jnp.zeros(10), 1.0).to_event(1)
    cov_g, z_g = _coverage(lambda s: ep.log_partition(
        t, key=jax.random.key(1000 + s), reference=ref, num_walkers=1024, progress_bar=False),
        t.log_z, range(50))
    phi, y, exact = blr_data(0)
    cov_b, z_b = _coverage(lambda s: ep.log_evidence(
        blr, phi, y=y, key=jax.random.key(2000 + s), num_walkers=1024, progress_bar=False),
        exact, range(50))
    assert 0.85 <= cov_g <= 0.99, (cov_g, np.round(z_g, 2))
    assert 0.85 <= cov_b <= 0.99, (cov_b, np.round(z_b, 2))
