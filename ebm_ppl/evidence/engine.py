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
from .resampling import (coalescence_log_factors, ess_fraction,
                         genealogy_relative_variance, log_mean_exp, normalize_log_weights,
                         relative_variance_from_log_factors, resample_if)
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


def _global_log_w(carry):
    return (carry.log_w + carry.log_z_acc[:, None]).reshape(-1)


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


@functools.partial(jax.jit, static_argnames=("static",))
def _stage(carry: _Carry, beta_target, use_target, adapt_on, move, delta_fn, static: _Static):
    """One stage beta -> beta' (module-level jit: cached per move function and static key)."""
    (num_moves, resample_threshold, target_accept, step_jitter, adapt_gain,
     resampling) = static.options
    g, n = carry.log_w.shape
    key, k_res, k_moves = jax.random.split(carry.key, 3)
    v = delta_fn(carry.state)
    v = jnp.where(jnp.isnan(v), jnp.inf, v)
    glw = _global_log_w(carry)
    if static.adaptive is not None:
        b_next = jnp.where(use_target, beta_target, next_beta(glw, v, carry.beta, static.adaptive))
    else:
        b_next = beta_target
    inc = increment(v, b_next - carry.beta)
    log_w = carry.log_w + inc.reshape(g, n)
    log_z_acc = carry.log_z_acc
    glw_next = (log_w + log_z_acc[:, None]).reshape(-1)
    # a walker dies when its weight becomes zero (non-finite V here, or a non-finite energy or
    # gradient in a move below); it is counted once and removed by the next resampling
    died = jnp.sum(jnp.isfinite(glw) & ~jnp.isfinite(glw_next))
    ess = ess_fraction(glw_next)
    res = jax.vmap(functools.partial(resample_if, scheme=resampling), in_axes=(0, 0, None))(
        jax.random.split(k_res, g), log_w, resample_threshold)
    eve = jnp.take_along_axis(carry.eve, res.indices, axis=1)
    # fixed-lag genealogy (Olsson & Douc): this stage's weights read the generation L back
    lf = jax.vmap(coalescence_log_factors)(log_w, carry.anc)
    log_f_lag = carry.log_f_lag + jnp.where(carry.anc_res[:, -1], lf[:, -1], 0.0)
    log_f0 = carry.log_f0 + jnp.where(res.resampled, lf[:, 0], 0.0)
    anc = jnp.concatenate([res.indices.astype(carry.anc.dtype)[:, None, :], jnp.take_along_axis(
        carry.anc[:, :-1, :], res.indices[:, None, :], axis=2)], axis=1)
    anc_res = jnp.concatenate([res.resampled[:, None], carry.anc_res[:, :-1]], axis=1)
    num_res = carry.num_res + res.resampled.astype(carry.num_res.dtype)
    state = constrain_walkers(jax.tree.map(lambda a: _group_gather(a, res.indices),
                                           carry.state), static.sharding, g * n)
    log_w, log_z_acc = res.log_w, log_z_acc + res.log_z_increment
    alive_mid = jnp.isfinite((log_w + log_z_acc[:, None]).reshape(-1))

    def one_move(c, k):
        st, lw, log_step, acc, grads = c
        k_jit, k_mv = jax.random.split(k)
        # log-uniform per-walker factor exp(+-step_jitter), independent of the walkers
        jit = jnp.exp(step_jitter * (2.0 * jax.random.uniform(k_jit, (g * n,), v.dtype) - 1.0))
        st, info = move(k_mv, st, b_next, jnp.exp(log_step) * jit)
        lw = lw + info.log_weight_increment.reshape(g, n)
        a = jnp.mean(info.accept_prob)
        log_step = jnp.clip(log_step + jnp.where(
            adapt_on, adapt_gain * _step_signal(a, target_accept), 0.0), -30.0, 5.0)
        return (st, lw, log_step, acc + a, grads + info.num_grads), None

    zero = jnp.zeros((), v.dtype)
    (state, log_w, log_step, acc, grads), _ = jax.lax.scan(
        one_move, (state, log_w, carry.log_step, zero, zero),
        jax.random.split(k_moves, num_moves))
    accept = acc / num_moves
    v_after = delta_fn(state)
    W = jnp.exp(normalize_log_weights(log_w, axis=-1))
    mean_delta = jnp.sum(W * jnp.where(jnp.isfinite(v_after), v_after, 0.0).reshape(g, n),
                         axis=-1)
    new = _Carry(constrain_walkers(state, static.sharding, g * n), log_w, log_z_acc, b_next,
                 log_step, key, eve, num_res, anc, anc_res, log_f_lag, log_f0)
    alive = jnp.isfinite(_global_log_w(new))
    record = dict(beta=b_next, ess=ess, accept=accept, step_size=jnp.exp(log_step),
                  num_resampled=jnp.sum(res.resampled), num_grads=grads,
                  log_z=log_mean_exp(group_log_z(log_w, log_z_acc)), mean_delta=mean_delta,
                  alive=jnp.sum(alive), num_dead=died + jnp.sum(alive_mid & ~alive))
    extra = (inc, glw) if static.record_increments else None
    return new, record, extra


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
           desc: str = "annealing", **legacy) -> AnnealOutput:
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
    carry = _Carry(state, jnp.zeros((g, n_total // g), dtype), jnp.zeros((g,), dtype),
                   jnp.asarray(0.0 if betas is None else betas[0], dtype),
                   jnp.asarray(np.log(step_size), dtype), key,
                   jnp.tile(jnp.arange(n_total // g, dtype=jnp.int32), (g, 1)),
                   jnp.zeros((g,), jnp.int32), *_lag_init(g, n_total // g, dtype))
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
            carry, rec, extra = _stage(carry, jnp.asarray(target, dtype), jnp.asarray(use_target),
                                       jnp.asarray(options.adapt_step_size), move, delta_fn,
                                       static)
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
    return anneal_output(carry, history, log_z0, extras if record_increments else None)


def all_walkers_died(stage: int, beta: float, deaths: int) -> SamplingDivergedError:
    """The error of a run whose walkers' weights all vanished (`anneal` and the batched runs)."""
    return SamplingDivergedError(
        f"every walker died by stage {stage} (beta={beta:.4g}; {deaths} deaths): the energy or "
        "its gradient became non-finite where the walkers went, or their moves diverged (log "
        "weight increment below -1000); try a smaller step_size")


def anneal_output(carry: _Carry, history: dict, log_z0, increments=None) -> AnnealOutput:
    """A finished run's result from its final carry and per-stage history: eq. 104's log Z
    from the final weights, per-group log Z and the genealogy variances (`anneal` and the
    batched runs)."""
    glz, log_weights, log_z = _final_weights(carry.log_w, carry.log_z_acc, log_z0)
    glz = to_host(glz)
    rel_var, ancestors, rel_var_lag = to_host(_genealogy(carry))
    return AnnealOutput(
        state=carry.state, log_weights=log_weights,
        log_z=float(log_z), group_log_z=glz, history=history, increments=increments,
        num_grads=int(np.sum(history["num_grads"])) if history else 0,
        group_rel_var=np.asarray(rel_var, float), log_z_se=genealogy_log_z_se(glz, rel_var),
        num_ancestors=int(ancestors), group_rel_var_lag=np.asarray(rel_var_lag, float),
        log_z_se_lag=genealogy_log_z_se(glz, rel_var_lag))


def _lag_init(g, n, dtype):
    """The fixed-lag genealogy fields of a fresh `_Carry` (no generation passed yet)."""
    return (jnp.tile(jnp.arange(n, dtype=jnp.int32), (g, GENEALOGY_LAG, 1)),
            jnp.zeros((g, GENEALOGY_LAG), bool), jnp.zeros((g,), dtype), jnp.zeros((g,), dtype))


@jax.jit
def _final_weights(log_w, log_z_acc, log_z0):
    """Per-group log Z, the walkers' global log weights and log Z, all with ``log_z0``: one
    compiled program (eagerly, these were a dozen single operations, each compiled on a
    first call: ~5% of a first call's compile time)."""
    log_weights = (log_w + log_z_acc[:, None]).reshape(-1) + log_z0
    return group_log_z(log_w, log_z_acc) + log_z0, log_weights, log_mean_exp(log_weights)


@jax.jit
def _genealogy(carry):
    """Per-group genealogy variance (Lee & Whiteley), the number of Eves whose descendants
    carry weight, and the fixed-lag variance (Olsson & Douc) floored by the ideal-mixing one:
    the generations the stages have not read yet (the last L) are read from the final
    walkers, with the final weights' own factor."""
    log_w, eve = carry.log_w, carry.eve
    rel_var = jax.vmap(genealogy_relative_variance)(log_w, eve, carry.num_res)
    lf = jax.vmap(coalescence_log_factors)(log_w, carry.anc)
    lag = carry.log_f_lag + lf[:, 0] + jnp.sum(jnp.where(carry.anc_res, lf[:, 1:], 0.0), axis=1)
    rel_var_lag = jnp.maximum(relative_variance_from_log_factors(lag[:, None]),
                              relative_variance_from_log_factors((carry.log_f0 + lf[:, 0])[:, None]))
    n = log_w.shape[-1]
    w = jnp.where(jnp.isfinite(log_w), 1.0, 0.0)
    mass = jax.vmap(lambda wi, e: jax.ops.segment_sum(wi, e, num_segments=n))(w, eve)
    return rel_var, jnp.sum(mass > 0), rel_var_lag


def _progress(enabled, desc, total):
    if not enabled:
        return None

    if total:
        return tqdm(total=int(total), desc=desc, leave=False)
    return tqdm(total=1000, desc=desc, leave=False,
                bar_format="{desc}: {percentage:3.0f}% of beta |{bar}| {elapsed} {postfix}")
