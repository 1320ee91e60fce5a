"""Bad input, issue 8: a table over every public entry point of ``ebm_ppl`` and every kind of
mistake the issue lists. Each row asserts the error type, that the one-line message names the
argument, that it is raised by our checks and not from inside a JAX trace, and that nothing
was compiled first (rows marked ``eager`` evaluate the user's energy at one point to check
what it returns; they may compile single eager operations, never a sampler program)."""

from __future__ import annotations

import contextlib
import logging
import re
import time
import traceback
from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC

import ebm_ppl as ep
from ebm_ppl import targets

TARGET = targets.anisotropic_gaussian_2d()
KEY = jax.random.key(0)
KEY3 = jax.random.split(KEY, 3)
FAMILY = ep.gaussian_mixture_energy(np.array([[-1.0, 0.0], [1.0, 0.0]]))
DATA = np.random.default_rng(0).normal(size=(40, 2))
Y = jnp.linspace(-1.0, 1.0, 5)
ISING = ep.spins.Ising(4, T=2.5)
SMALL = dict(num_walkers=64, progress_bar=False)
REF_3D = dist.Normal(jnp.zeros(3), 1.0).to_event(1)  # built here: the test itself may compile
IMPROPER = dist.ImproperUniform(dist.constraints.real_vector, (), (2,))


def model(y):
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)


def _mcmc(kernel, init, num_chains=1, chain_method="sequential", args=()):
    mcmc = MCMC(kernel, num_warmup=2, num_samples=2, num_chains=num_chains,
                chain_method=chain_method, progress_bar=False)
    mcmc.run(KEY, *args, init_params=init)


def _train(**kw):
    kw = {"key": KEY, "num_iterations": 3, "progress_bar": False, "log_z0": 0.0,
          "num_walkers": 8, **kw}
    return ep.train(kw.pop("energy_fn", FAMILY.energy_fn), kw.pop("params", FAMILY.params),
                    kw.pop("data", DATA), **kw)


def _pt(potential=TARGET, init=None, **kw):
    init = jnp.zeros(2) if init is None else init
    kw = {"key": KEY, "num_samples": 2, "num_warmup": 0, "progress_bar": False, **kw}
    return ep.parallel_tempering(potential, init, **kw)


def _bridge_model(y=None):
    import numpyro
    import numpyro.distributions as dist
    mu = numpyro.sample("mu", dist.Normal())
    numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)


def _nan_at(x, i, value=np.nan):
    x = np.array(x, dtype=float)
    x.flat[i] = value
    return x


def _not_a_result(tmp_path_factory=None):
    import xarray as xr
    path = "/tmp/ebm_ppl_not_a_result.nc"
    xr.DataTree.from_dict({"/": xr.Dataset({"x": ("i", np.arange(3.0))})}).to_netcdf(
        path, engine="h5netcdf")
    return path


@dataclass(frozen=True)
class Row:
    name: str          # the public name under test (``ep.<name>``)
    item: str          # which item of issue 8 it exercises
    arg: str           # the argument the message must name
    fn: Callable
    match: str = ""    # extra regex the message must match
    exc: type = ValueError
    eager: bool = False  # eager single operations allowed (energy at one point, key splits)
    choices: tuple = ()  # for unknown names: every valid choice must be listed


