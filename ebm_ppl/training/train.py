"""``ep.train``: fit an energy U_theta to data with any gradient estimator and an optax optimizer.

The loop is the engine of the design notes run on the path of parameters theta_k produced by
the optimizer (seed eq. 105): one jitted ``lax.scan`` over a chunk of iterations, a progress
bar between chunks, atomic checkpoints. The key of iteration k is ``fold_in(key, k)`` and every
chunk runs the same compiled program (start and stop are traced), so a run resumed from a
checkpoint is bit-for-bit the uninterrupted run.
"""

from __future__ import annotations

import functools
import hashlib
import time
import warnings
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from ..errors import SamplingDivergedError
from ..evidence.resampling import log_mean_exp
from ..sharding import check_divisible, shard_walkers, to_host, walker_sharding
from . import checkpoint as ckpt
from .result import TrainResult
from .sampling import Estimator, contrastive_divergence, draw_rows, equilibrate, jarzynski
from .sampling_free import (default_noise, denoising_score_matching, noise_contrastive,
                            score_matching, sliced_score_matching)
from .validate import validate

METHODS = ("jarzynski", "pcd", "cd", "sm", "dsm", "ssm", "nce")
SAMPLING = ("jarzynski", "pcd", "cd")


class Carry(NamedTuple):
    params: Any
    opt_state: Any
    state: Any


def _estimator(cfg: dict, energy_fn, data, init_walkers=None, log_z0=None) -> Estimator:
    m = cfg["method"]
    if m == "jarzynski":
        return jarzynski(energy_fn, data, init_walkers=init_walkers, log_z0=log_z0,
                         step_size=cfg["step_size"], num_steps=cfg["num_steps"],
                         resample_threshold=cfg["resample_threshold"])
    if m in ("cd", "pcd"):
        return contrastive_divergence(
            energy_fn, data, num_walkers=cfg["num_walkers"], step_size=cfg["step_size"],
            num_steps=cfg["num_steps"], persistent=m == "pcd", reinit_every=cfg["reinit_every"])
    if m == "sm":
        return score_matching(energy_fn, data, trace=cfg["sm_trace"])
    if m == "dsm":
        return denoising_score_matching(energy_fn, data, noise_scale=cfg["noise_scale"])
    if m == "ssm":
        return sliced_score_matching(energy_fn, data, num_projections=cfg["num_projections"])
    noise = default_noise(data) if cfg["noise"] is None else cfg["noise"]
    return noise_contrastive(energy_fn, data, noise=noise, noise_ratio=cfg["noise_ratio"],
                             log_z0=log_z0, log_z_optimizer=cfg["log_z_optimizer"])


@functools.lru_cache(maxsize=8)
def _programs(cfg_items: tuple, energy_fn, optimizer, chunk_size: int, track=None):
    """The jitted init and chunk programs, cached so repeated or resumed runs of the same
    energy, optimizer and options in one session compile once."""
    cfg = dict(cfg_items)
    batch_size = cfg["batch_size"]

    def chunk(carry, start, stop, data, key):
        est = _estimator(cfg, energy_fn, data)

        def step(carry, k):
            k_batch, k_est, k_adv = jax.random.split(jax.random.fold_in(key, k), 3)
            idx = None if batch_size is None else jax.random.randint(
                k_batch, (batch_size,), 0, data.shape[0])
            grads, state, m1 = est.estimate(k_est, carry.params, carry.state, idx)
            updates, opt_state = optimizer.update(grads, carry.opt_state, carry.params)
            params = optax.apply_updates(carry.params, updates)
            state, m2 = est.advance(k_adv, params, state, k)
            m3 = {} if track is None else track(carry.params)
            return Carry(params, opt_state, state), {**m1, **m2, **m3}

        def body(carry, k):
            shapes = jax.eval_shape(step, carry, k)[1]
            zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
            return lax.cond(k < stop, step, lambda c, k: (c, zeros), carry, k)

        return lax.scan(body, carry, start + jnp.arange(chunk_size))

    def init(params, data, key, init_walkers, log_z0):
        return Carry(params, optimizer.init(params), _init_state(
            cfg, energy_fn, params, data, key, init_walkers=init_walkers, log_z0=log_z0))

    return jax.jit(init), jax.jit(chunk)


def _fingerprint(cfg, data, key, params) -> dict:
    fp = {k: v for k, v in cfg.items() if isinstance(v, (int, float, str, bool, type(None)))}
    fp["data_shape"] = list(data.shape)
    fp["data_sha256"] = hashlib.sha256(np.ascontiguousarray(data).tobytes()).hexdigest()
    fp["key"] = np.asarray(jax.random.key_data(key)).tolist()
    fp["params"] = ckpt.describe(params)
    return fp


