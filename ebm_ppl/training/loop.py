"""``ep.train``: fit an energy U_theta to data with a gradient estimator and an optax optimizer.

The loop is the engine of the design notes run on the path of parameters theta_k produced by
the optimizer (seed eq. 105): one jitted ``lax.scan`` over a chunk of iterations, a progress
bar between chunks, atomic checkpoints. The key of iteration k is ``fold_in(key, k)`` and every
chunk runs the same compiled program (start and stop are traced), so a run resumed from a
checkpoint is bit-for-bit the uninterrupted run. The estimators and their options are in
[`ebm_ppl.training.estimators`][ebm_ppl.training.estimators].
"""

from __future__ import annotations

import functools
import time
import warnings
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from tqdm.auto import tqdm

from ..compilation import CompileClock, compiled_postfix
from ..errors import SamplingDivergedError
from ..sharding import check_divisible, shard_walkers, walker_sharding
from . import checkpoint as ckpt
from . import estimators as est_
from .estimators import METHODS, SAMPLING, Estimator
from .result import TrainResult
from .validate import validate

__all__ = ["train", "METHODS"]


class Carry(NamedTuple):
    params: Any
    opt_state: Any
    state: Any


@functools.lru_cache(maxsize=8)
def _programs(est: Estimator, energy_fn, optimizer, chunk_size: int, batch_size, track=None):
    """The jitted init and chunk programs, cached so repeated or resumed runs of the same
    energy, optimizer and options in one session compile once."""

    def chunk(carry, start, stop, data, key):
        fns = est.bind(energy_fn, data)

        def step(carry, k):
            k_batch, k_est, k_adv = jax.random.split(jax.random.fold_in(key, k), 3)
            idx = None if batch_size is None else jax.random.randint(
                k_batch, (batch_size,), 0, data.shape[0])
            grads, state, m1 = fns.estimate(k_est, carry.params, carry.state, idx)
            updates, opt_state = optimizer.update(grads, carry.opt_state, carry.params)
            params = optax.apply_updates(carry.params, updates)
            state, m2 = fns.advance(k_adv, params, state, k)
            m3 = {} if track is None else track(carry.params)
            return Carry(params, opt_state, state), {**m1, **m2, **m3}

        def body(carry, k):
            shapes = jax.eval_shape(step, carry, k)[1]
            zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
            return lax.cond(k < stop, step, lambda c, k: (c, zeros), carry, k)

        return lax.scan(body, carry, start + jnp.arange(chunk_size))

    def init(params, data, key, init_walkers, log_z0):
        fns = est.bind(energy_fn, data, init_walkers=init_walkers, log_z0=log_z0)
        return Carry(params, optimizer.init(params),
                     fns.init(jax.random.fold_in(key, -1 & 0x7FFFFFFF), params))

    return jax.jit(init), jax.jit(chunk)


