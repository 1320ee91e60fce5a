"""One generic annealing loop: reweight, resample, move (SMC / AIS / Jarzynski).

Walkers start from a normalized reference (``log Z_0`` known) and follow a path of energies
that is linear in the inverse temperature, ``U_beta(x) = U_0(x) + beta V(x)`` (a geometric
path from a reference, likelihood tempering of a model, or ``beta H(s)`` for spins). Each stage
``beta -> beta'``:

1. reweight by the annealed-importance increment ``U_beta(x) - U_beta'(x) = -(beta'-beta) V(x)``
   (exact for moves that leave exp(-U_beta') invariant);
2. resample (systematic, within each walker group) when the ESS asks, folding the discarded
   normalization into the running ``log Z``;
3. move ``num_moves`` times at ``beta'``; a move that does *not* leave exp(-U_beta') invariant
   (ULA) reports its own log weight increment, the correction of seed eq. 102-103 at fixed
   energy, so that ``Z_beta = Z_0 E[exp(A)]`` (eq. 104) stays exact;
4. adapt one global step size toward a target acceptance from the population's mean
   acceptance (a step adapted per walker from its own acceptance would depend on where the
   walker is, which breaks both the invariance of MCMC moves and the Jarzynski weights: we
   measured a 12-standard-error bias; a population-level step only feeds back at O(1/N), like
   the adaptive schedule itself). Per-walker steps are the global one times random jitter.

Contracts (what another module plugs in):

* ``state``: any pytree whose leaves have a leading walker axis of length N.
* ``delta_fn(state) -> (N,)``: ``V(x) = dU_beta / dbeta`` at each walker (cache it in the state;
  it is called several times per stage).
* ``move(key, state, beta, step_size) -> (state, MoveInfo)``: ``beta`` a scalar, ``step_size``
  shape (N,) (per-walker, jittered); ``MoveInfo.accept_prob`` (N,) drives step adaptation,
  ``MoveInfo.log_weight_increment`` (N,) is zero for invariant moves, ``MoveInfo.num_grads``
  counts gradient evaluations (a scalar over all walkers). Discrete moves ignore ``step_size``
  (run with ``adapt_step_size=False``).

By default the N walkers are resampled as one pool (``num_groups=1``) and the standard error
of ``log Z`` comes from the walkers' genealogy: each walker carries the index of the initial
walker it descends from (its Eve), and the Lee & Whiteley (2018) estimator
(`genealogy_relative_variance`, exact with multinomial resampling) turns
the final weights summed per Eve into ``Var(Z_hat) / Z^2``. With ``num_groups > 1`` the walkers
form independent groups (resampling never mixes them: cheaper when the groups line up with
devices); each group's genealogy gives its own variance and the groups' spread is a second,
independent check. The schedule and step are shared.
``anneal(pools=P)`` compiles a pool-able stage instead: the walkers in one row with P
per-group slots, run as one pool or as P independent groups by a traced flag, with a traced
number of moves per stage, so that one compiled program serves the main run (one pool) and
its bias probe (P groups, fewer moves); each layout gives the numbers of the ordinary one.
Memory is O(N x dim); histories are O(stages) scalars (plus, with ``record_increments``, the
per-stage increments used by the BAR check).
"""

from __future__ import annotations

import functools
import warnings
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial
from tqdm.auto import tqdm

from ..compilation import compiled_postfix
from ..errors import SamplingDivergedError
from ..sharding import constrain_walkers, sharding_of, to_host
from .options import AnnealOptions
from .resampling import (coalescence_log_factors, ess_fraction, log_mean_exp,
                         mode_guarded_resample_if, normalize_log_weights, resample_if)
from .schedules import Adaptive, increment, next_beta

Array = jax.Array

__all__ = ["MoveInfo", "AnnealOutput", "anneal", "group_log_z", "genealogy_log_z_se"]


class MoveInfo(NamedTuple):
    accept_prob: Array            # (N,)
    log_weight_increment: Array   # (N,), 0 for invariant moves
    num_grads: Array              # scalar: gradient evaluations over all walkers