def train(energy_fn: Callable, params, data, *, key, method: str = "jarzynski",
          optimizer: optax.GradientTransformation | None = None, num_walkers: int = 1024,
          step_size: float = 1e-2, num_iterations: int = 1000, num_steps: int = 1,
          batch_size: int | None = None, init_walkers=None, log_z0: float | None = None,
          num_equilibration_steps: int = 500, resample_threshold: float = 0.4,
          reinit_every: int = 1, noise=None, noise_ratio: int = 1, noise_scale: float = 0.1,
          sm_trace: str = "auto", num_projections: int = 1, chunk_size: int | None = None,
          checkpoint_dir=None, checkpoint_every: int | None = None, resume: bool = False,
          progress_bar: bool = True, callback: Callable | None = None,
          track: Callable | None = None, log_z_optimizer=None, devices=None,
          mesh=None) -> TrainResult:
    """Train ``energy_fn(params, x) -> scalar`` on ``data`` (shape ``(n, d)``).

    ``params`` is any pytree of float arrays (plain dicts/lists, flax ``init`` output; for
    equinox pass the array part of ``eqx.partition`` and combine inside ``energy_fn``).
    Returns a :class:`~ebm_ppl.training.TrainResult`.

    Args:
        method: ``"jarzynski"`` (eq. 102-106), ``"pcd"`` (Algorithm 2), ``"cd"`` (Algorithm 1),
            ``"sm"``, ``"dsm"``, ``"ssm"`` or ``"nce"`` (seed 6.2).
        optimizer: any optax transformation (default ``optax.adam(1e-3)``); per-parameter
            rates via ``optax.multi_transform``.
        num_walkers, step_size, num_steps: walkers and ULA steps per update (sampling methods).
        batch_size: data points per iteration for the data term, drawn with replacement
            (default: all, as in Algorithms 1-2).
        init_walkers: ``(num_walkers, d)`` draws from the initial model (``jarzynski``); when
            omitted, data points equilibrated by ``num_equilibration_steps`` MALA steps.
        log_z0: log Z of the initial model (``jarzynski``; initial ``c`` for ``nce``). When
            omitted for ``jarzynski`` it is estimated with ``ep.log_partition``.
        resample_threshold: resample when E[w^2]/E[w]^2 - 1 exceeds it (``jarzynski``).
        reinit_every: ``cd`` re-draws walkers from the data every so many iterations.
        noise, noise_ratio: NCE noise distribution (default: Gaussian with the data's mean and
            twice its covariance) and noise draws per data point (drawn once, fixed).
        log_z_optimizer: optax transformation of NCE's learned log Z (default: ``optimizer``
            itself when it applies to a scalar, e.g. adam or sgd).
        noise_scale: DSM corruption scale. sm_trace: ``"auto"|"exact"|"hutchinson"``.
        chunk_size: iterations per compiled chunk (progress bar and callback between chunks).
        checkpoint_dir, checkpoint_every, resume: atomic checkpoints; ``resume=True``
            continues the run saved there (Ctrl-C saves a last checkpoint).
        callback: ``callback(iteration, params)`` after every chunk.
        track: ``track(params) -> dict of scalars``, jittable, evaluated at every iterate
            theta_k inside the compiled loop and stored in the history (e.g. exact log Z).
        devices, mesh: shard the walkers of ``jarzynski``/``pcd``/``cd`` over devices, as in
            :func:`ebm_ppl.log_partition` (``num_walkers`` must divide evenly); the weighted
            gradient average (eq. 105) and resampling stay global. ``result.walker_state``
            keeps the final walkers on the devices.
    """
    t0 = time.perf_counter()
    if (resume or checkpoint_every is not None) and checkpoint_dir is None:
        raise ValueError("resume=True and checkpoint_every need checkpoint_dir")
    v = validate(energy_fn, params, data, key=key, method=method, optimizer=optimizer,
                 num_walkers=num_walkers, step_size=step_size, num_iterations=num_iterations,
                 num_steps=num_steps, batch_size=batch_size, init_walkers=init_walkers,
                 log_z0=log_z0, num_equilibration_steps=num_equilibration_steps,
                 resample_threshold=resample_threshold, reinit_every=reinit_every, noise=noise,
                 noise_ratio=noise_ratio, noise_scale=noise_scale, sm_trace=sm_trace,
                 num_projections=num_projections, chunk_size=chunk_size,
                 checkpoint_every=checkpoint_every, methods=METHODS, sampling=SAMPLING)
    cfg, data, params, key, optimizer = v.cfg, v.data, v.params, v.key, v.optimizer
    sharding = walker_sharding(devices, mesh)
    if sharding is not None:
        if method not in SAMPLING:
            raise ValueError(f"devices=/mesh= shard walkers, and method={method!r} has none; "
                             f"use one of {SAMPLING} or leave devices=None")
        check_divisible(cfg["num_walkers"], sharding)
    if track is not None and not callable(track):
        raise ValueError(f"track must be callable, got {type(track).__name__}")
    info = {"method": method}
    nce_c0 = None
    if method == "nce":
        cfg["log_z_optimizer"] = _check_log_z_optimizer(log_z_optimizer, optimizer, data.dtype)
        nce_c0 = log_z0 if log_z0 is not None else _nce_log_z_start(energy_fn, params, data, cfg)
        info["log_z0"] = float(nce_c0)
    fingerprint = _fingerprint(cfg, data, key, params)
    chunk = chunk_size or min(100, checkpoint_every or 100)
    start, history = 0, {}
    resuming = resume and ckpt.exists(checkpoint_dir)
    if resuming:
        extra = ckpt.read_extra(checkpoint_dir)
        if chunk_size is not None and extra.get("chunk_size", chunk_size) != chunk_size:
            raise ckpt.CheckpointError(f"chunk_size={chunk_size} differs from the checkpoint's "
                                       f"{extra.get('chunk_size')}: results would not be identical")
        chunk = extra.get("chunk_size", chunk)
    init_fn, run_chunk = _programs(tuple(sorted(cfg.items())), energy_fn, optimizer, chunk, track)
    if resuming:
        walkers0 = None
        if method == "jarzynski":
            walkers0 = jax.ShapeDtypeStruct((cfg["num_walkers"], data.shape[1]), data.dtype)
        template = jax.eval_shape(init_fn, params, data, key, walkers0,
                                  jax.ShapeDtypeStruct((), data.dtype))
        start, carry, history, extra = ckpt.load(checkpoint_dir, template, fingerprint)
        info.update(extra["info"], resumed_from=start)
    else:
        walkers0, log_z_0 = v.init_walkers, nce_c0
        if method == "jarzynski":
            walkers0, log_z_0 = _jarzynski_start(cfg, energy_fn, params, data, key, v, info,
                                                 sharding)
        carry = init_fn(params, data, key, walkers0,
                        None if log_z_0 is None else jnp.asarray(log_z_0, data.dtype))
    if sharding is not None:  # GSPMD keeps the walker sharding through every chunk
        carry = carry._replace(state=shard_walkers(carry.state, sharding, cfg["num_walkers"]))
    info["chunk_size"] = chunk
    carry, history = _loop(run_chunk, carry, history, start, num_iterations, chunk, data, key,
                           method, checkpoint_dir, checkpoint_every, fingerprint, info,
                           progress_bar, callback)
    info["wall_time_s"] = time.perf_counter() - t0
    dead = int(np.sum(history.get("num_dead", 0)))
    if dead:
        first = int(history["iteration"][np.argmax(history["num_dead"] > 0)])
        info["num_dead"] = dead
        warnings.warn(f"{dead} walker(s) died during training (first at iteration {first}): "
                      "their energy or gradient became non-finite or a ULA move diverged; they "
                      "got weight zero; a smaller step_size avoids this", RuntimeWarning,
                      stacklevel=2)
    return _result(method, carry, history, info)