def train(energy_fn: Callable, params, data, *, key, estimator: Estimator | str | None = None,
          optimizer: optax.GradientTransformation | None = None, num_iterations: int = 1000,
          batch_size: int | None = None, chunk_size: int | None = None, checkpoint_dir=None,
          checkpoint_every: int | None = None, resume: bool = False, progress_bar: bool = True,
          callback: Callable | None = None, track: Callable | None = None, devices=None,
          mesh=None, **deprecated) -> TrainResult:
    """Train ``energy_fn(params, x) -> scalar`` on ``data`` (shape ``(n, d)``).

    ``params`` is any pytree of float arrays (plain dicts/lists, flax ``init`` output; for
    equinox pass the array part of ``eqx.partition`` and combine inside ``energy_fn``).
    Returns a [`TrainResult`][ebm_ppl.training.TrainResult].

    Args:
        estimator: the gradient estimator with its options
            ([`ebm_ppl.training.estimators`][ebm_ppl.training.estimators]:
            ``ep.training.jarzynski(...)``, ``cd``, ``pcd``, ``score_matching``, ...), or a
            name for its defaults (default ``"jarzynski"``). The old spelling ``method="pcd",
            num_walkers=...`` still works, with a DeprecationWarning.
        optimizer: any optax transformation (default ``optax.adam(1e-3)``); per-parameter
            rates via ``optax.multi_transform``.
        batch_size: data points per iteration for the data term, drawn with replacement
            (default: all, as in Algorithms 1-2).
        chunk_size: iterations per compiled chunk (progress bar and callback between chunks).
        checkpoint_dir: atomic checkpoints; ``resume=True``
            continues the run saved there (Ctrl-C saves a last checkpoint).
        checkpoint_every: See `checkpoint_dir`.
        resume: See `checkpoint_dir`.
        callback: ``callback(iteration, params)`` after every chunk.
        track: ``track(params) -> dict of scalars``, jittable, evaluated at every iterate
            theta_k inside the compiled loop and stored in the history (e.g. exact log Z).
        devices: shard the walkers of ``jarzynski``/``pcd``/``cd`` over devices, as in
            [`ebm_ppl.log_partition`][ebm_ppl.log_partition] (``num_walkers`` must divide evenly); the
            weighted
            gradient average (eq. 105) and resampling stay global. ``result.walker_state``
            keeps the final walkers on the devices.
        mesh: See `devices`.
    """
    t0 = time.perf_counter()
    unknown = sorted(set(deprecated) - est_.OLD_KEYWORDS)
    if unknown:
        raise TypeError(f"train() got an unexpected keyword argument {unknown[0]!r}")
    if deprecated:
        if estimator is not None:
            raise ValueError(f"pass the options {sorted(deprecated)} to the estimator factory "
                             "(ep.training.<method>(...)), not beside estimator=")
        estimator = est_.from_train_keywords(dict(deprecated))
    est = est_.resolve("jarzynski" if estimator is None else estimator)
    if (resume or checkpoint_every is not None) and checkpoint_dir is None:
        raise ValueError("resume=True and checkpoint_every need checkpoint_dir")
    data, params, key, optimizer = validate(
        energy_fn, params, data, key=key, optimizer=optimizer, num_iterations=num_iterations,
        batch_size=batch_size, chunk_size=chunk_size, checkpoint_every=checkpoint_every)
    est_.check_for_data(est, data)
    sharding = walker_sharding(devices, mesh)
    if sharding is not None:
        if not est.uses_walkers:
            raise ValueError(f"devices=/mesh= shard walkers, and method={est.method!r} has none; "
                             f"use one of {SAMPLING} or leave devices=None")
        check_divisible(est.option("num_walkers"), sharding)
    if track is not None and not callable(track):
        raise ValueError(f"track must be callable, got {type(track).__name__}")
    info: dict = {"method": est.method}
    est, nce_c0 = est_.prepare_nce(est, energy_fn, params, data, optimizer, info)
    fingerprint = ckpt.fingerprint({"method": est.method, "batch_size": batch_size,
                                    **dict(est.options)}, data, key, params)
    chunk = chunk_size or min(100, checkpoint_every or 100)
    start, history = 0, {}
    resuming = resume and ckpt.exists(checkpoint_dir)
    if resuming:
        chunk = ckpt.resumed_chunk_size(checkpoint_dir, chunk_size, chunk)
    init_fn, run_chunk = _programs(est, energy_fn, optimizer, chunk, batch_size, track)
    if resuming:
        walkers0 = None
        if est.method == "jarzynski":
            walkers0 = jax.ShapeDtypeStruct((est.option("num_walkers"), data.shape[1]), data.dtype)
        template = jax.eval_shape(init_fn, params, data, key, walkers0,
                                  jax.ShapeDtypeStruct((), data.dtype))
        start, carry, history, extra = ckpt.load(checkpoint_dir, template, fingerprint)
        info.update(extra["info"], resumed_from=start)
    else:
        walkers0, log_z_0 = None, nce_c0
        if est.method == "jarzynski":
            walkers0, log_z_0 = est_.jarzynski_start(est, energy_fn, params, data, key, info,
                                                     sharding)
        carry = init_fn(params, data, key, walkers0,
                        None if log_z_0 is None else jnp.asarray(log_z_0, data.dtype))
    if sharding is not None:  # GSPMD keeps the walker sharding through every chunk
        carry = carry._replace(state=shard_walkers(carry.state, sharding, est.option("num_walkers")))
    info["chunk_size"] = chunk
    carry, history = _loop(run_chunk, carry, history, start, num_iterations, chunk, data, key,
                           est.method, checkpoint_dir, checkpoint_every, fingerprint, info,
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
    return TrainResult.from_carry(est.method, carry, history, info)


def _loop(run_chunk, carry, history, it, num_iterations, chunk, data, key, method,
          checkpoint_dir, checkpoint_every, fingerprint, info, progress_bar, callback):
    parts = [history] if history else []
    last_saved = it

    def save(at):
        ckpt.save(checkpoint_dir, at, carry, _concat(parts), fingerprint,
                  ckpt.run_metadata(chunk, info))

    bar = tqdm(total=num_iterations, initial=min(it, num_iterations), disable=not progress_bar,
               desc=f"train[{method}]", unit="it")
    clock = CompileClock().__enter__()  # the bar shows the seconds spent compiling
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
            bar.set_postfix({**{k: f"{hist[k][-1]:.4g}" for k in ("loss", "log_z")
                                if k in hist}, **compiled_postfix()}, refresh=False)
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
        clock.__exit__(None, None, None)
        bar.close()
    return carry, _concat(parts)


def _concat(parts):
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {}

