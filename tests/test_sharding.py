"""Walker sharding (issue 7): devices=/mesh= resolution, placement, and sharded vs unsharded
runs of log_partition and train on the 4 fake CPU devices of conftest.py.

What is asserted about agreement: the random draws are sharding-invariant (threefry is
partitionable), so the only differences are the order of floating-point reductions over
walkers (log-sum-exp, means, the cumulative sum of systematic resampling), which changes
results at round-off. Measured: log Z within 2e-16, walkers within 7e-15 (log_partition);
bitwise equal parameters and walkers (train). Asserted, with room for other XLA builds:
log Z and parameters within 1e-9, positions within 1e-7, identical resampling decisions. A
multi-process test (slow; 2 CPU processes x 2 devices with jax.distributed.initialize) checks
the same log Z (log_partition and train) on one global mesh spanning two processes.
"""

import json
import math
import os
import socket
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding, PartitionSpec

from ebm_ppl import sharding as sh


def _is_walker_sharded(x, k=4):
    s = x.sharding
    return (isinstance(s, NamedSharding) and s.spec[0] == sh.WALKER_AXIS
            and s.mesh.shape[sh.WALKER_AXIS] == k
            and len({d.id for d in s.device_set}) == k
            and all(a.data.shape[0] == x.shape[0] // k for a in x.addressable_shards))


# -- resolving devices= / mesh= --------------------------------------------------------------

def test_four_fake_devices_are_there():
    assert jax.device_count() == 4, "tests/conftest.py must set 4 host devices"


@pytest.mark.parametrize("devices, k", [("all", 4), (2, 2), (1, 1)])
def test_devices_argument_builds_an_auto_walker_mesh(devices, k):
    s = sh.walker_sharding(devices=devices)
    assert s.spec == PartitionSpec("walkers") and sh.num_shards(s) == k
    assert s.mesh.axis_types == (AxisType.Auto,)


def test_explicit_device_list_and_user_mesh():
    devs = jax.devices()[2:]
    s = sh.walker_sharding(devices=devs)
    assert [d.id for d in s.mesh.devices.reshape(-1)] == [d.id for d in devs]
    # jax.make_mesh defaults to Explicit axes in jax 0.12; we convert to Auto (GSPMD)
    mesh = jax.make_mesh((2, 2), ("walkers", "model"))
    s = sh.walker_sharding(mesh=mesh)
    assert sh.num_shards(s) == 2 and set(s.mesh.axis_types) == {AxisType.Auto}
    assert sh.walker_sharding() is None and sh.num_shards(None) == 1


@pytest.mark.parametrize("kwargs, match", [
    (dict(devices=0), "devices=0"),
    (dict(devices=5), "devices=5"),
    (dict(devices="gpu"), "devices"),
    (dict(devices=[]), "devices"),
    (dict(devices=["cpu:0"]), "devices"),
    (dict(devices=2.5), "devices"),
    (dict(devices=True), "devices"),
    (dict(mesh="walkers"), "mesh"),
    (dict(mesh=lambda: jax.make_mesh((4,), ("batch",))), "'walkers'"),
    (dict(devices=2, mesh=lambda: jax.make_mesh((4,), ("walkers",))), "not both"),
])
def test_bad_devices_or_mesh_is_a_value_error(kwargs, match):
    kwargs = {k: v() if callable(v) else v for k, v in kwargs.items()}  # meshes built lazily
    with pytest.raises(ValueError, match=match):
        sh.walker_sharding(**kwargs)


def test_duplicate_device_is_rejected():
    d = jax.devices()[0]
    with pytest.raises(ValueError, match="twice"):
        sh.walker_sharding(devices=[d, d])


def test_divisibility_is_checked_with_a_suggestion():
    s = sh.walker_sharding(devices=4)
    sh.check_divisible(1024, s)
    with pytest.raises(ValueError, match=r"num_walkers=1022 must be a multiple of the 4 "
                                         r"devices.*1020 or 1024"):
        sh.check_divisible(1022, s)


def test_shard_walkers_splits_the_walker_axis_and_replicates_the_rest():
    s = sh.walker_sharding(devices=4)
    tree = dict(x=jnp.arange(24.0).reshape(8, 3), u=jnp.arange(8.0), log_z0=jnp.asarray(1.5))
    placed = sh.shard_walkers(tree, s)
    assert _is_walker_sharded(placed["x"]) and _is_walker_sharded(placed["u"])
    assert placed["log_z0"].sharding.is_fully_replicated
    np.testing.assert_array_equal(sh.to_host(placed["x"]), np.asarray(tree["x"]))
    assert sh.shard_walkers(tree, None) is tree
    with pytest.raises(ValueError, match="num_walkers=6"):
        sh.shard_walkers(dict(x=jnp.zeros((6, 2))), s)


def test_reductions_over_sharded_walkers_are_global_not_per_shard():
    """The engine's reductions (logsumexp, Kish ESS, systematic resampling) on sharded
    weights equal the single-device values; a per-shard reduction would not (checked)."""
    from ebm_ppl.evidence.resampling import ess, log_mean_exp, systematic_resample

    s = sh.walker_sharding(devices=4)
    lw = jax.random.normal(jax.random.key(3), (4096,), jnp.float64) * 2.0
    lws = sh.shard_walkers(lw, s)

    @jax.jit
    def stats(a, key):
        return log_mean_exp(a), ess(a), systematic_resample(key, a)

    key = jax.random.key(4)
    ref, got = stats(lw, key), stats(lws, key)
    np.testing.assert_allclose(got[0], ref[0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(got[1], ref[1], rtol=1e-12)
    np.testing.assert_array_equal(got[2], ref[2])
    per_shard = [float(log_mean_exp(b)) for b in np.split(np.asarray(lw), 4)]
    assert max(abs(p - float(ref[0])) for p in per_shard) > 1e-3


@pytest.mark.parametrize("groups", [1, 2, 8])
def test_group_resampling_gather_is_exact_and_local_when_groups_align(groups):
    """The engine's resampling gather on sharded walkers equals NumPy's fancy indexing; with
    groups a multiple of the 4 devices it moves no walker between devices (no all-gather in
    the compiled program), otherwise XLA gathers across devices."""
    import re

    from ebm_ppl.evidence.engine import _group_gather

    s = sh.walker_sharding(devices=4)
    n = 64
    x = jax.random.normal(jax.random.key(0), (n, 3))
    idx = jax.random.randint(jax.random.key(1), (groups, n // groups), 0, n // groups)
    fn = jax.jit(lambda a, i: sh.constrain_walkers(_group_gather(a, i), s, n))
    got = fn(sh.shard_walkers(x, s), idx)
    rows = (np.asarray(idx) + (n // groups) * np.arange(groups)[:, None]).reshape(-1)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(x)[rows])
    assert _is_walker_sharded(got)
    hlo = fn.lower(sh.shard_walkers(x, s), idx).compile().as_text()
    gathers = len(re.findall(r"all-gather(?:-start)?\(", hlo))
    assert (gathers == 0) == (groups % 4 == 0)
    assert sh.sharding_of(got) == s and sh.sharding_of(x) is None


def test_sharded_jit_creates_walkers_in_their_blocks():
    s = sh.walker_sharding(devices=4)
    draw = sh.sharded_jit(lambda k: jax.random.normal(k, (64, 3)), s)
    x = draw(jax.random.key(0))
    assert _is_walker_sharded(x)
    np.testing.assert_array_equal(np.asarray(x), np.asarray(jax.random.normal(
        jax.random.key(0), (64, 3))))


# -- log_partition / log_evidence with devices= -----------------------------------------------

def _ref(d, scale=3.0):
    import numpyro.distributions as dist

    return dist.Normal(jnp.zeros(d), scale).to_event(1)


@pytest.fixture(scope="module")
def evidence_pair():
    """The same key on one device and sharded over 4 (two-mode mixture, exact log Z = 0)."""
    import ebm_ppl as ep

    target = ep.targets.two_mode_mixture(d=2)
    kw = dict(key=jax.random.key(7), reference=_ref(2), method="mala", num_walkers=512,
              num_groups=8, schedule="linear", num_stages=6, num_moves=2, progress_bar=False)
    return target, ep.log_partition(target, **kw), ep.log_partition(target, devices=4, **kw)


def test_log_partition_sharded_agrees_with_one_device(evidence_pair):
    target, one, four = evidence_pair
    # correct first: both agree with the exact log Z within 4 standard errors
    assert abs(one.log_z - target.log_z) < 4 * one.log_z_se
    # same key, same walkers and weights up to reduction order (measured ~1e-12)
    assert abs(four.log_z - one.log_z) < 1e-9
    np.testing.assert_allclose(four.group_log_z, one.group_log_z, rtol=0, atol=1e-9)
    np.testing.assert_allclose(four.log_weights, one.log_weights, rtol=0, atol=1e-9)
    np.testing.assert_allclose(four.samples, one.samples, rtol=0, atol=1e-7)
    np.testing.assert_allclose(four.ess, one.ess, rtol=1e-9)
    # the round-off gap is far below the statistical error (per-shard reductions would not be:
    # see test_reductions_over_sharded_walkers_are_global_not_per_shard)
    assert abs(four.log_z - one.log_z) < 1e-6 * one.log_z_se


def test_log_partition_walkers_really_are_sharded(evidence_pair):
    _, one, four = evidence_pair
    assert _is_walker_sharded(four.walkers)
    assert len(one.walkers.sharding.device_set) == 1
    # histories are O(stages), never O(walkers x stages)
    assert all(np.shape(v)[0] == four.num_stages and np.size(v) <= 8 * four.num_stages
               for v in (four.ess, four.acceptance, four.step_size))


def test_bad_devices_fail_before_any_work():
    import ebm_ppl as ep

    target = ep.targets.two_mode_mixture(d=2)
    with pytest.raises(ValueError, match="num_walkers=510 must be a multiple of the 4"):
        ep.log_partition(target, key=jax.random.key(0), num_walkers=510, num_groups=1,
                         devices=4, progress_bar=False, reference=_ref(2))
    with pytest.raises(ValueError, match="mesh"):
        ep.log_evidence(lambda: None, key=jax.random.key(0), mesh="walkers",
                        progress_bar=False)


# -- train with devices= -----------------------------------------------------------------------

def _gauss_energy(params, x):
    return 0.5 * jnp.sum(((x - params["mu"]) * jnp.exp(-params["log_s"])) ** 2)


def _gauss_log_z(params):
    return float(jnp.sum(params["log_s"]) + 0.5 * params["mu"].size * math.log(2 * math.pi))


@pytest.fixture(scope="module")
def train_pair():
    """Jarzynski training of a diagonal Gaussian family (exact log Z), one device vs 4."""
    import optax

    import ebm_ppl as ep

    d, n = 2, 512
    data = 1.5 + 0.5 * jax.random.normal(jax.random.key(1), (256, d), jnp.float64)
    params = dict(mu=jnp.zeros(d), log_s=jnp.zeros(d))
    walkers = jax.random.normal(jax.random.key(2), (n, d), jnp.float64)  # exact draws at theta_0
    kw = dict(key=jax.random.key(3), method="jarzynski", optimizer=optax.adam(0.02),
              num_walkers=n, step_size=0.05, num_steps=4, num_iterations=40, chunk_size=40,
              init_walkers=walkers, log_z0=_gauss_log_z(params), resample_threshold=0.1,
              progress_bar=False)
    one = ep.train(_gauss_energy, params, data, **kw)
    four = ep.train(_gauss_energy, params, data, devices=4, **kw)
    return one, four


def test_train_sharded_agrees_with_one_device(train_pair):
    one, four = train_pair
    h1, h4 = one.history, four.history
    # it trained (mu moved from 0 toward 1.5, walkers were resampled), and eq. 104 tracks the
    # exact log Z of the current parameters (measured error 0.015)
    assert float(one.params["mu"][0]) > 0.5 and h1["resampled"].sum() >= 1
    assert abs(one.log_z - _gauss_log_z(one.params)) < 0.05
    # same key: same resampling decisions and, up to reduction order, the same numbers
    np.testing.assert_array_equal(h4["resampled"], h1["resampled"])
    for k in ("log_z", "ess", "loss"):
        np.testing.assert_allclose(h4[k], h1[k], rtol=1e-9, atol=1e-9)
    for name in ("mu", "log_s"):
        np.testing.assert_allclose(four.params[name], one.params[name], rtol=0, atol=1e-9)
    np.testing.assert_allclose(four.walkers, one.walkers, rtol=0, atol=1e-8)
    np.testing.assert_allclose(four.log_weights, one.log_weights, rtol=0, atol=1e-8)


def test_train_walkers_really_are_sharded(train_pair):
    one, four = train_pair
    for leaf in (four.walker_state.position, four.walker_state.log_weight):
        assert _is_walker_sharded(leaf)
    assert len(one.walker_state.position.sharding.device_set) == 1


def test_train_devices_errors():
    import ebm_ppl as ep

    data = jnp.zeros((8, 2))
    params = dict(mu=jnp.zeros(2), log_s=jnp.zeros(2))
    with pytest.raises(ValueError, match="num_walkers=30 must be a multiple of the 4"):
        ep.train(_gauss_energy, params, data, key=jax.random.key(0), method="pcd",
                 num_walkers=30, devices=4, progress_bar=False)
    with pytest.raises(ValueError, match="method='dsm' has none"):
        ep.train(_gauss_energy, params, data, key=jax.random.key(0), method="dsm",
                 devices=4, progress_bar=False)


# -- several processes: jax.distributed.initialize on CPU ---------------------------------------

_CHILD = textwrap.dedent("""
    import json, os, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    import jax
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=sys.argv[1], num_processes=2,
                               process_id=int(sys.argv[2]), initialization_timeout=120)
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpyro.distributions as dist
    import optax
    import ebm_ppl as ep
    sys.path.insert(0, sys.argv[3])
    from test_sharding import _gauss_energy, _gauss_log_z
    r = ep.log_partition(ep.targets.two_mode_mixture(d=2), key=jax.random.key(7),
                         reference=dist.Normal(jnp.zeros(2), 3.0).to_event(1), method="mala",
                         num_walkers=512, num_groups=8, schedule="linear", num_stages=6,
                         num_moves=2, progress_bar=False, devices="all")
    w = r.walkers
    # the train_pair fixture's run
    d, n = 2, 512
    data = 1.5 + 0.5 * jax.random.normal(jax.random.key(1), (256, d), jnp.float64)
    params = dict(mu=jnp.zeros(d), log_s=jnp.zeros(d))
    fit = ep.train(_gauss_energy, params, data, key=jax.random.key(3), method="jarzynski",
                   optimizer=optax.adam(0.02), num_walkers=n, step_size=0.05, num_steps=4,
                   num_iterations=40, chunk_size=40,
                   init_walkers=jax.random.normal(jax.random.key(2), (n, d), jnp.float64),
                   log_z0=_gauss_log_z(params), resample_threshold=0.1, progress_bar=False,
                   devices="all")
    print("RESULT " + json.dumps(dict(
        train_log_z=fit.log_z, train_mu=[float(v) for v in fit.params["mu"]],
        train_walkers_local=not fit.walker_state.position.is_fully_addressable,
        process=jax.process_index(), processes=jax.process_count(),
        devices=jax.device_count(), log_z=r.log_z, samples_shape=list(r.samples.shape),
        fully_addressable=w.is_fully_addressable,
        local_rows=sum(s.data.shape[0] for s in w.addressable_shards))), flush=True)
""")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.integration
@pytest.mark.slow  # ~60-90 s on 2 shared cores (two fresh JAX processes compile everything)
def test_two_processes_share_one_global_walker_mesh(evidence_pair, train_pair):
    """2 CPU processes x 2 devices = one 4-device mesh spanning processes (gloo collectives):
    each process holds half the walkers, and log Z (log_partition and train) equals the
    single-device run's."""
    _, one, _ = evidence_pair
    fit_one, _ = train_pair
    address = f"127.0.0.1:{_free_port()}"
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    env["JAX_PLATFORMS"] = "cpu"
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    procs = [subprocess.Popen([sys.executable, "-c", _CHILD, address, str(i), tests_dir],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    outs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=300)
            lines = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
            assert p.returncode == 0 and lines, err[-3000:]
            outs.append(json.loads(lines[-1][7:]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert sorted(o["process"] for o in outs) == [0, 1]
    for o in outs:
        assert o["processes"] == 2 and o["devices"] == 4
        assert not o["fully_addressable"] and o["local_rows"] == 256  # half the walkers here
        assert o["samples_shape"] == [512, 2]  # gathered for the result
        assert abs(o["log_z"] - one.log_z) < 1e-9
        assert o["train_walkers_local"] and abs(o["train_log_z"] - fit_one.log_z) < 1e-9
        np.testing.assert_allclose(o["train_mu"], fit_one.params["mu"], rtol=0, atol=1e-9)