class AnnealOutput(NamedTuple):
    """What `anneal` returns (plain arrays; ``history`` holds one entry per stage).

    ``log_weights`` are the final walkers' log weights including their group's normalization
    and ``log_z0``, so ``log_mean_exp(log_weights) == log_z`` and self-normalized averages over
    all walkers are exact expectations. ``group_log_z`` has one estimate per group,
    ``group_rel_var`` its genealogy estimate of ``Var(Z_g) / Z_g^2`` (Lee & Whiteley 2018),
    ``log_z_se`` the standard error of ``log_z`` they give (`genealogy_log_z_se`) and
    ``num_ancestors`` the number of initial walkers that still have descendants with weight.
    ``group_rel_var_lag`` and ``log_z_se_lag`` are the fixed-lag version (Olsson & Douc 2019;
    each generation read ``GENEALOGY_LAG`` stages later, at least the ideal-mixing variance),
    the fallback when the genealogy collapsed or its estimate is not positive.
    """

    state: Any
    log_weights: Array
    log_z: float
    group_log_z: np.ndarray
    history: dict
    increments: list | None
    num_grads: int
    group_rel_var: np.ndarray = np.zeros(0)
    log_z_se: float = float("nan")
    num_ancestors: int = 0
    group_rel_var_lag: np.ndarray = np.zeros(0)
    log_z_se_lag: float = float("nan")


GENEALOGY_LAG = 3  # generations the fixed-lag variance estimate looks back (Olsson & Douc)


class _Carry(NamedTuple):
    state: Any
    log_w: Array       # (G, n) log weights since the group's last resampling
    log_z_acc: Array   # (G,) log normalization already moved out of the weights
    beta: Array
    log_step: Array    # global log step
    key: Array
    eve: Array         # (G, n) int32: index (within the group) of each walker's initial ancestor
    num_res: Array     # (G,) int32: resampling events in each group
    anc: Array         # (G, L, n) int32: each walker's ancestor 1..L resamplings back
    anc_res: Array     # (G, L) bool: whether those L generations were resamplings
    log_f_lag: Array   # (G,) fixed-lag coalescence log factors of the generations passed
    log_f0: Array      # (G,) ideal-mixing (lag 0) log factors of the resamplings so far


def group_log_z(log_w, log_z_acc):
    """Per-group ``log Z`` estimates (without ``log_z0``)."""
    return log_z_acc + log_mean_exp(log_w, axis=-1)


def genealogy_log_z_se(group_log_z, group_rel_var) -> float:
    """Standard error of ``log mean_g Z_g`` from each group's genealogy variance estimate:
    ``Var(Z_hat) = sum_g Var(Z_g) / G^2`` for independent groups, then the delta method
    ``se(log Z_hat) = sqrt(Var(Z_hat)) / Z_hat`` (a negative, unresolved variance counts 0)."""
    g = np.asarray(group_log_z, float)
    rv = np.maximum(np.asarray(group_rel_var, float), 0.0)
    top = np.max(g)
    if not np.isfinite(top):
        return float("inf")
    z = np.exp(g - top)
    return float(np.sqrt(np.sum(rv * z * z)) / np.sum(z))


class _Static(NamedTuple):
    """The compiled stage's static key: the options it depends on
    (`stage_key`), the adaptive schedule (or None), whether to
    record the increments, and the walkers' sharding (kept at every stage)."""

    options: tuple
    adaptive: Any
    record_increments: bool
    sharding: Any = None


def _step_signal(accept, target):
    """Acceptance error scaled to [-1, 1] on both sides of the target: a step that collapsed
    (acceptance 1) grows as fast as a too-large one (acceptance 0) shrinks."""
    return jnp.where(accept < target, (accept - target) / target,
                     (accept - target) / (1.0 - target))


def _view(c: _Carry, groups: int) -> _Carry:
    """A carry in the pool-able layout (walkers in one row, per-group fields of length P)
    seen as ``groups`` groups: 1 (one pool: the per-group fields' first entry) or P."""
    if groups == 1:
        first = (c.log_z_acc[:1], c.num_res[:1], c.anc_res[:1], c.log_f_lag[:1], c.log_f0[:1])
        return c._replace(log_z_acc=first[0], num_res=first[1], anc_res=first[2],
                          log_f_lag=first[3], log_f0=first[4])
    n, lag = c.log_w.shape[1], c.anc.shape[1]
    m = n // groups
    return c._replace(log_w=c.log_w.reshape(groups, m), eve=c.eve.reshape(groups, m),
                      anc=c.anc.reshape(lag, groups, m).transpose(1, 0, 2))