BAD = [
    # -- energies ------------------------------------------------------------------------------
    Row("Energy", "non-positive size", "dim", lambda: ep.Energy(potential_fn=jnp.sum, dim=0)),
    Row("Energy", "not callable", "potential_fn", lambda: ep.Energy(potential_fn=3.0, dim=2)),
    Row("ModelEnergy", "non-positive size", "dim",
        lambda: ep.ModelEnergy(potential_fn=jnp.sum, dim=-1)),
    Row("as_energy", "non-positive size", "dim", lambda: ep.as_energy(jnp.sum, dim=0)),
    Row("as_energy", "shape mismatch", "dim", lambda: ep.as_energy(TARGET, dim=3), "match"),
    Row("energy_from_fn", "energy returns a vector", "fn",
        lambda: ep.energy_from_fn(lambda x: x ** 2, jnp.zeros(2)), r"shape \(2,\)", eager=True),
    Row("energy_from_fn", "energy returns a non-float", "fn",
        lambda: ep.energy_from_fn(lambda x: jnp.sum(x > 0), jnp.ones(2)), "float", eager=True),
    Row("energy_from_fn", "NaN/inf in data", "example",
        lambda: ep.energy_from_fn(jnp.sum, jnp.array([0.0, jnp.nan])), "not finite", eager=True),
    Row("energy_from_model", "NaN/inf in data", "model argument 0",
        lambda: ep.energy_from_model(model, _nan_at(Y, 2, np.inf)), "NaN or infinite"),
    Row("energy_from_model", "key of the wrong type", "key",
        lambda: ep.energy_from_model(model, Y, key=0)),
    # -- NumPyro kernels -------------------------------------------------------------------------
    Row("ULA", "non-positive step", "step_size",
        lambda: ep.ULA(potential_fn=TARGET, step_size=0.0)),
    Row("MALA", "non-positive step", "step_size",
        lambda: ep.MALA(potential_fn=TARGET, step_size=-1)),
    Row("RWMH", "non-positive step", "step_size",
        lambda: ep.RWMH(potential_fn=TARGET, step_size=float("nan"))),
    Row("Jarzynski", "non-positive step", "step_size",
        lambda: ep.Jarzynski(potential_fn=TARGET, step_size=0)),
    Row("PureKernelSampler", "non-positive step", "step_size",
        lambda: ep.PureKernelSampler(potential_fn=TARGET, step_size=-0.5)),
    Row("MALA", "init_params shape", "init_params",
        lambda: _mcmc(ep.MALA(potential_fn=TARGET), jnp.zeros(3)), "dim=2", eager=True),
    Row("ULA", "init_params shape", "init_params",
        lambda: _mcmc(ep.ULA(potential_fn=TARGET), jnp.zeros((3, 2)), 4, "vectorized"),
        "leading dimension", eager=True),  # NumPyro splits the chains' keys eagerly first
    Row("RWMH", "energy returns a vector", "potential_fn",
        lambda: _mcmc(ep.RWMH(potential_fn=lambda x: x ** 2), jnp.zeros(2)), r"shape \(2,\)",
        eager=True),
    Row("MALA", "energy returns a non-float", "potential_fn",
        lambda: _mcmc(ep.MALA(potential_fn=lambda x: jnp.int32(1)), jnp.ones(2)), "float",
        eager=True),
    Row("MALA", "NaN/inf in data", "model argument 0",
        lambda: _mcmc(ep.MALA(model), None, args=(_nan_at(Y, 0),)), "NaN or infinite"),
    Row("Jarzynski", "NaN/inf in data", "init_params",
        lambda: _mcmc(ep.Jarzynski(potential_fn=TARGET), jnp.array([0.0, jnp.inf])),
        "not finite", eager=True),
    Row("ParallelTempering", "unknown name", "kernel",
        lambda: ep.ParallelTempering(potential_fn=TARGET, kernel="nuts"),
        choices=("mala", "rwmh", "ula", "metropolis", "gibbs")),
    Row("ParallelTempering", "non-positive step", "step_size",
        lambda: ep.ParallelTempering(potential_fn=TARGET, step_size=0.0)),
    Row("ParallelTempering", "non-positive size", "num_replicas",
        lambda: ep.ParallelTempering(potential_fn=TARGET, num_replicas=0)),
    # -- log Z and evidence ----------------------------------------------------------------------
    Row("log_partition", "non-positive step", "step_size",
        lambda: ep.log_partition(TARGET, key=KEY, step_size=0.0, **SMALL)),
    Row("log_partition", "non-positive walkers", "num_walkers",
        lambda: ep.log_partition(TARGET, key=KEY, num_walkers=0, progress_bar=False)),
    Row("log_partition", "non-positive iterations", "num_stages",
        lambda: ep.log_partition(TARGET, key=KEY, schedule="linear", num_stages=0, **SMALL)),
    Row("log_partition", "non-positive iterations", "num_moves",
        lambda: ep.log_partition(TARGET, key=KEY, num_moves=-2, **SMALL)),
    Row("log_partition", "non-positive iterations", "max_stages",
        lambda: ep.log_partition(TARGET, key=KEY, max_stages=0, **SMALL)),
    Row("log_partition", "key of the wrong type", "key",
        lambda: ep.log_partition(TARGET, key=0, **SMALL)),
    Row("log_partition", "key of the wrong type", "key",
        lambda: ep.log_partition(TARGET, key=jax.random.split(KEY, 2), **SMALL)),
    Row("log_partition", "unknown name", "method",
        lambda: ep.log_partition(TARGET, key=KEY, method="smc", **SMALL),
        choices=ep.evidence.METHODS),
    Row("log_partition", "unknown name", "schedule",
        lambda: ep.log_partition(TARGET, key=KEY, schedule="cosine", **SMALL),
        choices=("adaptive", "linear", "geometric", "power")),
    Row("log_partition", "reference shape", "reference",
        lambda: ep.log_partition(TARGET, key=KEY, reference=REF_3D, **SMALL),
        r"event_shape \(2,\)"),
    Row("log_partition", "reference without exact log_prob", "reference",
        lambda: ep.log_partition(TARGET, key=KEY, reference=object(), **SMALL), "log_prob"),
    Row("log_partition", "reference without exact log_prob", "reference",
        lambda: ep.log_partition(TARGET, key=KEY, reference=IMPROPER, **SMALL),
        "normalized log_prob"),
    Row("log_partition", "energy returns a vector", "fn",
        lambda: ep.log_partition(lambda x: x ** 2, dim=2, key=KEY, **SMALL), r"shape \(2,\)",
        eager=True),
    Row("log_partition", "energy returns a non-float", "fn",
        lambda: ep.log_partition(lambda x: jnp.sum(x > 0), dim=2, key=KEY, **SMALL), "float",
        eager=True),
    Row("log_partition", "not callable", "potential_fn",
        lambda: ep.log_partition("U", dim=2, key=KEY, **SMALL)),
    Row("log_evidence", "NaN/inf in data", "model argument 0",
        lambda: ep.log_evidence(model, _nan_at(Y, 3), key=KEY, **SMALL), "1 NaN or infinite"),
    Row("log_evidence", "NaN/inf in data", "model keyword argument 'y'",
        lambda: ep.log_evidence(model, y=_nan_at(Y, 1, -np.inf), key=KEY, **SMALL)),
    Row("log_evidence", "non-positive walkers", "num_walkers",
        lambda: ep.log_evidence(model, Y, key=KEY, num_walkers=-8, progress_bar=False)),
    Row("log_evidence", "non-positive step", "step_size",
        lambda: ep.log_evidence(model, Y, key=KEY, step_size=-1.0, **SMALL)),
    Row("log_evidence", "key of the wrong type", "key",
        lambda: ep.log_evidence(model, Y, key="seed", **SMALL)),
    Row("bayes_factor_calibration", "non-positive size", "models",
        lambda: ep.bayes_factor_calibration([model], key=KEY)),
    Row("bayes_factor_calibration", "non-positive size", "num_datasets",
        lambda: ep.bayes_factor_calibration([model, model], key=KEY, num_datasets=0)),
    Row("bayes_factor_calibration", "shape mismatch", "prior_probs",
        lambda: ep.bayes_factor_calibration([model, model], key=KEY, prior_probs=[0.2, 0.3])),
    Row("log_evidence_batch", "data shape", "model argument 0",
        lambda: ep.log_evidence_batch(model, np.zeros(()), key=KEY, **SMALL)),
    Row("log_evidence_batch", "shape mismatch", "model keyword argument",
        lambda: ep.log_evidence_batch(lambda x, y: model(y), np.zeros((2, 3)),
                                      y=np.zeros((3, 5)), key=KEY, **SMALL)),
    Row("log_evidence_batch", "NaN/inf in data", "model argument 0",
        lambda: ep.log_evidence_batch(model, _nan_at(np.zeros((2, 5)), 3), key=KEY, **SMALL)),
    Row("log_evidence_batch", "unknown name", "method",
        lambda: ep.log_evidence_batch(model, np.zeros((1, 5)), key=KEY, method="ti", **SMALL),
        choices=("hmc", "mala", "jarzynski", "nuts")),
    Row("log_evidence_batch", "key of the wrong type", "key",
        lambda: ep.log_evidence_batch(model, np.zeros((1, 5)), key="seed", **SMALL)),
    Row("log_evidence_batch", "key of the wrong type", "key",
        lambda: ep.log_evidence_batch(model, np.zeros((2, 5)), key=KEY3, **SMALL),
        "2 keys"),
    Row("log_evidence", "unknown name", "method",
        lambda: ep.log_evidence(model, Y, key=KEY, method="bridge", **SMALL),
        choices=ep.evidence.METHODS),
    Row("EvidenceResult", "missing file", "path",
        lambda: ep.EvidenceResult.load("/nonexistent/result.nc")),
    Row("EvidenceResult", "not a result file", "path",
        lambda: ep.EvidenceResult.load(_not_a_result()), "does not hold an EvidenceResult"),
    # -- training --------------------------------------------------------------------------------
    Row("train", "non-positive step", "step_size", lambda: _train(step_size=0.0)),
    Row("train", "non-positive walkers", "num_walkers", lambda: _train(num_walkers=0)),
    Row("train", "non-positive iterations", "num_iterations", lambda: _train(num_iterations=0)),
    Row("train", "non-positive iterations", "num_steps", lambda: _train(num_steps=-1)),
    Row("train", "data shape", "data", lambda: _train(data=DATA[:, 0]), "2 dimension"),
    Row("train", "data shape", "data", lambda: _train(data=np.ones((10, 3))), r"dimension \(3\)"),
    Row("train", "init_params shape", "init_walkers",
        lambda: _train(init_walkers=np.zeros((7, 2))), r"shape \(num_walkers, d\)"),
    Row("train", "NaN/inf in data", "data", lambda: _train(data=_nan_at(DATA, 5)), "1 NaN"),
    Row("train", "NaN/inf in data", "data", lambda: _train(data=_nan_at(DATA, 9, np.inf))),
    Row("train", "energy returns a vector", "energy_fn",
        lambda: _train(energy_fn=lambda p, x: x * jnp.sum(p["means"])), "one scalar per point"),
    Row("train", "energy returns a non-float", "energy_fn",
        lambda: _train(energy_fn=lambda p, x: jnp.sum(x > 0)), "float"),
    Row("train", "key of the wrong type", "key", lambda: _train(key=3)),
    Row("train", "unknown name", "method", lambda: _train(method="contrastive"),
        choices=ep.training.METHODS),
    Row("train", "not callable", "optimizer", lambda: _train(optimizer="adam")),
    Row("TrainResult", "missing file", "path", lambda: ep.TrainResult.load("/nonexistent/t.nc")),
    Row("TrainResult", "not a result file", "path",
        lambda: ep.TrainResult.load(_not_a_result()), "does not hold a"),
    Row("persist", "missing file", "path", lambda: ep.persist.load("/nonexistent/any.nc")),
    Row("persist", "not a result file", "path", lambda: ep.persist.load(_not_a_result()),
        "does not hold an ebm_ppl file"),
    Row("gaussian_mixture_energy", "NaN/inf in data", "means",
        lambda: ep.gaussian_mixture_energy(_nan_at(np.zeros((2, 2)), 1))),
    Row("gaussian_mixture_energy", "non-positive size", "scale",
        lambda: ep.gaussian_mixture_energy(np.zeros((2, 2)), scale=0.0)),
    Row("mlp_energy", "key of the wrong type", "key", lambda: ep.mlp_energy(7, 2)),
    Row("mlp_energy", "non-positive size", "dim", lambda: ep.mlp_energy(KEY, 0)),
    # -- replica exchange ------------------------------------------------------------------------
    Row("parallel_tempering", "non-positive step", "step_size", lambda: _pt(step_size=-0.1)),
    Row("parallel_tempering", "non-positive iterations", "num_samples",
        lambda: _pt(num_samples=0)),
    Row("parallel_tempering", "non-positive walkers", "num_chains", lambda: _pt(num_chains=0)),
    Row("parallel_tempering", "init_params shape", "init_position",
        lambda: _pt(init=jnp.zeros((3, 2))), "one row per rung"),
    Row("parallel_tempering", "init_params shape", "init_position",
        lambda: _pt(init=jnp.zeros(3)), eager=True),
    Row("parallel_tempering", "NaN/inf in data", "init_position",
        lambda: _pt(init=jnp.array([0.0, jnp.nan])), "finite"),
    Row("parallel_tempering", "energy returns a vector", "potential_fn",
        lambda: _pt(potential=lambda x: x ** 2), r"shape \(2,\)", eager=True),
    Row("parallel_tempering", "energy returns a non-float", "potential_fn",
        lambda: _pt(potential=lambda x: jnp.sum(x > 0)), "float", eager=True),
    Row("parallel_tempering", "key of the wrong type", "key", lambda: _pt(key=1)),
    Row("parallel_tempering", "unknown name", "kernel", lambda: _pt(kernel="hmc"),
        choices=("mala", "rwmh", "ula", "metropolis", "gibbs")),
    # -- submodules --------------------------------------------------------------------------------
    Row("targets.ill_conditioned_gaussian", "non-positive size", "d",
        lambda: targets.ill_conditioned_gaussian(d=0)),
    Row("targets.gaussian", "shape mismatch", "cov",
        lambda: targets.gaussian(np.zeros(2), np.eye(3))),
    Row("targets.funnel", "non-positive size", "d", lambda: targets.funnel(1)),
    Row("enable_compilation_cache", "unwritable directory", "path",
        lambda: ep.enable_compilation_cache(__file__ + "/not_a_dir")),
    Row("spins.log_partition", "non-positive walkers", "num_walkers",
        lambda: ep.spins.log_partition(ISING, key=KEY, num_walkers=0, progress_bar=False)),
    Row("spins.log_partition", "unknown name", "kernel",
        lambda: ep.spins.log_partition(ISING, key=KEY, kernel="wolff", progress_bar=False),
        choices=("gibbs", "metropolis")),
    Row("spins.log_partition", "key of the wrong type", "key",
        lambda: ep.spins.log_partition(ISING, key=3, progress_bar=False)),
    Row("spins.Ising", "non-positive size", "L", lambda: ep.spins.Ising(0, T=2.0)),
    Row("spins.Ising", "non-positive step", "T", lambda: ep.spins.Ising(4, T=-1.0)),
    Row("tempering.geometric_ladder", "non-positive size", "num_replicas",
        lambda: ep.tempering.geometric_ladder(0)),
    Row("tempering.parallel_tempering", "non-positive size", "betas",
        lambda: _pt(betas=[1.0, 1.5])),
    Row("diagnostics.kish_ess", "NaN/inf in data", "log_weights",
        lambda: ep.diagnostics.kish_ess(np.array([0.0, np.nan]))),
    Row("diagnostics.weighted_mean", "shape mismatch", "log_weights",
        lambda: ep.diagnostics.weighted_mean(np.zeros(3), np.zeros(4))),
    Row("diagnostics.resample", "key of the wrong type", "key",
        lambda: ep.diagnostics.resample(np.zeros((3, 2)), np.zeros(3), key=0)),
    Row("plots.plot_training", "not a result", "history",
        lambda: ep.plots.plot_training(3)),
    Row("bridge_sampling", "not a result", "posterior",
        lambda: ep.bridge_sampling(3, _bridge_model, key=KEY), exc=TypeError),
    Row("compare_evidence", "non-positive size", "results", lambda: ep.compare_evidence([])),
    Row("compare_evidence", "not a result", "results",
        lambda: ep.compare_evidence([3, 4]), exc=TypeError),
    Row("training.train", "unknown name", "sm_trace",
        lambda: _train(method="sm", sm_trace="fast"), choices=("auto", "exact", "hutchinson")),
]

