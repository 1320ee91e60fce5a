"""Compile once per model structure (issue 14): a second call of each public entry point with
new data or a new key and the same shapes compiles nothing, counted with JAX's own compile
events (``ep.CompileClock``); ``result.compile_time`` reports it."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

import ebm_ppl as ep

jax.config.update("jax_enable_x64", True)


def regression(x, y=None):
    a = numpyro.sample("a", dist.Normal(0.0, 1.0))
    b = numpyro.sample("b", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    numpyro.sample("y", dist.Normal(a + x @ b, sigma), obs=y)


# XLA compilations of a first ep.log_evidence call after jax.clear_caches (bias_check=False;
# measured: 9, 7 of them the call's own and 2 of JAX's small helpers; 10 with NumPyro's
# initialization compiled where the origin serves, 16 with the run's keys, the draws'
# evaluation and the genealogy in programs of their own, and 93 when NumPyro's
# initialization and the drivers' small operations ran eagerly)
BOUND_FIRST_CALL = 11


def _data(seed, n=20):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    return jnp.asarray(x), jnp.asarray(0.5 + x @ np.array([1.0, -0.7]) + 0.3 * rng.normal(size=n))


def _second_call_compiles(call):
    """(first result, second result, XLA compilations during the second call)."""
    first = call(0)
    with ep.CompileClock() as clock:
        second = call(1)
    return first, second, clock


def test_log_evidence_with_new_data_and_key_compiles_nothing():
    def call(seed):
        x, y = _data(seed)
        return ep.log_evidence(regression, x, y=y, key=jax.random.key(seed), num_walkers=128,
                               progress_bar=False)

    first, second, clock = _second_call_compiles(call)
    assert clock.num_compiles == 0, clock
    assert first.compile_time > 0.5 and second.compile_time < 0.1  # a few traces at most
    assert first.log_z != second.log_z  # the new data were used, not the old ones
    # and the result for the new data is the one a fresh structure would give
    x, y = _data(1)
    ep.energy._STRUCTURES.clear()
    fresh = ep.log_evidence(regression, x, y=y, key=jax.random.key(1), num_walkers=128,
                            progress_bar=False)
    assert abs(fresh.log_z - second.log_z) < 1e-9


def test_a_first_log_evidence_call_compiles_a_handful_of_programs():
    """A first call compiles its few real programs (the potential's check at the initial
    point, the keys, the initial draws, the stage, ...), not one per eager operation: run eagerly,
    NumPyro's initialization, the initial carry, the checks of the initial draws and the key
    splits compiled ~75 single-operation programs more (~20 ms each, 1.5-2 s of a first
    call). The structure is new and JAX's caches are cleared, so nothing compiled by an
    earlier test hides an eager operation."""
    def fresh_regression(x, y=None):  # a model structure no other test has compiled
        a = numpyro.sample("a", dist.Normal(0.0, 1.0))
        b = numpyro.sample("b", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
        numpyro.sample("y", dist.Normal(a + x @ b, sigma), obs=y)

    x, y = _data(2, n=12)
    key = jax.random.key(0)
    jax.clear_caches()
    with ep.CompileClock() as clock:
        ep.log_evidence(fresh_regression, x, y=y, key=key, num_walkers=32, bias_check=False,
                        progress_bar=False)
    assert clock.num_compiles <= BOUND_FIRST_CALL, clock


def test_log_partition_with_a_new_key_compiles_nothing():
    ref = dist.Normal(jnp.zeros(2), 2.0).to_event(1)

    def call(seed):
        return ep.log_partition(_gauss, key=jax.random.key(seed), reference=ref,
                                num_walkers=128, bar=True, progress_bar=False)

    first, second, clock = _second_call_compiles(call)
    assert clock.num_compiles == 0, clock
    assert second.compile_time < 0.1 < first.compile_time
    exact = math.log(2 * math.pi * 0.5)
    assert abs(second.log_z - exact) < 5 * second.log_z_se


def _gauss(x):
    return jnp.sum(x ** 2 / jnp.array([1.0, 0.25])) / 2.0


def test_spin_log_partition_with_a_new_key_compiles_nothing():
    model = ep.spins.Ising(4, T=2.5)

    def call(seed):
        return ep.spins.log_partition(model, key=jax.random.key(seed), num_walkers=256,
                                      progress_bar=False)

    first, second, clock = _second_call_compiles(call)
    assert clock.num_compiles == 0, clock
    assert abs(second.log_z - ep.spins.ising_log_z(4, 2.5)) < 5 * second.log_z_se


def _energy(params, x):
    return 0.5 * jnp.sum((x - params["m"]) ** 2) * jnp.exp(params["s"])


def test_train_with_new_data_compiles_nothing():
    params = {"m": jnp.zeros(()), "s": jnp.zeros(())}

    def call(seed):
        data = jnp.asarray(np.random.default_rng(seed).normal(size=(200, 1)))
        return ep.train(_energy, params, data, key=jax.random.key(seed),
                        estimator=ep.training.pcd(num_walkers=64), num_iterations=5,
                        progress_bar=False)

    first, second, clock = _second_call_compiles(call)
    assert clock.num_compiles == 0, clock
    assert float(first.params["m"]) != float(second.params["m"])


def test_enable_compilation_cache_sets_jax_persistent_cache(tmp_path, monkeypatch):
    before = {k: getattr(jax.config, k) for k in (
        "jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
        "jax_persistent_cache_min_entry_size_bytes")}
    try:
        path = ep.enable_compilation_cache(tmp_path / "cache")
        assert path.is_dir() and jax.config.jax_compilation_cache_dir == str(path)
        assert jax.config.jax_persistent_cache_min_compile_time_secs == 0.0
        monkeypatch.setenv(ep.compilation.CACHE_ENV_VAR, str(tmp_path / "from_env"))
        assert ep.enable_compilation_cache() == tmp_path / "from_env"
    finally:
        for k, v in before.items():
            jax.config.update(k, v)


def test_numpyro_initialization_compiles_only_where_the_origin_is_not_valid():
    """energy_from_model takes the unconstrained origin as the model's initial point, so a
    first call compiles only the potential's check there, not NumPyro's initialization; where
    the potential is not finite at the origin (y ~ Uniform(0, theta) with y = 3 above
    theta = 1), NumPyro's search is compiled and run and finds a valid point."""
    def fresh_scale(y=None):  # structures no other test has compiled
        s = numpyro.sample("s", dist.HalfNormal(1.0))
        numpyro.sample("y", dist.Normal(0.0, s), obs=y)

    def fresh_uniform(y=None):
        theta = numpyro.sample("theta", dist.HalfNormal(1.0))
        numpyro.sample("y", dist.Uniform(0.0, theta), obs=y)

    y = jnp.asarray([3.0, 2.5])
    jax.clear_caches()
    key = jax.random.key(0)
    with ep.CompileClock() as clock:
        energy = ep.energy_from_model(fresh_scale, y=y, key=key)
    assert clock.num_compiles == 1, clock  # the check at the origin
    assert np.all(energy.structure.flat0 == 0.0)
    with ep.CompileClock() as clock:
        energy = ep.energy_from_model(fresh_uniform, y=y, key=key)
    assert clock.num_compiles == 2, clock  # the check, then NumPyro's initialization
    theta = float(np.exp(energy.structure.flat0[0]))
    assert theta > 3.0 and np.isfinite(float(energy.potential_fn(energy.structure.flat0)))
