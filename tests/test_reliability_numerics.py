"""Non-finite walkers and numerics, issue 8.

* A walker whose energy or gradient becomes non-finite, or whose ULA move diverges (a log
  weight increment below -1000, NUTS's bound), dies: weight zero, counted in ``num_dead``,
  removed at the next resampling. All dead: ``SamplingDivergedError`` naming the stage or
  iteration and suggesting a smaller step. Never a NaN log Z.
* The NumPyro kernels report divergences in their state, like NUTS.
* float32 and float64 runs of one evidence problem agree within the reported error; energies
  of magnitude 1e4 do not overflow.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import optax
import pytest
from numpyro.infer import MCMC

import ebm_ppl as ep

# -- annealing: ULA (Jarzynski) with a step 10x too large on a stiff Gaussian --------------------

KAPPA = 1e4
STIFF = ep.targets.ill_conditioned_gaussian(d=10, kappa=KAPPA)  # ULA is stable below 2 / KAPPA
LIMIT = 2.0 / KAPPA


def _stiff_log_partition(step_size):
    return ep.log_partition(
        STIFF, key=jax.random.key(1), reference=dist.Normal(jnp.zeros(10), 1.0).to_event(1),
        method="jarzynski", num_walkers=512, step_size=step_size, adapt_step_size=False,
        precondition=False, step_jitter=0.0, progress_bar=False)


@pytest.mark.parametrize("factor", [10.0, 1.3])
def test_ula_with_a_too_large_step_ends_loudly_never_with_nan(factor):
    try:
        res = _stiff_log_partition(factor * LIMIT)
    except ep.SamplingDivergedError as err:
        message = str(err)
        assert "stage" in message and "smaller step_size" in message, message
        assert factor == 10.0, "a step 1.3x the limit kills some walkers, not all"
        return
    assert factor == 1.3, "with a step 10x the limit every walker explodes"
    assert math.isfinite(res.log_z) and math.isfinite(res.log_z_se)
    assert not np.any(np.isnan(res.log_weights))
    # walkers died, were counted, and the weights show it: those of the last stage still have
    # weight zero, every earlier one was removed by the resampling of the next stage
    assert res.num_dead > 0 and res.num_dead == res.num_dead_per_stage.sum()
    assert np.sum(np.isneginf(res.log_weights)) == res.num_dead_per_stage[-1]
    assert np.all(res.weights[np.isneginf(res.log_weights)] == 0.0)
    assert any("died" in m and "smaller step_size" in m for m in res.messages), res.messages


# -- training: dead walkers get weight zero and are counted; all dead is an error ---------------

DATA = np.clip(np.random.default_rng(5).normal(0.0, 1.0, size=(300, 1)), -2.4, 2.4)
P0 = {"m": jnp.asarray(0.0), "s": jnp.asarray(0.0)}


def holed(p, x):
    """A Gaussian energy with a hole: NaN beyond x = 2.5, outside the data but where a few
    walkers wander."""
    return 0.5 * jnp.exp(p["s"]) * jnp.sum((x - p["m"]) ** 2) + 0.0 * jnp.sum(jnp.sqrt(2.5 - x))


def _train(method, energy=holed, scale=1.0, step_size=0.05, n=128, iters=60):
    kw = dict(init_walkers=scale * np.random.default_rng(6).normal(size=(n, 1)),
              log_z0=0.5 * np.log(2 * np.pi * scale ** 2),
              resample_threshold=0.01) if method == "jarzynski" else {}
    return ep.train(energy, P0, scale * DATA, key=jax.random.key(0), method=method,
                    num_walkers=n, step_size=step_size, num_iterations=iters,
                    optimizer=optax.adam(0.01), progress_bar=False, **kw)


@pytest.mark.parametrize("method", ["jarzynski", "pcd"])
def test_training_walkers_that_die_are_counted_and_removed(method):
    with pytest.warns(RuntimeWarning, match="walker.* died"):
        res = _train(method)
    h = res.history
    assert res.num_dead > 0 and res.num_dead == h["num_dead"].sum()
    assert all(np.all(np.isfinite(np.asarray(p))) for p in jax.tree.leaves(res.params))
    assert np.all(np.isfinite(h["data_energy"]))
    n = 128
    if method == "pcd":  # live walkers are copied over the dead after every iteration, so
        # every iteration starts with all n alive
        assert np.all(h["num_alive"] + h["num_dead"] == n)
    else:  # the dead are removed whenever the weights are resampled
        resampled = h["resampled"].astype(bool)
        assert np.all(h["num_alive"][resampled] + h["num_dead"][resampled] == n)
        # ... including resamplings that followed deaths
        assert np.any(resampled[1:] & (h["num_alive"][:-1] < n))
        assert np.all(np.isfinite(h["log_z"])) and math.isfinite(res.log_z)


def test_training_where_every_walker_dies_names_the_iteration():
    stiff = lambda p, x: 0.5 * KAPPA * jnp.exp(p["s"]) * jnp.sum((x - p["m"]) ** 2)  # noqa: E731
    with pytest.raises(ep.SamplingDivergedError, match=r"iteration \d+.*smaller step_size"):
        _train("pcd", energy=stiff, scale=0.01, step_size=100 * LIMIT)


# -- NumPyro kernels report divergences like NUTS --------------------------------------------------

SMALL_STIFF = ep.targets.ill_conditioned_gaussian(d=4, kappa=KAPPA)


@pytest.mark.parametrize("cls", [ep.ULA, ep.Jarzynski, ep.MALA], ids=lambda c: c.__name__)
def test_numpyro_kernels_report_divergences(cls):
    def run(step):
        kw = dict(adapt_step_size=False) if cls is ep.MALA else {}
        mcmc = MCMC(cls(potential_fn=SMALL_STIFF, step_size=step, **kw), num_warmup=0,
                    num_samples=300, num_chains=2, chain_method="vectorized", progress_bar=False)
        mcmc.run(jax.random.key(0), init_params=jnp.zeros((2, 4)), extra_fields=("log_weight",))
        return mcmc

    stable, exploding = run(0.5 * LIMIT), run(10 * LIMIT)
    assert not np.any(stable.get_extra_fields()["diverging"])
    diverging = np.asarray(exploding.get_extra_fields(group_by_chain=True)["diverging"])
    assert np.all(diverging.any(axis=1)), "every chain diverges with a step 10x too large"
    assert np.array_equal(np.asarray(exploding.last_state.num_divergent), diverging.sum(axis=1))
    dt = az.from_numpyro(exploding)  # ArviZ picks the divergences up, as for NUTS
    assert int(dt["sample_stats"]["diverging"].sum()) == diverging.sum()
    if cls is ep.MALA:  # rejected, so the chain itself stays finite
        assert np.all(np.isfinite(np.asarray(exploding.get_samples())))
    if cls is ep.Jarzynski:  # a diverged walker's weight is zero, not NaN
        assert np.all(np.isneginf(np.asarray(exploding.last_state.log_weight)))


# -- float32 against float64; energies of magnitude 1e4 -------------------------------------------

GAUSS = dict(d=5, kappa=100.0, seed=0)
OFFSET = 1e4  # U = OFFSET + 0.5 * OFFSET * |x - 3|^2: exp(-U) underflows in any precision
PROGRAM = textwrap.dedent(f"""
    import json, jax, jax.numpy as jnp, numpyro.distributions as dist
    import ebm_ppl as ep
    def problems():
        gauss = ep.targets.ill_conditioned_gaussian(**{GAUSS!r})
        yield "gauss", gauss, dist.Normal(jnp.zeros(5), 1.0).to_event(1)
        big = lambda x: {OFFSET!r} + 0.5 * {OFFSET!r} * jnp.sum((x - 3.0) ** 2)
        ref2 = dist.Normal(jnp.zeros(2), 1.0).to_event(1)
        yield "big", ep.energy_from_fn(big, jnp.zeros(2)), ref2
    out = {{}}
    for name, target, ref in problems():
        r = ep.log_partition(target, key=jax.random.key(4), reference=ref, num_walkers=1024,
                             progress_bar=False)
        out[name] = dict(log_z=r.log_z, log_z_se=r.log_z_se, dtype=str(r.log_weights.dtype),
                         num_dead=r.num_dead)
    print("RESULT" + json.dumps(out))