# Names in ``ep.__all__`` that take no user input worth checking, with the reason.
NOT_ENTRY_POINTS = {
    "SamplingDivergedError": "an exception class",
    "SamplerState": "a NamedTuple the kernels build (collected with extra_fields)",
    "LangevinSamplerState": "SamplerState with MALA's energy (built by the kernel)",
    "NonFiniteDrawWarning": "a warning class",
    "StateFieldError": "an exception class",
    "EnergyFamily": "a NamedTuple returned by the family factories",
    "__version__": "a string",
    "CompileClock": "a context manager that takes no arguments",
    "kernels": "pure jittable (init, step) functions: their callers validate before tracing",
    "weights": "pure jittable weight arithmetic: its callers validate before tracing",
    "BridgeResult": "a result dataclass that ep.bridge_sampling builds",
    "EvidenceBatch": "a sequence of results that ep.log_evidence_batch builds",
    "BayesFactorCalibration": "a result dataclass that ep.bayes_factor_calibration builds",
}
ISSUE_ITEMS = {
    "non-positive step", "non-positive walkers", "non-positive iterations", "init_params shape",
    "data shape", "reference shape", "energy returns a vector", "energy returns a non-float",
    "NaN/inf in data", "reference without exact log_prob", "key of the wrong type",
    "unknown name",
}