def _unview(c: _Carry, p: int) -> _Carry:
    """The inverse of `_view` (one pool's per-group fields repeated P times)."""
    g, m = c.log_w.shape
    if g == 1:
        def wide(a):
            return jnp.broadcast_to(a, (p,) + a.shape[1:])
        return c._replace(log_z_acc=wide(c.log_z_acc), num_res=wide(c.num_res),
                          anc_res=wide(c.anc_res), log_f_lag=wide(c.log_f_lag),
                          log_f0=wide(c.log_f0))
    lag = c.anc.shape[1]
    return c._replace(log_w=c.log_w.reshape(1, g * m), eve=c.eve.reshape(1, g * m),
                      anc=c.anc.transpose(1, 0, 2).reshape(1, lag, g * m))


def _poolable(carry: _Carry) -> bool:
    """Whether the carry has the pool-able layout: all walkers in one row and P > 1
    per-group slots, run as one pool or as P groups by the traced ``pooled`` flag."""
    return carry.log_w.shape[0] == 1 and carry.log_z_acc.shape[0] > 1


def _by_layout(fn, carry: _Carry, pooled):
    """``fn`` on the carry seen as one pool or as its P groups (``lax.cond`` on the traced
    ``pooled``), or on the carry itself in the ordinary layout. ``fn`` returns a carry, an
    extra per walker and one per group; the latter comes back with P rows for one pool
    (the pool's row repeated: read row 0)."""
    if not _poolable(carry):
        return fn(carry)
    p = carry.log_z_acc.shape[0]

    def as_groups(groups):
        def run(c):
            new, per_walker, per_group = fn(_view(c, groups))
            if groups == 1:
                per_group = jax.tree.map(lambda a: jnp.broadcast_to(a, (p,) + a.shape[1:]),
                                         per_group)
            return _unview(new, p), per_walker, per_group
        return run

    return jax.lax.cond(pooled, as_groups(1), as_groups(p), carry)