""")
TRUTH = {"gauss": ep.targets.ill_conditioned_gaussian(**GAUSS).log_z,
         "big": -OFFSET + math.log(2 * math.pi / OFFSET)}


@pytest.fixture(scope="module")
def float32_run():
    """The same problems in a fresh process without x64 (started first, read at the end)."""
    env = {k: v for k, v in os.environ.items() if k != "JAX_ENABLE_X64"}
    env["JAX_ENABLE_X64"] = "0"
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1"
    proc = subprocess.Popen([sys.executable, "-c", PROGRAM], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    yield proc
    if proc.poll() is None:
        proc.kill()


@pytest.mark.integration  # the float32 run is a fresh JAX child process
def test_float32_and_float64_agree_within_the_reported_error(float32_run):
    namespace = {}
    exec(PROGRAM.replace('print("RESULT" + json.dumps(out))', ""), namespace)  # float64 here
    f64 = namespace["out"]
    stdout, stderr = float32_run.communicate(timeout=600)
    assert float32_run.returncode == 0, stderr[-2000:]
    f32 = json.loads(stdout.split("RESULT", 1)[1])
    for name, truth in TRUTH.items():
        a, b = f64[name], f32[name]
        assert a["dtype"] == "float64" and b["dtype"] == "float32"
        assert a["num_dead"] == 0 and b["num_dead"] == 0
        for r in (a, b):
            assert math.isfinite(r["log_z"]) and math.isfinite(r["log_z_se"])
            # float32 rounds energies of 1e4 to ~1e-3: allow that on top of 4 se
            slack = 1e-2 if r["dtype"] == "float32" and name == "big" else 0.0
            assert abs(r["log_z"] - truth) < 4 * r["log_z_se"] + slack, (name, r, truth)
        assert abs(a["log_z"] - b["log_z"]) < 4 * math.hypot(a["log_z_se"], b["log_z_se"]) + (
            1e-2 if name == "big" else 0.0), (name, a, b)