def test_the_table_covers_every_public_name_and_every_item_of_the_issue():
    tested = {row.name.split(".")[0] for row in BAD}
    public = set(ep.__all__) - set(NOT_ENTRY_POINTS)
    assert public <= tested, f"public names without a bad-input row: {sorted(public - tested)}"
    missing = ISSUE_ITEMS - {row.item for row in BAD}
    assert not missing, f"issue items without a row: {missing}"


@contextlib.contextmanager
def _compilations():
    """Names of the programs JAX compiles inside the block."""
    names = []

    class Grab(logging.Handler):
        def emit(self, record):
            m = re.search(r"[Cc]ompiling (\S+)", record.getMessage())
            if m:
                names.append(m.group(1))

    handler = Grab(level=logging.DEBUG)
    loggers = [logging.getLogger(n) for n in ("jax._src.dispatch", "jax._src.interpreters.pxla",
                                             "jax._src.pjit", "jax")]
    for lg in loggers:
        lg.addHandler(handler)
    try:
        with jax.log_compiles(True):
            yield names
    finally:
        for lg in loggers:
            lg.removeHandler(handler)


@pytest.mark.parametrize("row", BAD, ids=lambda r: f"{r.name}-{r.arg}-{r.item}".replace(" ", "_"))
def test_bad_input_is_a_clear_error_before_compilation(row):
    t0 = time.perf_counter()
    with _compilations() as compiled, pytest.raises(row.exc) as info:
        row.fn()
    elapsed = time.perf_counter() - t0
    message = str(info.value)
    assert row.arg in message, f"the message does not name {row.arg!r}: {message}"
    assert re.search(row.match, message), message
    assert "\n" not in message and len(message) < 400 and "Traceback" not in message
    for choice in row.choices:
        assert repr(choice) in message, f"valid choice {choice!r} not listed: {message}"
    frames = traceback.extract_tb(info.value.__traceback__)
    inside = [f for f in frames if "jax/_src" in f.filename or "jax/interpreters" in f.filename]
    assert not inside, f"raised from inside a JAX trace: {inside[-1]}"
    # a single eager operation compiles as jit(<primitive>); a sampler program never may
    programs = [n for n in compiled if not row.eager or not re.fullmatch(r"jit\(\w+\)", n)]
    assert not programs, f"compiled before the check: {programs}"
    assert elapsed < 20.0, f"took {elapsed:.1f} s"