def _walker_log_z_acc(carry: _Carry, pooled):
    """Each walker's group normalization (N,): the pool's, or its group's."""
    g, n = carry.log_w.shape
    acc = carry.log_z_acc
    if not _poolable(carry):
        return jnp.broadcast_to(acc[:, None], (g, n)).reshape(-1)
    return jnp.where(pooled, acc[0], jnp.repeat(acc, n // acc.shape[0]))


def _resample_groups(c: _Carry, log_w, k_res, threshold, scheme, labels=None):
    """Resample within each group of the (viewed) carry: the new weights and normalizations,
    the walkers' Eves and ancestors, and the global index of each walker's parent. With
    ``labels`` ((G, n) nearest modes, and their count), mode-guarded resampling."""
    g, n = log_w.shape
    keys = jax.random.split(k_res, g)
    if labels is None:
        res = jax.vmap(functools.partial(resample_if, scheme=scheme), in_axes=(0, 0, None))(
            keys, log_w, threshold)
    else:
        labels, num_modes = labels
        res = jax.vmap(functools.partial(mode_guarded_resample_if, num_modes=num_modes,
                                         threshold=threshold, scheme=scheme))(
            keys, log_w, labels)
    eve = jnp.take_along_axis(c.eve, res.indices, axis=1)
    # fixed-lag genealogy (Olsson & Douc): this stage's weights read the generation L back
    lf = jax.vmap(coalescence_log_factors)(log_w, c.anc)
    log_f_lag = c.log_f_lag + jnp.where(c.anc_res[:, -1], lf[:, -1], 0.0)
    log_f0 = c.log_f0 + jnp.where(res.resampled, lf[:, 0], 0.0)
    anc = jnp.concatenate([res.indices.astype(c.anc.dtype)[:, None, :], jnp.take_along_axis(
        c.anc[:, :-1, :], res.indices[:, None, :], axis=2)], axis=1)
    anc_res = jnp.concatenate([res.resampled[:, None], c.anc_res[:, :-1]], axis=1)
    num_res = c.num_res + res.resampled.astype(c.num_res.dtype)
    parent = res.indices + (jnp.arange(g, dtype=res.indices.dtype) * n)[:, None]
    new = c._replace(log_w=res.log_w, log_z_acc=c.log_z_acc + res.log_z_increment, eve=eve,
                     num_res=num_res, anc=anc, anc_res=anc_res, log_f_lag=log_f_lag,
                     log_f0=log_f0)
    return new, parent.reshape(-1), res.resampled


@functools.partial(jax.jit, static_argnames=("static",))
def _stage(carry: _Carry, beta_target, use_target, adapt_on, move, delta_fn, static: _Static,
           pooled=True, moves_run=None, modes=None):
    """One stage beta -> beta' (module-level jit: cached per move function and static key).

    With the pool-able layout (`_poolable`), the traced ``pooled`` runs the walkers as one
    pool or as P independent groups, and the traced ``moves_run`` (at most the static
    ``num_moves``) sets the moves per stage: the bias probe runs the main run's program.
    ``modes`` ((M, dim), ordinary layout): resampling keeps each mode's walkers
    (`mode_guarded_resample_if`, each walker labelled by its nearest mode)."""
    (num_moves, resample_threshold, target_accept, step_jitter, adapt_gain,
     resampling) = static.options
    moves_run = num_moves if moves_run is None else moves_run
    g, n = carry.log_w.shape
    key, k_res, k_moves = jax.random.split(carry.key, 3)
    v = delta_fn(carry.state)
    v = jnp.where(jnp.isnan(v), jnp.inf, v)
    acc_w = _walker_log_z_acc(carry, pooled)
    glw = carry.log_w.reshape(-1) + acc_w
    if static.adaptive is not None:
        b_next = jnp.where(use_target, beta_target, next_beta(glw, v, carry.beta, static.adaptive))
    else:
        b_next = beta_target
    inc = increment(v, b_next - carry.beta)
    log_w = carry.log_w + inc.reshape(g, n)
    glw_next = log_w.reshape(-1) + acc_w
    # a walker dies when its weight becomes zero (non-finite V here, or a non-finite energy or
    # gradient in a move below); it is counted once and removed by the next resampling
    died = jnp.sum(jnp.isfinite(glw) & ~jnp.isfinite(glw_next))
    ess = ess_fraction(glw_next)

    labels = None if modes is None else (
        nearest_mode(carry.state.position, modes).reshape(g, n), modes.shape[0])

    def resample(c):
        return _resample_groups(c, c.log_w, k_res, resample_threshold, resampling, labels)

    mid, parent, resampled = _by_layout(resample, carry._replace(log_w=log_w), pooled)
    if _poolable(carry):  # one pool's row comes back repeated P times; one gather
        num_resampled = jnp.where(pooled, jnp.sum(resampled[:1]), jnp.sum(resampled))
        state = jax.tree.map(lambda a: a[parent], carry.state)
    else:
        num_resampled = jnp.sum(resampled)
        state = jax.tree.map(lambda a: _group_gather(a, parent.reshape(g, n) % n),
                             carry.state)
    state = constrain_walkers(state, static.sharding, g * n)
    log_w = mid.log_w
    alive_mid = jnp.isfinite(log_w.reshape(-1) + _walker_log_z_acc(mid, pooled))

    def one_move(i, c):
        st, lw, log_step, acc, grads = c
        k_jit, k_mv = jax.random.split(move_keys[i])
        # log-uniform per-walker factor exp(+-step_jitter), independent of the walkers
        jit = jnp.exp(step_jitter * (2.0 * jax.random.uniform(k_jit, (g * n,), v.dtype) - 1.0))
        st, info = move(k_mv, st, b_next, jnp.exp(log_step) * jit)
        lw = lw + info.log_weight_increment.reshape(g, n)
        a = jnp.mean(info.accept_prob)
        log_step = jnp.clip(log_step + jnp.where(
            adapt_on, adapt_gain * _step_signal(a, target_accept), 0.0), -30.0, 5.0)
        return (st, lw, log_step, acc + a, grads + info.num_grads)

    zero = jnp.zeros((), v.dtype)
    move_keys = jax.random.split(k_moves, num_moves)
    state, log_w, log_step, acc, grads = jax.lax.fori_loop(
        0, moves_run, one_move, (state, log_w, carry.log_step, zero, zero))
    accept = acc / moves_run
    v_after = delta_fn(state)
    new = mid._replace(state=constrain_walkers(state, static.sharding, g * n), log_w=log_w,
                       beta=b_next, log_step=log_step, key=key)

    def summary(c):
        gg, nn = c.log_w.shape
        W = jnp.exp(normalize_log_weights(c.log_w, axis=-1))
        md = jnp.sum(W * jnp.where(jnp.isfinite(v_after), v_after, 0.0).reshape(gg, nn),
                     axis=-1)
        return c, log_mean_exp(group_log_z(c.log_w, c.log_z_acc)), md

    _, log_z_all, mean_delta = _by_layout(summary, new, pooled)
    alive = jnp.isfinite(new.log_w.reshape(-1) + _walker_log_z_acc(new, pooled))
    record = dict(beta=b_next, ess=ess, accept=accept, step_size=jnp.exp(log_step),
                  num_resampled=num_resampled, num_grads=grads, log_z=log_z_all,
                  mean_delta=mean_delta, alive=jnp.sum(alive),
                  num_dead=died + jnp.sum(alive_mid & ~alive))
    extra = (inc, glw) if static.record_increments else None
    return new, record, extra


def nearest_mode(positions, modes):
    """Index of the nearest (Euclidean) of ``modes`` (M, dim) for each row of ``positions``."""
    d2 = (jnp.sum(positions**2, axis=-1)[:, None] - 2.0 * positions @ modes.T
          + jnp.sum(modes**2, axis=-1)[None, :])
    return jnp.argmin(d2, axis=-1)


def _group_gather(a, indices):
    """``a[k]`` for the walkers ``k`` that ``indices`` (G, n) picks within each group, as a
    gather batched over groups: when the walkers are sharded and the groups line up with the
    shards (``num_groups`` a multiple of the devices), XLA resamples without moving walkers
    between devices; otherwise it gathers across devices. Same result either way."""
    g, n = indices.shape
    picked = jax.vmap(lambda b, i: b[i])(a.reshape((g, n) + a.shape[1:]), indices)
    return picked.reshape(a.shape)


def _as_partial(fn):
    return fn if isinstance(fn, Partial) else Partial(fn)


_LEGACY = dict(num_moves=1, target_accept=0.9, adapt_step_size=True, step_jitter=0.2,
               adapt_gain=0.5, resample_threshold=1.0, num_groups=1, max_stages=1000,
               record_increments=False, progress_bar=True, resampling="multinomial")


def _legacy_options(n_total, given) -> AnnealOptions:
    """The options of the keyword spelling of earlier releases (deprecated)."""
    unknown = sorted(set(given) - set(_LEGACY))
    if unknown:
        raise TypeError(f"anneal() got unexpected keyword argument(s) {', '.join(unknown)}")
    if given:
        warnings.warn("anneal(..., num_moves=..., ...) is deprecated: pass "
                      "options=ebm_ppl.evidence.AnnealOptions(...) instead", DeprecationWarning,
                      stacklevel=3)
    kw = dict(_LEGACY, **given)
    if n_total % kw["num_groups"]:
        raise ValueError(f"num_walkers={n_total} is not a multiple of "
                         f"num_groups={kw['num_groups']}")
    kw["bar"] = kw.pop("record_increments")
    return AnnealOptions(method="mala", num_walkers=n_total, **kw)


def anneal(key, state, *, delta_fn: Callable, move: Callable, schedule,
           options: AnnealOptions | None = None, log_z0: float = 0.0, step_size: float = 0.1,
           desc: str = "annealing", pools: int = 1, pooled: bool = True,
           moves: int | None = None, modes=None, **legacy) -> AnnealOutput:
    """Anneal N walkers along a linear-in-beta path (see the module docstring for contracts).

    ``schedule`` is an [`Adaptive`][ebm_ppl.evidence.schedules.Adaptive] or an array of betas
    (from 0 to 1 forward; any monotone array, e.g. reversed, also works with ``log_z0`` the log Z
    at its first beta). The walkers in ``state`` must be exact draws at the first beta.
    ``options`` (an [`AnnealOptions`][ebm_ppl.evidence.options.AnnealOptions]) gives the moves per
    stage, target acceptance, step adaptation and jitter, resampling threshold and scheme
    ("multinomial": the genealogy variance estimate of ``log_z_se`` is exact under it;
    "systematic": less resampling noise, the genealogy estimate then approximate), walker
    groups, stage cap and progress output; with ``options.bar`` the per-stage increments are
    recorded (for BAR). ``step_size`` is the first step. The keyword spelling of earlier
    releases (``num_moves=``, ``num_groups=``, ...) still works, with a DeprecationWarning.

    The compiled stage is cached per (move function, ``delta_fn``, stage options, shapes):
    pass ``jax.tree_util.Partial`` objects over module-level functions (as `moves` does)
    to reuse it across calls with new data. Returns an `AnnealOutput`; raises
    ``ebm_ppl.errors.SamplingDivergedError`` when every walker's weight vanishes.

    ``pools=P > 1`` (with one group) compiles the pool-able stage: the same program runs the
    walkers as one pool (``pooled=True``) or as P independent groups of N / P walkers
    (``pooled=False``), with ``moves`` moves per stage (at most ``options.num_moves``, the
    default): how the bias probe reuses the main run's compiled programs.

    ``modes`` (M >= 2 points, (M, dim), with ``state.position`` walkers and one pool or
    groups): mode-guarded resampling (`mode_guarded_resample_if`) with each walker labelled
    by its nearest mode; the genealogy standard errors then do not hold (use the groups'
    spread).
    """
    leaves = jax.tree.leaves(state)
    n_total = int(leaves[0].shape[0])
    if options is None:
        options = _legacy_options(n_total, legacy)
    elif legacy:
        raise TypeError(f"give the options either as options= or as keywords, not both "
                        f"({', '.join(sorted(legacy))})")
    num_groups = options.num_groups
    if n_total % num_groups:
        raise ValueError(f"num_walkers={n_total} is not a multiple of num_groups={num_groups}")
    adaptive = schedule if isinstance(schedule, Adaptive) else None
    betas = None if adaptive is not None else np.asarray(schedule, dtype=np.float64)
    dtype = leaves[0].dtype if jnp.issubdtype(leaves[0].dtype, jnp.floating) else \
        jnp.result_type(float)
    record_increments, max_stages = options.bar, options.max_stages
    static = _Static(options.stage_key(), adaptive, record_increments, sharding_of(state))
    move, delta_fn = _as_partial(move), _as_partial(delta_fn)
    g = int(num_groups)
    layout = _pool_layout(n_total, g, pools, pooled, moves, options.num_moves)
    if modes is not None:
        if pools != 1:
            raise ValueError("modes= needs the ordinary layout (pools=1)")
        layout["modes"] = np.asarray(modes, np.dtype(dtype))  # numpy: no conversion program
    carry = initial_carry(state, g, dtype, 0.0 if betas is None else betas[0],
                          np.log(step_size), key, pools=pools, pooled=pooled)
    records, extras = [], []
    bar = _progress(options.progress_bar, desc, adaptive is None and betas.size - 1)  # type: ignore[union-attr]
    stage, beta = 0, float(carry.beta)
    try:
        while True:
            if betas is not None:
                if stage == betas.size - 1:
                    break
                target, use_target = betas[stage + 1], True
            else:
                if beta >= 1.0:
                    break
                target, use_target = 1.0, stage >= max_stages - 1
            # numpy scalars: jnp.asarray would compile a conversion program on a first call
            carry, rec, extra = _stage(carry, np.asarray(target, dtype), np.asarray(use_target),
                                       np.asarray(options.adapt_step_size), move, delta_fn,
                                       static, **layout)
            rec = to_host(rec)  # jax.device_get, also when the walkers span processes
            records.append(rec)
            if extra is not None:
                extras.append(to_host(extra))  # on the host: O(N) per stage, asked for
            stage, beta = stage + 1, float(rec["beta"])
            if int(rec["alive"]) == 0:
                raise all_walkers_died(stage, beta, sum(int(r["num_dead"]) for r in records))
            if bar is not None:
                bar.update(1 if adaptive is None else 0)
                if adaptive is not None:
                    bar.n = round(1000 * beta)
                bar.set_postfix(stage=stage, beta=f"{beta:.3g}", ess=f"{float(rec['ess']):.2f}",
                                acc=f"{float(rec['accept']):.2f}", **compiled_postfix(),
                                refresh=False)
                bar.refresh()
    finally:
        if bar is not None:
            bar.close()
    history = {k: np.stack([np.asarray(r[k]) for r in records]) for k in records[0]} if records \
        else {}
    return anneal_output(carry, history, log_z0, extras if record_increments else None,
                         pooled=pooled)


def _pool_layout(n_total: int, g: int, pools: int, pooled: bool, moves, num_moves) -> dict:
    """The traced layout arguments of `_stage` for ``pools`` (none for the ordinary one)."""
    if pools == 1:
        if moves not in (None, num_moves) or not pooled:
            raise ValueError("moves= and pooled=False need pools > 1")
        return {}
    if g != 1 or pools < 1 or n_total % pools:
        raise ValueError(f"pools={pools} needs one walker group and num_walkers={n_total} a "
                         "multiple of it")
    moves = num_moves if moves is None else int(moves)
    if not 1 <= moves <= num_moves:
        raise ValueError(f"moves={moves} must be between 1 and num_moves={num_moves}")
    return dict(pooled=np.asarray(bool(pooled)), moves_run=np.asarray(moves, np.int32))


def initial_carry(state, g: int, dtype, beta0, log_step, key, *, pools: int = 1,
                  pooled: bool = True) -> _Carry:
    """The carry before the first stage: ``g`` groups of N / g walkers (the ordinary layout),
    or with ``pools=P > 1`` the pool-able layout (one row of N walkers, P per-group slots)
    whose Eves and ancestors index one pool (``pooled``) or each of the P groups. Made by
    numpy and put on the device (jax.numpy compiled a program for each field)."""
    n_total = int(jax.tree.leaves(state)[0].shape[0])
    if pools == 1:
        slots, eve = g, np.tile(np.arange(n_total // g), (g, 1))
    else:
        slots = pools
        eve = (np.arange(n_total) if pooled else
               np.tile(np.arange(n_total // pools), pools))[None]
    eve = eve.astype(np.int32)
    fields = jax.device_put((
        np.zeros(eve.shape, dtype), np.zeros((slots,), dtype), np.asarray(beta0, dtype),
        np.asarray(log_step, dtype), eve, np.zeros((slots,), np.int32),
        np.tile(eve[:, None, :], (1, GENEALOGY_LAG, 1)),  # no generation passed yet
        np.zeros((slots, GENEALOGY_LAG), bool), np.zeros((slots,), dtype),
        np.zeros((slots,), dtype)))
    log_w, log_z_acc, beta, step = fields[:4]
    return _Carry(state, log_w, log_z_acc, beta, step, key, *fields[4:])


def all_walkers_died(stage: int, beta: float, deaths: int) -> SamplingDivergedError:
    """The error of a run whose walkers' weights all vanished (`anneal` and the batched runs)."""
    return SamplingDivergedError(
        f"every walker died by stage {stage} (beta={beta:.4g}; {deaths} deaths): the energy or "
        "its gradient became non-finite where the walkers went, or their moves diverged (log "
        "weight increment below -1000); try a smaller step_size")


def anneal_output(carry: _Carry, history: dict, log_z0, increments=None,
                  pooled: bool = True) -> AnnealOutput:
    """A finished run's result from its final carry and per-stage history: eq. 104's log Z
    from the final weights, per-group log Z and the genealogy variances (`anneal` and the
    batched runs). Computed by numpy on the host from the small final carry (as
    `_final_weights` and `_genealogy`; a compiled program for it was ~10% of a first call's
    compile time, for a millisecond of work)."""
    log_w, log_z_acc, eve, num_res, anc, anc_res, log_f_lag, log_f0 = to_host(
        (carry.log_w, carry.log_z_acc, carry.eve, carry.num_res, carry.anc, carry.anc_res,
         carry.log_f_lag, carry.log_f0))
    if log_w.shape[0] == 1 and log_z_acc.shape[0] > 1:  # pool-able: one pool or P groups
        if pooled:  # one pool: the per-group fields' first entry
            log_z_acc, num_res, anc_res, log_f_lag, log_f0 = (
                log_z_acc[:1], num_res[:1], anc_res[:1], log_f_lag[:1], log_f0[:1])
            if "mean_delta" in history:
                history = dict(history, mean_delta=history["mean_delta"][:, :1])
        else:  # as `_view`: P groups of N / P walkers
            p, (_, lag, n) = log_z_acc.shape[0], anc.shape
            log_w, eve = log_w.reshape(p, n // p), eve.reshape(p, n // p)
            anc = anc.reshape(lag, p, n // p).transpose(1, 0, 2)
    glz, log_weights, log_z = _final_weights(log_w, log_z_acc, log_z0)
    rel_var, ancestors, rel_var_lag = _genealogy(log_w, eve, num_res, anc, anc_res, log_f_lag,
                                                 log_f0)
    return AnnealOutput(
        state=carry.state, log_weights=log_weights,
        log_z=float(log_z), group_log_z=glz, history=history, increments=increments,
        num_grads=int(np.sum(history["num_grads"])) if history else 0,
        group_rel_var=np.asarray(rel_var, float), log_z_se=genealogy_log_z_se(glz, rel_var),
        num_ancestors=int(ancestors), group_rel_var_lag=np.asarray(rel_var_lag, float),
        log_z_se_lag=genealogy_log_z_se(glz, rel_var_lag))


def _np_logsumexp(a, axis=-1, keepdims=False):
    """`jax.scipy.special.logsumexp` in numpy, the same steps (max shifted out, a non-finite
    max replaced by 0)."""
    amax = np.max(a, axis=axis, keepdims=True)
    amax = np.where(np.isfinite(amax), amax, np.zeros((), a.dtype))
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(a - amax), axis=axis, keepdims=True)) + amax
    return out if keepdims else np.squeeze(out, axis=axis)


def _np_log_mean_exp(a, axis=-1):
    return _np_logsumexp(a, axis=axis) - np.log(np.asarray(a.shape[axis], a.dtype))


def _final_weights(log_w, log_z_acc, log_z0):
    """Per-group log Z, the walkers' global log weights and log Z, all with ``log_z0``
    (numpy, in the weights' dtype)."""
    log_z0 = np.asarray(log_z0, log_w.dtype)
    log_weights = (log_w + log_z_acc[:, None]).reshape(-1) + log_z0
    glz = log_z_acc + _np_log_mean_exp(log_w) + log_z0
    return glz, log_weights, _np_log_mean_exp(log_weights)


def _np_normalized_weights(log_w):
    """Normalized weights of one group (as `genealogy_relative_variance`) and whether every
    weight is zero."""
    dead = not np.isfinite(_np_logsumexp(log_w))
    safe = np.zeros_like(log_w) if dead else log_w
    return np.exp(safe - _np_logsumexp(safe, keepdims=True)), dead


def _np_log_ratio(n, dtype):
    return np.log(np.asarray(n / (n - 1.0), dtype))


def _genealogy(log_w, eve, num_res, anc, anc_res, log_f_lag, log_f0):
    """Per-group genealogy variance (Lee & Whiteley), the number of Eves whose descendants
    carry weight, and the fixed-lag variance (Olsson & Douc) floored by the ideal-mixing one:
    the generations the stages have not read yet (the last L) are read from the final
    walkers, with the final weights' own factor. Numpy on the host, as
    `genealogy_relative_variance` and `coalescence_log_factors` per group."""
    g, n = log_w.shape
    dtype = log_w.dtype
    rel_var, lf = np.empty(g, dtype), np.empty((g, anc.shape[1] + 1), dtype)
    for i in range(g):
        w, dead = _np_normalized_weights(log_w[i])
        s = np.bincount(eve[i], weights=w, minlength=n).astype(dtype)
        c = np.exp(np.asarray(num_res[i] + 1, dtype) * _np_log_ratio(n, dtype))
        rel_var[i] = np.inf if dead else 1.0 - c * (1.0 - np.sum(s * s))
        sums = np.stack([np.bincount(a, weights=w, minlength=n).astype(dtype)
                         for a in anc[i]])
        cj = np.concatenate([np.sum(w * w)[None], np.sum(sums * sums, axis=-1)])
        with np.errstate(divide="ignore"):
            log_free = np.log(np.clip(1.0 - cj, 0.0, 1.0))
        prev = np.concatenate([np.zeros((1,), dtype), log_free[:-1]])
        value = _np_log_ratio(n, dtype) + log_free - np.where(np.isfinite(prev), prev, 0.0)
        lf[i] = -np.inf if dead else value
    lag = log_f_lag + lf[:, 0] + np.sum(np.where(anc_res, lf[:, 1:], 0.0), axis=1)
    rel_var_lag = np.maximum(-np.expm1(lag), -np.expm1(log_f0 + lf[:, 0]))
    alive = np.isfinite(log_w)
    ancestors = sum(int(np.count_nonzero(np.bincount(eve[i][alive[i]], minlength=n)))
                    for i in range(g))
    return rel_var, ancestors, rel_var_lag


def _progress(enabled, desc, total):
    if not enabled:
        return None

    if total:
        return tqdm(total=int(total), desc=desc, leave=False)
    return tqdm(total=1000, desc=desc, leave=False,
                bar_format="{desc}: {percentage:3.0f}% of beta |{bar}| {elapsed} {postfix}")