def _check_log_z_optimizer(log_z_optimizer, optimizer, dtype):
    """NCE's optimizer of c: the given one, or the user's optimizer if it takes a scalar."""
    tx = optimizer if log_z_optimizer is None else log_z_optimizer
    if not all(callable(getattr(tx, a, None)) for a in ("init", "update")):
        raise ValueError("log_z_optimizer must be an optax GradientTransformation")
    c = jax.ShapeDtypeStruct((), dtype)
    try:
        jax.eval_shape(lambda c: tx.update(c, tx.init(c), c), c)
    except Exception as err:  # noqa: BLE001 -- e.g. multi_transform labels for the params
        raise ValueError(
            "method='nce' learns log Z as a scalar: the optimizer does not apply to a scalar "
            f"({type(err).__name__}); pass log_z_optimizer= (e.g. optax.adam(1e-2))") from None
    return tx


def _nce_log_z_start(energy_fn, params, data, cfg):
    """Start c where the mean log-odds of the data is zero (no saturated classifier)."""

    def fn(p, x):
        noise = default_noise(x) if cfg["noise"] is None else cfg["noise"]
        return jnp.mean(-jax.vmap(energy_fn, (None, 0))(p, x) - noise.log_prob(x))

    return float(jax.jit(fn)(params, data))


def _init_state(cfg, energy_fn, params, data, key, *, init_walkers, log_z0):
    est = _estimator(cfg, energy_fn, data, init_walkers=init_walkers, log_z0=log_z0)
    return est.init(jax.random.fold_in(key, -1 & 0x7FFFFFFF), params)


