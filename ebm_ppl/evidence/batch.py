"""The evidence of one model on a batch of K data sets in one compiled run.

`log_evidence_batch` runs K independent likelihood-tempering runs (seed eq. 1-2, the
engine of `engine`) side by side: the K data sets' walkers, log weights, adaptive
schedules, step sizes, genealogies and bias probes are K copies of the unbatched state, and
one call of the compiled batch stage advances every data set by one annealing stage (the
engine's `_stage`, applied to each data set in turn by ``lax.map``). The
adaptive schedule (next beta at conditional ESS ``target_ess``,
`next_beta`) makes the runs take different numbers of stages: a data set
that reached beta = 1 is skipped (``lax.cond``, no work) while the others go on, and the loop
ends when all are done.

Why ``lax.map`` and not ``vmap``: the annealing is chaotic (HMC trajectories, accept/reject,
resampling), so a one-ulp difference in a reduction over walkers grows ~100x per stage and
changes log Z by its standard error after a few stages; a ``vmap``-ed stage reorders the
reductions and does exactly that. The body of ``lax.map`` is the unbatched program, so data
set ``k`` reproduces ``ep.log_evidence(model, *data_k, key=keys[k])`` (``keys =
jax.random.split(key, K)``) to the last bit on the CPU. What the batch saves is the per-call
work: one model structure, one compiled program, one host round trip per stage for all K
data sets. Simulation-based calibration of Bayes factors (`sbc`) is built on it.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..compilation import CompileClock, compiled_postfix
from ..energy import energy_from_model
from ..errors import SamplingDivergedError, check_model_data
from ..sharding import to_host
from ._model_result import with_model_data
from ._probe import PROBE_FRACTION, probe_setup, shares_programs
from ._run import finish, move_for, schedule_for
from ._walkers import initial_step, path_delta
from .engine import (_pool_layout, _progress, _stage, _Static, all_walkers_died,
                     anneal_output, initial_carry)
from .options import DEFAULT_METHOD, AnnealOptions, run_keys, typed_key
from .paths import tempering_path
from .schedules import Adaptive

__all__ = ["log_evidence_batch", "EvidenceBatch", "BATCH_METHODS"]

BATCH_METHODS = ("hmc", "mala", "jarzynski", "nuts")


@dataclass(frozen=True)
class EvidenceBatch(Sequence):
    """K `EvidenceResult` objects, one per data set, with their estimates as arrays.

    Index it (``batch[k]``), iterate over it or read ``log_z``, ``log_z_se``, ``log_z_err``
    and ``reliable`` as arrays of length K. ``wall_time`` and ``compile_time`` are those of
    the whole batched call (each result's own ``wall_time``/``compile_time`` is its K-th
    share); ``keys`` are the K keys the data sets ran with.
    """

    results: tuple
    wall_time: float = 0.0
    compile_time: float = 0.0
    keys: Any = None

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, k):
        return self.results[k]

    @property
    def log_z(self) -> np.ndarray:
        return np.array([r.log_z for r in self.results])

    @property
    def log_z_se(self) -> np.ndarray:
        return np.array([r.log_z_se for r in self.results])

    @property
    def log_z_err(self) -> np.ndarray:
        return np.array([r.total_error for r in self.results])

    @property
    def reliable(self) -> np.ndarray:
        return np.array([bool(r.reliable) for r in self.results])

    def __repr__(self) -> str:
        return (f"EvidenceBatch(K={len(self)}, log_z={np.array2string(self.log_z, precision=3)}"
                f", wall_time={self.wall_time:.2f} s, compile_time={self.compile_time:.2f} s)")


# options of log_evidence that a batch does not offer: caught by name, not passed to the model
NOT_IN_BATCH = ("bar", "devices", "mesh", "keep_modes")


def log_evidence_batch(model, *model_args, key, method: str = DEFAULT_METHOD,
                       num_walkers: int | None = None, step_size=None, schedule="adaptive",
                       num_stages: int | None = None, target_ess: float = 0.7,
                       num_moves: int | None = None, num_leapfrog: int | None = None,
                       target_accept=None, adapt_step_size: bool | None = None,
                       step_jitter: float | None = None, precondition: bool | None = None,
                       resample_threshold: float = 1.0, num_groups: int | None = None,
                       resampling: str | None = None, bias_check: bool | None = None,
                       max_stages: int = 1000, progress_bar: bool = True,
                       **model_kwargs) -> EvidenceBatch:
    """log p(data_k) of a NumPyro model for K data sets in one compiled run.

    Every array argument of the model (positional or keyword) carries a leading axis of K
    data sets (tile a shared one, e.g. a fixed design matrix, with ``jnp.broadcast_to``);
    other arguments (None, numbers, strings) are shared. Data set ``k`` runs with its own
    walkers, adaptive schedule, step size, bias probe and error bar, exactly as
    ``ep.log_evidence(model, *data_k, key=keys[k])`` where ``keys = jax.random.split(key, K)``
    (``key`` may also be K keys): the same walkers, schedule and ``log_z`` (bitwise on the
    CPU; see the module docstring). One compilation serves the whole batch (and later
    batches of the same K and shapes); the data sets run one after another inside each
    compiled stage, so the gain over K calls is the per-call work, not parallel arithmetic.
    Options as in [`log_evidence`][ebm_ppl.log_evidence], for the annealing methods "hmc" (default),
    "mala", "jarzynski" and "nuts"; the BAR reverse pass (``bar``), sharding over devices
    (``devices``, ``mesh``) and ``keep_modes`` are not offered here (a clear error names them).

    Returns an `EvidenceBatch` (a sequence of K `EvidenceResult`). Raises
    `SamplingDivergedError`, naming the data sets, when every walker
    of some data set dies.
    """
    opts = AnnealOptions(
        method=method, num_walkers=num_walkers, num_groups=num_groups, step_size=step_size,
        schedule=schedule, num_stages=num_stages, target_ess=target_ess, num_moves=num_moves,
        num_leapfrog=num_leapfrog, target_accept=target_accept,
        adapt_step_size=adapt_step_size, step_jitter=step_jitter, precondition=precondition,
        resample_threshold=resample_threshold, resampling=resampling, bias_check=bias_check,
        max_stages=max_stages, progress_bar=progress_bar)
    if opts.method not in BATCH_METHODS:
        raise ValueError(f"method={opts.method!r} is not available for a batch of data sets; "
                         f"log_evidence_batch takes one of "
                         f"{', '.join(repr(m) for m in BATCH_METHODS)}")
    if not callable(model):
        raise ValueError(f"model must be a callable NumPyro model, got {type(model).__name__}")
    if unoffered := [name for name in NOT_IN_BATCH if name in model_kwargs]:
        raise ValueError(f"log_evidence_batch does not offer {', '.join(unoffered)} (options of "
                         "ep.log_evidence): run ep.log_evidence on each data set for them")
    size = _batch_size(model_args, model_kwargs)
    check_model_data(model_args, model_kwargs)
    keys = _batch_keys(key, size)
    with CompileClock() as clock:
        t0 = time.perf_counter()
        results = _evidence_batch(model, model_args, model_kwargs, keys, size, opts)
        wall = time.perf_counter() - t0
    share = dict(wall_time=wall / size, compile_time=clock.seconds / size)
    results = tuple(dataclasses.replace(r, **share) for r in results)
    return EvidenceBatch(results, wall_time=wall, compile_time=clock.seconds, keys=keys)


def _is_array(v) -> bool:
    return isinstance(v, jax.Array | np.ndarray)


def _batch_size(model_args, model_kwargs) -> int:
    """K: the common leading axis of every array argument (errors name the argument)."""
    named = [(f"model argument {i}", a) for i, a in enumerate(model_args)]
    named += [(f"model keyword argument {k!r}", a) for k, a in model_kwargs.items()]
    sizes: dict[int, str] = {}
    for name, value in named:
        for leaf in jax.tree.leaves(value):
            if not _is_array(leaf):
                continue
            if np.ndim(leaf) == 0:
                raise ValueError(f"{name} is a scalar array: every array argument of "
                                 "log_evidence_batch needs a leading axis of K data sets")
            sizes.setdefault(int(np.shape(leaf)[0]), name)
    if not sizes:
        raise ValueError("log_evidence_batch needs the data: at least one array argument with a "
                         "leading axis of K data sets")
    if len(sizes) > 1:
        found = ", ".join(f"{n} has {k}" for k, n in sizes.items())
        raise ValueError(f"every array argument needs the same leading axis of K data sets "
                         f"({found}); tile a shared argument with jnp.broadcast_to")
    size = next(iter(sizes))
    if size < 1:
        raise ValueError("the data arguments hold K = 0 data sets")
    return size


def _batch_keys(key, size: int):
    """K typed keys: ``split(key, K)`` of one key, or the K keys given."""
    arr = key if isinstance(key, jax.Array) else np.asarray(key) \
        if isinstance(key, np.ndarray | list | tuple) else None
    if arr is None or arr.dtype == object:
        return jax.random.split(typed_key(key), size)  # typed_key names a wrong key
    typed = jax.dtypes.issubdtype(arr.dtype, jax.dtypes.prng_key)
    batch_ndim = arr.ndim if typed else arr.ndim - 1
    if batch_ndim <= 0:
        return jax.random.split(typed_key(key), size)
    if batch_ndim == 1 and arr.shape[0] == size:
        keys = arr if typed else jax.random.wrap_key_data(jnp.asarray(arr))
        typed_key(keys[0])  # validated
        return keys
    raise ValueError(f"key must be one key or {size} keys (one per data set), got shape "
                     f"{tuple(arr.shape)}")


def _take(tree, k: int):
    return jax.tree.map(lambda a: a[k] if _is_array(a) else a, tree)


def _evidence_batch(model, model_args, model_kwargs, keys, size, opts: AnnealOptions):
    energies, key_runs = [], []
    for k in range(size):
        key_model, key_run = jax.random.split(keys[k])  # as ep.log_evidence splits its key
        energies.append(energy_from_model(model, *_take(model_args, k), key=key_model,
                                          **_take(model_kwargs, k)))
        key_runs.append(key_run)
    structure = energies[0].structure
    if structure is None or any(e.structure is not structure for e in energies):
        raise ValueError("log_evidence_batch needs hashable non-array model arguments (the "
                         "model's structure must be shared by the data sets)")
    paths = [tempering_path(e) for e in energies]
    data = jax.tree.map(lambda *a: jnp.stack(a), *[e.data for e in energies])
    batched = dataclasses.replace(paths[0], data=data, target_data=data)
    runs = _run_batch(batched, paths, jnp.stack(key_runs), opts)
    results = []
    for k, (path, energy) in enumerate(zip(paths, energies)):
        state, out, probe, step = runs[k]
        result = finish(path, None, opts, state, out, runs.sched, step, move_for(path, opts),
                        int(opts.num_walkers), "prior", dict(kind="prior"), runs.t0, None,
                        probe=probe)
        results.append(with_model_data(result, energy, model, *_take(model_args, k),
                                       **_take(model_kwargs, k)))
    return results


class _Runs(list):
    sched: Any = None
    t0: float = 0.0


_batch_run_keys = jax.jit(jax.vmap(run_keys))  # K data sets' `run_keys`, one program


@functools.partial(jax.jit, static_argnums=2)
def _initial_batch(path, keys, n):
    """K sets of ``n`` prior draws with U_0, V and gradients, one data set after another in
    one program (``lax.map``, not ``vmap``: each data set's arithmetic is then bitwise the
    unbatched program's, which the annealing's chaotic dynamics need to reproduce its log Z)."""
    return jax.lax.map(lambda pk: pk[0].evaluate_batch(pk[0].sample_base(pk[1], n)),
                       (path, keys))


def _initial_states(path, keys, n):
    """K sets of exact prior draws (as `_walkers.initial_state`)."""
    state = _initial_batch(path, keys, n)
    finite = np.asarray(jnp.any(jnp.isfinite(state.delta) & jnp.isfinite(state.u0), axis=1))
    if not finite.all():
        bad = np.flatnonzero(~finite).tolist()
        raise SamplingDivergedError(f"data set(s) {bad}: the energy is not finite at any draw "
                                    "from the prior")
    return state


def _run_batch(batched, paths, key_runs, opts: AnnealOptions) -> _Runs:
    """The forward runs (and bias probes) of the K data sets, as `_run.run` does one."""
    t0 = time.perf_counter()
    n = int(opts.num_walkers)
    size = len(paths)
    split = _batch_run_keys(key_runs)  # each data set's keys, as `_run.run` derives them
    state = _initial_states(batched, split[0], n)
    sched = schedule_for(opts)
    steps = []
    for k, path in enumerate(paths):
        if opts.step_size is None:
            steps.append(initial_step(_take(state, k), opts.method,
                                            opts.initial_step(path.dim), opts.precondition))
        else:
            steps.append(opts.step_size)
    move = move_for(batched, opts)
    pools = PROBE_FRACTION if shares_programs(opts, n) else 1
    outs = anneal_batch(split[1], state, move=move, schedule=sched, options=opts,
                        log_z0=batched.log_z0, step_sizes=steps, desc=f"log Z x{size} "
                        f"({opts.method})", pools=pools)
    failed = [k for k, o in enumerate(outs) if isinstance(o, SamplingDivergedError)]
    if failed:
        raise SamplingDivergedError(f"data set(s) {failed}: {outs[failed[0]]}")
    probes: list = [None] * size
    if opts.bias_check:  # as _probe.run_probe, for each data set
        walkers, setup = probe_setup(opts, n)
        pstate = _initial_states(batched, split[3], walkers)
        probes = anneal_batch(split[4], pstate, move=move, schedule=sched, log_z0=0.0,
                              step_sizes=steps, desc="bias probes", **setup)
    runs = _Runs((_take(state, k), outs[k], probes[k], steps[k])
                 for k in range(size))
    runs.sched, runs.t0 = sched, t0
    return runs


@functools.partial(jax.jit, static_argnames=("static",))
def _batch_stage(carry, done, beta_target, use_target, adapt_on, move, static: _Static,
                 layout):
    """The engine's `_stage` for each data set in turn (``lax.map``), skipping
    (``lax.cond``: no work) the ones whose run is ``done``; ``layout`` holds `_stage`'s
    traced layout arguments (empty for the ordinary layout)."""
    def run(c, mv):
        return _stage(c, beta_target, use_target, adapt_on, mv, _DELTA, static=static,
                      **layout)[:2]

    def skip(c, mv):
        record = jax.eval_shape(run, c, mv)[1]
        return c, jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), record)

    def one(args):
        c, mv, d = args
        return jax.lax.cond(d, skip, run, c, mv)

    return jax.lax.map(one, (carry, move, done))


_DELTA = jax.tree_util.Partial(path_delta)


def anneal_batch(keys, state, *, move, schedule, options: AnnealOptions, log_z0: float = 0.0,
                 step_sizes, desc: str = "annealing", pools: int = 1, pooled: bool = True,
                 moves: int | None = None) -> list:
    """K annealing runs of `anneal`, one per data set, in one compiled stage.

    ``state`` is a `PathState` whose leaves have leading axes (K, N);
    ``move`` a move whose pytree leaves (the path's data) have a leading axis K; ``keys``
    and ``step_sizes`` hold one key and one first step per data set. Each run follows its own
    adaptive schedule; finished ones are masked until all are done. Returns K
    `AnnealOutput` (or, for a run whose walkers all died, the
    `SamplingDivergedError` the unbatched run would raise). ``pools``, ``pooled`` and
    ``moves`` as in `anneal`.
    """
    size, n_total = (int(s) for s in jax.tree.leaves(state)[0].shape[:2])
    g = int(options.num_groups)
    adaptive = schedule if isinstance(schedule, Adaptive) else None
    betas = None if adaptive is not None else np.asarray(schedule, dtype=np.float64)
    dtype = state.position.dtype
    static = _Static(options.stage_key(), adaptive, False, None)
    layout = _pool_layout(n_total, g, pools, pooled, moves, options.num_moves)
    one = initial_carry(_take(state, 0), g, dtype, 0.0 if betas is None else betas[0], 0.0,
                        keys[0], pools=pools, pooled=pooled)
    # K copies made by numpy (eager jax.numpy compiles a program per field on a first call)
    tiled = {f: jax.device_put(np.broadcast_to(np.asarray(a), (size,) + np.shape(a)))
             for f, a in one._asdict().items() if f not in ("state", "log_step", "key")}
    carry = one._replace(**tiled, state=state, key=keys, log_step=jax.device_put(
        np.log(np.asarray(step_sizes, np.float64)).astype(dtype)))
    done = np.zeros(size, bool)
    stages = np.zeros(size, int)
    errors: dict = {}
    records = []
    bar = _progress(options.progress_bar, desc, adaptive is None and betas.size - 1)  # type: ignore[union-attr]
    stage = 0
    try:
        while not done.all():
            if betas is not None:
                target, use_target = betas[stage + 1], True
            else:
                target, use_target = 1.0, stage >= options.max_stages - 1
            carry, rec = _batch_stage(carry, np.asarray(done), np.asarray(target, dtype),
                                      np.asarray(use_target),
                                      np.asarray(options.adapt_step_size), move, static,
                                      layout)
            rec = to_host(rec)
            records.append(rec)
            running = ~done
            stage += 1
            stages[running] = stage
            dead = running & (np.asarray(rec["alive"]) == 0)
            for k in np.flatnonzero(dead).tolist():
                errors[int(k)] = all_walkers_died(stage, float(rec["beta"][k]),
                                                  sum(int(r["num_dead"][k]) for r in records))
            finished = (np.asarray(rec["beta"]) >= 1.0) if betas is None else \
                np.full(size, stage == betas.size - 1)
            done = done | dead | (running & finished)
            if bar is not None:
                bar.update(1 if adaptive is None else 0)
                if adaptive is not None:
                    bar.n = round(1000 * float(np.min(np.where(done, 1.0, rec["beta"]))))
                bar.set_postfix(stage=stage, done=f"{int(done.sum())}/{size}",
                                **compiled_postfix(), refresh=False)
                bar.refresh()
    finally:
        if bar is not None:
            bar.close()
    outs: list = []
    for k in range(size):
        if k in errors:
            outs.append(errors[k])
            continue
        history = {name: np.stack([np.asarray(r[name][k]) for r in records[:stages[k]]])
                   for name in records[0]}
        outs.append(anneal_output(_take(carry, k), history, log_z0, pooled=pooled))
    return outs
