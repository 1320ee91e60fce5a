"""Bad input to ep.train: a ValueError naming the argument, before anything is compiled."""

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import optax
import pytest

import ebm_ppl as ep

FAMILY = ep.gaussian_mixture_energy(np.array([[-1.0, 0.0], [1.0, 0.0]]))
DATA = np.random.default_rng(0).normal(size=(50, 2))
CALLS = []
KEY = jax.random.key(0)


def counted_energy(params, x):
    CALLS.append(1)  # runs once per trace, never per compiled evaluation
    return FAMILY.energy_fn(params, x)


@contextlib.contextmanager
def no_compilation():
    """Fail if XLA compiles anything inside the block."""
    events = []
    listener = lambda event, duration, **kw: events.append(event)  # noqa: E731
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert "/jax/core/compile/backend_compile_duration" not in events


def _train(energy=counted_energy, params=FAMILY.params, data=DATA, **kw):
    kw.setdefault("key", KEY)
    kw.setdefault("num_iterations", 5)
    kw.setdefault("progress_bar", False)
    kw.setdefault("log_z0", 0.0)
    return ep.train(energy, params, data, **kw)


@pytest.mark.parametrize("kwargs, match", [
    (dict(data=np.where(np.arange(100).reshape(50, 2) == 7, np.nan, DATA)), "data contains 1 NaN"),
    (dict(data=DATA[:, 0]), "data must have 2 dimension"),
    (dict(step_size=0.0), "step_size"),
    (dict(step_size=-0.1), "step_size"),
    (dict(num_walkers=0), "num_walkers"),
    (dict(num_walkers=-3), "num_walkers"),
    (dict(num_walkers=2.5), "num_walkers"),
    (dict(num_iterations=0), "num_iterations"),
    (dict(method="contrastive"), "unknown method 'contrastive'"),
    (dict(key=0), "key must be a single JAX random key"),
    (dict(log_z0=float("nan")), "log_z0"),
    (dict(init_walkers=np.zeros((7, 2)), num_walkers=8),
     r"init_walkers must have shape \(num_walkers, d\)"),
    (dict(init_walkers=np.zeros((4, 2)), method="pcd", num_walkers=4),
     "only used by method='jarzynski'"),
    (dict(params={"means": jnp.full((2, 2), jnp.nan), "log_weights": jnp.zeros(2)}),
     "params contain NaN"),
    (dict(method="dsm", noise_scale=0.0), "noise_scale"),
    (dict(method="nce", noise=dist.Normal(0.0, 1.0).expand([3]).to_event(1)), "noise"),
    (dict(method="sm", sm_trace="fast"), "unknown sm_trace"),
    (dict(optimizer="adam"), "optimizer must be an optax"),
    (dict(batch_size=0), "batch_size"),
    (dict(resume=True), "checkpoint_dir"),
])
def test_bad_argument_is_named_before_tracing(kwargs, match):
    CALLS.clear()
    # (a NumPyro distribution may run eager ops on its own parameters while it is checked)
    guard = contextlib.nullcontext() if "noise" in kwargs else no_compilation()
    with guard, pytest.raises(ValueError, match=match):
        _train(**kwargs)
    if "noise" not in kwargs and "params" not in kwargs:
        assert not CALLS  # the energy was never even traced


def test_wrong_data_dimension_is_named():
    CALLS.clear()
    with no_compilation(), pytest.raises(ValueError, match=r"data dimension \(3\) match"):
        _train(data=np.ones((10, 3)))
    assert len(CALLS) == 1  # one abstract evaluation (jax.eval_shape), nothing compiled


def test_vector_valued_energy_is_named():
    with no_compilation(), pytest.raises(ValueError, match="must return one scalar per point"):
        _train(energy=lambda p, x: x * jnp.sum(p["means"]))


def test_integer_energy_is_named():
    with pytest.raises(ValueError, match="must return a float"):
        _train(energy=lambda p, x: jnp.sum(x > 0))


def test_divergence_is_a_clear_error():
    energy = lambda p, x: 0.5 * jnp.sqrt(p["s"]) * jnp.sum(x * x)  # noqa: E731
    with pytest.raises(ep.SamplingDivergedError, match="non-finite"):
        _train(energy=energy, params={"s": jnp.asarray(3.0)}, method="sm",
               optimizer=optax.sgd(1e3), num_iterations=50)  # one step makes s < 0


def test_nce_needs_a_log_z_optimizer_when_the_optimizer_is_structured():
    labels = {"means": "m", "log_weights": "w"}
    opt = optax.multi_transform({"m": optax.sgd(0.1), "w": optax.sgd(0.1)}, labels)
    with pytest.raises(ValueError, match="pass log_z_optimizer="):
        _train(energy=FAMILY.energy_fn, method="nce", optimizer=opt)
    fit = _train(energy=FAMILY.energy_fn, method="nce", optimizer=opt,
                 log_z_optimizer=optax.sgd(0.1))
    assert np.isfinite(fit.log_z) and fit.params.keys() == FAMILY.params.keys()


def test_track_must_be_callable():
    with pytest.raises(ValueError, match="track must be callable"):
        _train(energy=FAMILY.energy_fn, method="sm", track=3)