def _jarzynski_start(cfg, energy_fn, params, data, key, v, info, sharding=None):
    walkers = shard_walkers(v.init_walkers, sharding)
    if walkers is None:
        start = shard_walkers(draw_rows(jax.random.fold_in(key, 0x7FFFFFFE), data,
                                        cfg["num_walkers"]), sharding)
        walkers = jax.jit(equilibrate, static_argnums=(1, 5))(
            jax.random.fold_in(key, 0x7FFFFFFD), energy_fn, params, start, cfg["step_size"],
            cfg["num_equilibration_steps"])
        info["init_walkers"] = f"data equilibrated by {cfg['num_equilibration_steps']} MALA steps"
    else:
        info["init_walkers"] = "given"
    log_z0 = v.log_z0
    if log_z0 is None:
        log_z0, se = _estimate_log_z0(energy_fn, params, data.shape[1], key)
        info.update(log_z0_source="estimated with ep.log_partition", log_z0_se=se)
    else:
        info["log_z0_source"] = "given"
    info["log_z0"] = float(log_z0)
    return walkers, jnp.asarray(log_z0, data.dtype)


def _estimate_log_z0(energy_fn, params, dim, key):
    try:
        from ..evidence import log_partition
    except ImportError:
        raise ValueError(
            "method='jarzynski' needs log Z of the initial model: pass log_z0= (ebm_ppl.evidence."
            "log_partition, which would estimate it, is not available in this installation)"
        ) from None
    res = log_partition(lambda x: energy_fn(params, x), dim=dim,
                        key=jax.random.fold_in(key, 0x7FFFFFFC), progress_bar=False)
    return float(res.log_z), float(res.log_z_se)


def _loop(run_chunk, carry, history, it, num_iterations, chunk, data, key, method,
          checkpoint_dir, checkpoint_every, fingerprint, info, progress_bar, callback):
    from tqdm.auto import tqdm

    parts = [history] if history else []
    last_saved = it

    def save(at):
        ckpt.save(checkpoint_dir, at, carry, _concat(parts),
                  fingerprint, {"chunk_size": chunk, "info": _jsonable(info)})

    bar = tqdm(total=num_iterations, initial=min(it, num_iterations), disable=not progress_bar,
               desc=f"train[{method}]", unit="it")
    try:
        while it < num_iterations:
            new_carry, hist = run_chunk(carry, it, num_iterations, data, key)
            m = min(chunk, num_iterations - it)
            hist = {k: np.asarray(h)[:m] for k, h in jax.device_get(hist).items()}
            if "num_alive" in hist and not np.all(hist["num_alive"] > 0):
                k = it + int(np.argmax(hist["num_alive"] == 0))
                raise SamplingDivergedError(
                    f"every walker died at iteration {k} ({int(hist['num_dead'].sum())} deaths "
                    f"since iteration {it}): the energy or its gradient became non-finite or a "
                    "ULA move diverged; try a smaller step_size")
            if not all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(new_carry.params)):
                raise SamplingDivergedError(
                    f"parameters became non-finite between iterations {it} and {it + m}: lower "
                    "the learning rate or step_size")
            hist["iteration"] = np.arange(it, it + m)
            carry, it = new_carry, it + m
            parts.append(hist)
            if "loss" in hist or "log_z" in hist:
                bar.set_postfix({k: f"{hist[k][-1]:.4g}" for k in ("loss", "log_z") if k in hist},
                                refresh=False)
            bar.update(m)
            due = it == num_iterations or (checkpoint_every and it - last_saved >= checkpoint_every)
            if checkpoint_dir is not None and due:
                save(it)
                last_saved = it
            if callback is not None:
                callback(it, carry.params)
    except KeyboardInterrupt:
        if checkpoint_dir is not None and it > last_saved:
            save(it)
        raise
    finally:
        bar.close()
    return carry, _concat(parts)


def _concat(parts):
    if not parts:
        return {}
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _jsonable(info):
    return {k: v for k, v in info.items() if isinstance(v, (int, float, str, bool))}


def _result(method, carry, history, info):
    params, walkers, log_w, log_z = carry.params, None, None, None
    state = carry.state
    if method == "nce":
        log_z = float(state["log_z"])
    if method in SAMPLING:
        w = state.walkers
        walkers = to_host(w.position)
        if method == "jarzynski":
            log_w = to_host(w.log_weight)
            log_z = float(state.log_z0 + log_mean_exp(w.log_weight))
    return TrainResult(params=params, history=history, walkers=walkers, log_weights=log_w,
                       log_z=log_z, method=method, opt_state=carry.opt_state, info=info,
                       walker_state=state.walkers if method in SAMPLING else None)
