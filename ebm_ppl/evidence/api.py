"""User-facing entry points: [`log_partition`][ebm_ppl.evidence.api.log_partition] (log Z of exp(-U)) and
[`log_evidence`][ebm_ppl.evidence.api.log_evidence]
(log p(data) of a NumPyro model).

Both build a linear path (`paths`), a move (`moves`) and
run the one annealing loop
(`engine`); "is" is plain importance sampling from the reference (seed eq. 2) and
"ti"
thermodynamic integration ``log Z_1 = log Z_0 - int_0^1 E_beta[V] dbeta`` with NUTS moves on a
fixed ladder (both baselines for teaching and comparison).
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from ..energy import as_energy, energy_from_model
from ..errors import (SamplingDivergedError, check_choice, check_key, check_model_data,
                      check_positive)
from ..sharding import check_divisible, num_shards, sharded_jit, to_host, walker_sharding
from . import moves as _moves
from .bar import bar_log_z
from .engine import anneal
from .fingerprint import observed_fingerprint
from .paths import LinearPath, geometric_path, tempering_path
from .reference import auto_reference, pilot_reference
from .resampling import RESAMPLING_SCHEMES, ess_fraction, log_mean_exp, systematic_resample
from .result import EvidenceResult, with_log_likelihood
from .schedules import as_schedule, power, stage_cap_message

__all__ = ["log_partition", "log_evidence", "METHODS", "DEFAULT_METHOD"]

METHODS = ("hmc", "mala", "jarzynski", "nuts", "is", "ti")
DEFAULT_METHOD = "hmc"
# per method: moves per stage, target acceptance, step jitter (per-walker factor exp(+-j)),
# initial step (whitened units) as d -> h0 (capped by a stability bound, _initial_step)
_DEFAULTS = {
    "hmc": dict(num_moves=8, target_accept=0.9, jitter=1.0, step=lambda d: 1.0 * d ** -0.25),
    "mala": dict(num_moves=5, target_accept=0.9, jitter=1.0, step=lambda d: 0.5 * d ** (-1 / 3)),
    # ULA's weights explode past its stability limit: jitter the step only a little
    "jarzynski": dict(num_moves=5, target_accept=0.9, jitter=0.2,
                      step=lambda d: 0.5 * d ** (-1 / 3)),
    "nuts": dict(num_moves=1, target_accept=0.8, jitter=1.0, step=lambda d: 0.5 * d ** -0.25),
    "ti": dict(num_moves=2, target_accept=0.8, jitter=1.0, step=lambda d: 0.5 * d ** -0.25),
}


def _typed_key(key):
    key = check_key(key)
    if not jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.wrap_key_data(key)
    return key


def _options(*, method=DEFAULT_METHOD, num_walkers=4096, step_size=None, schedule="adaptive",
             num_stages=None, target_ess=0.7, num_moves=None, num_leapfrog=5, target_accept=None,
             adapt_step_size=True, step_jitter=None, precondition=True, resample_threshold=1.0,
             num_groups=None, bar=False, max_stages=1000, progress_bar=True,
             resampling="multinomial", bias_check=True) -> dict:
    """Validate the run options [`log_partition`][ebm_ppl.evidence.api.log_partition] and
    [`log_evidence`][ebm_ppl.evidence.api.log_evidence] share (defaults
    as theirs); returns them as [`_run`][ebm_ppl.evidence.api._run]'s keywords, with ``n`` walkers in ``g``
    groups."""
    check_choice("method", method, METHODS)
    check_choice("resampling", resampling, RESAMPLING_SCHEMES)
    n = check_positive("num_walkers", num_walkers, integer=True)
    check_positive("step_size", step_size, allow_none=True)
    check_positive("num_moves", num_moves, integer=True, allow_none=True)
    check_positive("num_leapfrog", num_leapfrog, integer=True)
    check_positive("max_stages", max_stages, integer=True)
    if target_accept is not None and not 0.0 < target_accept < 1.0:
        raise ValueError(f"target_accept must lie in (0, 1), got {target_accept!r}")
    if not 0.0 < target_ess < 1.0:
        raise ValueError(f"target_ess must lie in (0, 1), got {target_ess!r}")
    if not np.isfinite(resample_threshold) or resample_threshold < 0:
        raise ValueError(f"resample_threshold must be >= 0, got {resample_threshold!r}")
    if step_jitter is not None and not 0.0 <= step_jitter <= 5.0:
        raise ValueError(f"step_jitter must lie in [0, 5], got {step_jitter!r}")
    if method not in ("is", "ti") or not _is_adaptive(schedule):
        as_schedule(schedule, num_stages, target_ess)  # validate now, before any work
    # one pool by default (log_z_se from the genealogy); see _default_groups for sharded runs
    g = 1 if num_groups is None else check_positive("num_groups", num_groups, integer=True)
    if n % g or (method != "is" and n // g < 2):
        raise ValueError(f"num_walkers={n} must be a multiple of num_groups={g} with at least "
                         "2 walkers per group")
    return dict(method=method, n=n, g=g, step_size=step_size, schedule=schedule,
                num_stages=num_stages, target_ess=target_ess, num_moves=num_moves,
                num_leapfrog=num_leapfrog, target_accept=target_accept,
                adapt_step_size=adapt_step_size, step_jitter=step_jitter,
                precondition=precondition, resample_threshold=resample_threshold, bar=bar,
                max_stages=max_stages, progress_bar=progress_bar, resampling=resampling,
                bias_check=bool(bias_check), groups_given=num_groups is not None)


def _default_groups(opts, sharding):
    """Sharded runs without ``num_groups``: one group per device, so that resampling never
    moves walkers between devices (the groups are exact: each has its own genealogy
    variance; pooled resampling would gather across devices at every stage)."""
    groups_given = opts.pop("groups_given")
    shards = num_shards(sharding)
    if not groups_given and opts["method"] == "ti":  # TI's error is the spread of groups
        opts["g"] = min(16, max(1, opts["n"] // 64))
    elif not groups_given and shards > 1 and opts["n"] % shards == 0 and opts["n"] // shards >= 2:
        opts["g"] = shards
    return opts


def _is_adaptive(schedule) -> bool:
    """``schedule == "adaptive"`` without comparing an array schedule to a string."""
    return isinstance(schedule, str) and schedule == "adaptive"


def _reference_dim(potential_fn, dim, reference):
    """``dim`` of a plain function from the reference's event shape ``(dim,)`` when not given
    (an Energy or a target knows its own; a wrong reference is reported by _check_reference)."""
    if dim is not None or reference is None or hasattr(potential_fn, "dim") or \
            hasattr(potential_fn, "energy"):
        return dim
    event = tuple(getattr(reference, "event_shape", ()))
    return int(event[0]) if len(event) == 1 and int(event[0]) > 0 else dim


_OPTION_NAMES = frozenset(inspect.signature(_options).parameters)
"""The run options [`log_partition`][ebm_ppl.evidence.api.log_partition] and
[`log_evidence`][ebm_ppl.evidence.api.log_evidence] share, by their own names."""


def _check_reference(reference, dim):
    if not (hasattr(reference, "log_prob") and hasattr(reference, "sample")):
        raise ValueError("reference must be a NumPyro distribution with log_prob and sample, "
                         f"got {type(reference).__name__}")
    if not (hasattr(reference, "batch_shape") and hasattr(reference, "event_shape")):
        raise ValueError("reference must be a NumPyro distribution (with batch_shape and "
                         f"event_shape), got {type(reference).__name__}")
    base = reference
    while base is not None:  # Independent / masked wrappers keep the base in .base_dist
        if type(base).__name__ in ("ImproperUniform", "Unit"):
            raise ValueError(f"reference must have an exact, normalized log_prob; "
                             f"{type(base).__name__} is improper (log Z_0 would be unknown)")
        base = getattr(base, "base_dist", None)
    shape = tuple(reference.batch_shape) + tuple(reference.event_shape)
    if tuple(reference.event_shape) != (dim,):
        hint = " (use .to_event(1) on a batch of scalars)" if shape == (dim,) else ""
        raise ValueError(f"reference must have event_shape ({dim},), got batch_shape "
                         f"{tuple(reference.batch_shape)} and event_shape "
                         f"{tuple(reference.event_shape)}{hint}")


def log_partition(potential_fn, *, key, reference=None, dim: int | None = None,
                  method: str = DEFAULT_METHOD, num_walkers: int = 4096, step_size=None,
                  schedule="adaptive", num_stages: int | None = None, target_ess: float = 0.7,
                  num_moves: int | None = None, num_leapfrog: int = 5, target_accept=None,
                  adapt_step_size: bool = True, step_jitter: float | None = None,
                  precondition: bool = True, resample_threshold: float = 1.0,
                  num_groups: int | None = None, resampling: str = "multinomial",
                  bias_check: bool = True,
                  bar: bool = False, max_stages: int = 1000, num_starts: int = 256,
                  init_scale: float = 3.0, progress_bar: bool = True, devices=None,
                  mesh=None) -> EvidenceResult:
    """log Z = log int exp(-U(x)) dx by annealing from a normalized reference (seed eq. 102-104).

    Args:
        potential_fn: U on flat arrays of shape (dim,), an [`Energy`][ebm_ppl.energy.Energy] or
            a target from [`ebm_ppl.targets`][ebm_ppl.targets].
        key: a JAX random key. The same key gives the same result.
        dim: the dimension of a plain function's argument; not needed when the reference
            gives it (event shape ``(dim,)``) or ``potential_fn`` carries it.
        reference: a NumPyro distribution with event shape (dim,) and exact ``log_prob``; None
            builds a Gaussian mixture over the modes a multi-start L-BFGS finds (``num_starts``
            starts from N(0, init_scale^2 I)); when no mode qualifies (e.g. Neal's funnel), a
            diagonal Gaussian mixture fitted to a pilot annealing of ``num_walkers / 16``
            walkers (at least 256) from N(0, init_scale^2 I). What was built, and the
            gradients it cost (included in ``num_gradient_evals``), are in
            ``result.reference_info``.
        method: "hmc" (default: most accurate per gradient in ``benchmarks/RESULTS.md``),
            "mala", "jarzynski" (ULA with exact nonequilibrium weights), "nuts", "is"
            (importance sampling from the reference, eq. 2) or "ti" (thermodynamic integration).
        num_walkers: walkers, resampled as one pool; ``log_z_se`` comes from their genealogy
            (Lee & Whiteley 2018; see
            `genealogy_relative_variance`).
        num_groups: split the walkers into this many independent groups that resampling never
            mixes (default 1; one per device when sharded, so that resampling stays on each
            device). Each group's genealogy gives its variance; ``result.group_log_z`` holds
            their estimates. More groups lose more: a group that loses a narrow mode never
            gets it back (``benchmarks/RESULTS.md``).
        resampling: "multinomial" (default: the genealogy ``log_z_se`` is exact under it) or
            "systematic" (less resampling noise; ``log_z_se`` then approximate).
        bias_check: also anneal an independent probe of ``num_walkers / 4`` walkers (about
            25% more gradients) and extrapolate the effort trend between the two estimates
            (bias ~ 1 / walkers) into ``result.log_z_bias``; ``result.log_z_err`` =
            ``sqrt(log_z_se^2 + bias^2)`` counts the bias only where the trend is significant
            (beyond 2 standard errors). The probe also feeds ``result.reliable``.
        step_size: initial step in whitened coordinates (x / walker std); None picks one from
            the reference's gradients. It adapts toward ``target_accept`` after every move
            (one step for all walkers, jittered per walker) unless ``adapt_step_size=False``.
        schedule: "adaptive" (next beta at conditional ESS ``target_ess``), "linear",
            "geometric", "power" (with ``num_stages``) or an increasing array from 0 to 1.
        bar: also run the schedule in reverse from the final resampled walkers and report
            the BAR and reverse estimates (doubles the cost).
        progress_bar: show stages, beta and ESS while running.
        devices: shard the walkers over devices (``"all"``, a count, a list of
            devices, or a ``jax.sharding.Mesh`` with a ``"walkers"`` axis; see
            [`ebm_ppl.sharding`][ebm_ppl.sharding] and ``docs/scaling.md``); ``num_walkers`` must divide
            evenly. Reductions and resampling stay global: the same key gives the same log Z
            as on one device, up to floating-point reduction order. ``result.walkers`` keeps
            the final walkers on the devices.
        mesh: See `devices`.

    A spin model ([`ebm_ppl.spins`][ebm_ppl.spins]) is handed to
    [`ebm_ppl.spins.log_partition`][ebm_ppl.spins.log_partition]
    (Gibbs sweeps; the options the two share are passed on, the others must keep their
    defaults).
    """
    if hasattr(potential_fn, "tempered") and hasattr(potential_fn, "random_spins"):
        return _spin_log_partition(potential_fn, key, locals())
    opts = _options(**{k: v for k, v in locals().items() if k in _OPTION_NAMES})
    sharding = walker_sharding(devices, mesh)
    check_divisible(opts["n"], sharding)
    opts = _default_groups(opts, sharding)
    energy = as_energy(potential_fn, dim=_reference_dim(potential_fn, dim, reference))
    check_positive("num_starts", num_starts, integer=True)
    check_positive("init_scale", init_scale)
    if reference is not None:
        _check_reference(reference, energy.dim)
    key = _typed_key(key)
    key_ref, key_run = jax.random.split(key)
    t0 = time.perf_counter()
    if reference is None:
        reference, info = auto_reference(energy, key_ref, num_starts=num_starts,
                                         init_scale=init_scale)
        if not len(info["modes"]):
            reference, info = _pilot_reference(energy, jax.random.fold_in(key_ref, 1),
                                               reference, info, opts["n"], progress_bar)
    else:
        info = dict(kind=type(reference).__name__)
    return _run(geometric_path(energy, reference), key_run, reference=reference,
                reference_info=info, t0=t0, sharding=sharding, **opts)


def log_evidence(model, *model_args, key, method: str = DEFAULT_METHOD, num_walkers: int = 4096,
                 step_size=None, schedule="adaptive", num_stages: int | None = None,
                 target_ess: float = 0.7, num_moves: int | None = None, num_leapfrog: int = 5,
                 target_accept=None, adapt_step_size: bool = True, step_jitter: float | None = None,
                 precondition: bool = True, resample_threshold: float = 1.0,
                 num_groups: int | None = None, resampling: str = "multinomial",
                 bias_check: bool = True,
                 bar: bool = False, max_stages: int = 1000, progress_bar: bool = True,
                 devices=None, mesh=None, **model_kwargs) -> EvidenceResult:
    """log p(data) of a NumPyro model by likelihood tempering from its prior (log Z_0 = 0).

    Walkers move in NumPyro's unconstrained space; ``result.samples`` are constrained
    posterior draws (weighted by ``result.log_weights``). Options as in
    [`log_partition`][ebm_ppl.evidence.api.log_partition] (``devices=``/``mesh=`` shard the walkers); other
    keyword arguments
    go to the model.
    """
    opts = _options(**{k: v for k, v in locals().items() if k in _OPTION_NAMES})
    sharding = walker_sharding(devices, mesh)
    check_divisible(opts["n"], sharding)
    opts = _default_groups(opts, sharding)
    check_model_data(model_args, model_kwargs)
    key = _typed_key(key)
    key_model, key_run = jax.random.split(key)
    t0 = time.perf_counter()
    energy = energy_from_model(model, *model_args, key=key_model, **model_kwargs)
    result = _run(tempering_path(energy), key_run, reference="prior",
                  reference_info=dict(kind="prior"), t0=t0, sharding=sharding, **opts)
    result = dataclasses.replace(  # so that comparisons can refuse evidences of other data
        result, data_fingerprint=observed_fingerprint(model, *model_args, **model_kwargs))
    return with_log_likelihood(result, model, model_args, model_kwargs)  # for az.loo


_SPIN_OPTIONS = ("num_walkers", "schedule", "num_stages", "target_ess", "num_moves",
                 "resample_threshold", "num_groups", "max_stages", "progress_bar")


def _is_default(value, default) -> bool:
    if value is default:
        return True
    if default is None or isinstance(value, jax.Array | np.ndarray):
        return False
    return bool(value == default)


def _spin_log_partition(model, key, given):
    from ..spins import log_partition as spin_log_partition

    defaults = inspect.signature(log_partition).parameters
    ignored = [name for name, p in defaults.items()
               if name not in _SPIN_OPTIONS + ("potential_fn", "key")
               and not _is_default(given[name], p.default)]
    if ignored:
        raise ValueError(f"{', '.join(ignored)}: not options of spin models; call "
                         "ep.spins.log_partition(model, key=..., kernel='gibbs' or "
                         "'metropolis', ...) for the spin options")
    kwargs = {k: given[k] for k in _SPIN_OPTIONS if given[k] is not None}
    return spin_log_partition(model, key=key, **kwargs)


PILOT_FRACTION = 16  # the pilot anneals num_walkers / 16 walkers, at least 256


def _pilot_reference(energy, key, broad, info, n, progress_bar):
    """No usable Laplace mode: anneal a few walkers from the broad Gaussian with the default
    method and fit [`pilot_reference`][ebm_ppl.evidence.reference.pilot_reference] to them (its gradients are
    counted).
    Up to 4 components, fewer when the pilot has under 5 walkers per fitted parameter pair."""
    n_pilot = max(256, n // PILOT_FRACTION // 16 * 16)
    pilot = _run(geometric_path(energy, broad), key, reference=broad,
                 reference_info=dict(kind="broad"), t0=time.perf_counter(),
                 **_default_groups(_options(num_walkers=n_pilot, progress_bar=progress_bar,
                                            bias_check=False),
                                   None))
    k = int(np.clip(n_pilot // (5 * energy.dim), 1, 4))
    seed = int(jax.random.randint(key, (), 0, 2**31 - 1))
    reference, fitted = pilot_reference(pilot.walkers, pilot.log_weights, broad,
                                        num_components=k, seed=seed)
    info = dict(info, kind="auto (pilot)", pilot_walkers=n_pilot, pilot_log_z=pilot.log_z,
                pilot_gradient_evals=pilot.num_gradient_evals, pilot_components=fitted,
                defensive_weight=fitted["defensive_weight"],
                num_gradient_evals=int(info["num_gradient_evals"]) + pilot.num_gradient_evals)
    return reference, info


def _path_delta(state):
    return state.delta


@jax.jit
def _evaluate_batch(path, xs):
    return path.evaluate_batch(xs)


def _sample_base(path, key, n):
    return path.sample_base(key, n)


def _initial_state(path: LinearPath, key, n, sharding=None):
    if sharding is None:
        x0 = path.sample_base(key, n)
    else:  # drawn in place: each device makes only its own walkers (same values)
        x0 = sharded_jit(_sample_base, sharding, static_argnums=(2,))(path, key, n)
    state = _evaluate_batch(path, x0)
    if not bool(jnp.any(jnp.isfinite(state.u0) & jnp.isfinite(state.delta))):
        raise SamplingDivergedError("the energy is not finite at any draw from the reference")
    return state


def _initial_step(state, method, default, precondition):
    """A stable first step from the reference's whitened gradients: E|g_y|^2 = tr(A_y) bounds
    the stiffest curvature, so h = 1/tr (Langevin: stable below 2/lambda_max) or
    1/sqrt(tr) (leapfrog: stable below 2/sqrt(lambda_max)), never above the default."""
    scale = _moves.walker_scale(state.position, precondition)
    g = state.grad_u0 * scale
    ok = jnp.all(jnp.isfinite(g), axis=-1)
    tr = float(jnp.sum(jnp.where(ok[:, None], g * g, 0.0)) / jnp.maximum(jnp.sum(ok), 1))
    if not np.isfinite(tr) or tr <= 0:
        return default
    bound = 1.0 / tr if method in ("mala", "jarzynski") else 1.0 / math.sqrt(tr)
    return float(min(default, bound))


def _samples(path, positions):
    return to_host(jax.vmap(path.unravel)(positions))


def _run(path, key, *, method, n, g, step_size, schedule, num_stages, target_ess, num_moves,
         num_leapfrog, target_accept, adapt_step_size, step_jitter, precondition,
         resample_threshold, bar, resampling, bias_check,
         max_stages, progress_bar, reference, reference_info, t0, sharding=None):
    key_init, key_fwd, key_rev = jax.random.split(key, 3)
    state = _initial_state(path, key_init, n, sharding)
    grads = n + int(reference_info.get("num_gradient_evals", 0))
    if method == "is":
        return _importance(path, state, grads, reference, reference_info, t0)
    d = _DEFAULTS[method]
    if method == "ti":
        schedule = power(32 if num_stages is None else num_stages) if _is_adaptive(schedule) \
            else as_schedule(schedule, num_stages, target_ess)
    sched = as_schedule(schedule, num_stages, target_ess)
    builder = _moves.MOVES["nuts" if method == "ti" else method]
    move = builder(path, num_leapfrog, precondition) if method == "hmc" else builder(
        path, precondition=precondition)
    opts = dict(delta_fn=_path_delta, move=move, log_z0=path.log_z0,
                num_moves=num_moves or d["num_moves"],
                target_accept=target_accept or d["target_accept"],
                adapt_step_size=adapt_step_size,
                step_jitter=d["jitter"] if step_jitter is None else step_jitter,
                resample_threshold=resample_threshold, num_groups=g, max_stages=max_stages,
                record_increments=bar, resampling=resampling,
                progress_bar=progress_bar)
    if step_size is None:
        step_size = _initial_step(state, method, d["step"](path.dim), precondition)
    out = anneal(key_fwd, state, schedule=sched, step_size=step_size,
                 desc=f"log Z ({method})", **opts)
    h = out.history
    grads += out.num_grads
    messages = []
    if reference_info.get("kind") == "auto (pilot)":
        messages.append(
            "no minimum qualified for a Laplace reference (an energy unbounded below, or a "
            "needle like a funnel's neck), so the reference was fitted to a pilot run: mass that "
            "no walker reached biases log Z low beyond log_z_se; compare with a slower run "
            "(higher target_ess or num_moves)")
    if len(h["ess"]) and np.min(h["ess"]) < 0.05:
        k = int(np.argmin(h["ess"]))
        messages.append(
            f"the weights degenerated (ESS {h['ess'][k]:.3f} at stage {k + 1}, beta "
            f"{h['beta'][k]:.3g}): log Z is probably biased low and log_z_se too small; use a "
            "smaller step_size, a higher target_ess or more walkers")
    dead = np.asarray(h["num_dead"])
    if dead.sum():
        messages.append(
            f"{int(dead.sum())} walker(s) died (non-finite energy or gradient; first at stage "
            f"{int(np.argmax(dead > 0)) + 1}): their weights are zero and they were removed at "
            "the next resampling; a smaller step_size avoids this")
    betas = np.concatenate([[0.0], h["beta"]])
    if (capped := stage_cap_message(sched, betas, max_stages)) is not None:
        messages.append(capped)
    log_z, log_z_se = out.log_z, out.log_z_se
    if method == "ti":
        e0 = to_host(state.delta).reshape(g, -1)
        e0 = np.array([np.mean(r[np.isfinite(r)]) for r in e0])
        md = np.concatenate([e0[None], h["mean_delta"]], axis=0)
        ti = path.log_z0 - np.trapezoid(md, betas, axis=0)
        log_z, log_z_se = float(np.mean(ti)), float(np.std(ti, ddof=1) / np.sqrt(g))
        messages.append(f"TI: log_z_se excludes the quadrature error of {len(betas) - 1} "
                        f"stages; the SMC estimate on the same run is {out.log_z:.4f}")
    extra = {}
    if bias_check and method != "ti":
        try:
            probe = _probe(path, jax.random.fold_in(key, 15), n, sched, step_size, opts)
        except SamplingDivergedError as err:  # a small probe can die where the run did not
            messages.append(f"unreliable: the bias probe of {max(n // PROBE_FRACTION, 2)} "
                            f"walkers diverged ({err}); raise num_walkers")
        else:
            grads += probe.num_grads
            extra.update(_effort_trend(log_z, log_z_se, n, probe))
    if bar:
        rev, rev_grads = _reverse(path, out, key_rev, betas, opts)
        extra.update(rev)
        grads += rev_grads
        gaps = {"BAR": (extra["log_z_bar"], extra["log_z_bar_se"]),
                "the reverse pass": (extra["log_z_reverse"], extra["log_z_reverse_se"])}
        bad = [f"{name} {value:.4f}" for name, (value, se) in gaps.items()
               if not abs(value - log_z) <= 3.0 * np.hypot(log_z_se, se)]
        extra["bar_consistent"] = not bad
        if bad:
            messages.append(
                f"forward log Z {log_z:.4f} disagrees with {' and '.join(bad)} beyond 3 combined "
                "standard errors (hysteresis): the annealing is too fast for its moves, and the "
                "forward log Z is probably biased low; raise target_ess or num_moves")
    reasons = _verdict(extra, h, sched, betas, max_stages, reference_info, out.num_ancestors)
    messages += [f"unreliable: {r}" for r in reasons]
    reasons += [m for m in messages if m.startswith("unreliable: the bias probe")]
    return EvidenceResult(
        log_z=float(log_z), log_z_se=float(log_z_se), samples=_samples(path, out.state.position),
        log_weights=to_host(out.log_weights), ess=h["ess"], schedule=betas,
        num_resamples=int(np.sum(h["num_resampled"] > 0)), num_gradient_evals=int(grads),
        method=method, num_walkers=n, group_log_z=out.group_log_z, acceptance=h["accept"],
        step_size=h["step_size"], num_dead=int(dead.sum()), num_dead_per_stage=dead,
        reference=reference, reference_info=reference_info,
        wall_time=time.perf_counter() - t0, messages=tuple(messages),
        walkers=out.state.position, reliable=not reasons,
        log_z_err=float(np.hypot(log_z_se, extra.pop("_bias_counted", 0.0))), **extra)


PROBE_FRACTION = 4  # the bias probe anneals num_walkers / 4 walkers


def _probe(path, key, n, sched, step_size, opts):
    """An independent run at lower effort (``n / PROBE_FRACTION`` walkers, one pool, same
    schedule rule, moves and initial step) for the effort trend of
    [`_effort_trend`][ebm_ppl.evidence.api._effort_trend]."""
    m = max(n // PROBE_FRACTION, 2)
    k_init, k_run = jax.random.split(key)
    state = _initial_state(path, k_init, m)
    return anneal(k_run, state, schedule=sched, step_size=step_size, desc="bias probe",
                  **dict(opts, num_groups=1, record_increments=False))


def _effort_trend(log_z, se, n, probe):
    """Bias of ``log_z`` from the effort trend between n walkers and the probe's m.

    An SMC estimate of log Z is biased low, with a bias that falls as 1 / walkers once the
    walkers are many (delta method: ``-Var(Z_hat) / (2 Z^2)``), so ``L(n) = L - c / n`` and
    the two runs give ``bias(n) = -(L_n - L_m) m / (n - m)``, with standard error
    ``m / (n - m) * hypot(se_n, se_m)``. The total error counts ``bias^2 - sd^2`` (the
    squared bias less its noise) only when the trend is beyond 2 standard errors, so that an
    unbiased run's error bar is not inflated by the probe's noise."""
    m = int(jax.tree.leaves(probe.state)[0].shape[0])
    r = m / (n - m)
    d = log_z - probe.log_z
    sd_d = float(np.hypot(se, probe.log_z_se))
    bias, sd_bias = -r * d, r * sd_d
    counted = math.sqrt(max(bias * bias - sd_bias * sd_bias, 0.0)) if abs(d) > 2 * sd_d else 0.0
    return dict(log_z_bias=float(bias), log_z_bias_se=float(sd_bias),
                log_z_probe=float(probe.log_z), log_z_probe_se=float(probe.log_z_se),
                probe_walkers=m, _bias_counted=counted)


def _verdict(extra, h, sched, betas, max_stages, reference_info, num_ancestors):
    """Reasons not to trust the error bar (empty: reliable), each saying what to raise."""
    reasons = []
    if "log_z_probe" in extra:
        d = extra.get("log_z_bias", 0.0) / max(extra["log_z_bias_se"], 1e-300)
        if abs(d) > 3.0:
            reasons.append(
                f"the effort trend is significant: an independent run with "
                f"{extra['probe_walkers']} walkers gives {extra['log_z_probe']:.4f} "
                f"({abs(d):.1f} standard errors of the difference away), so log Z still moves "
                "with effort; raise num_walkers, target_ess or num_moves until it stops")
    if len(h["ess"]) and np.min(h["ess"]) < 0.05:
        reasons.append("the weights degenerated at some stage (ESS < 0.05); raise target_ess "
                       "or num_walkers")
    if num_ancestors < 50:
        reasons.append(f"the genealogy collapsed (only {num_ancestors} initial walkers have "
                       "descendants), so log_z_se cannot be estimated; raise num_walkers")
    if extra.get("bar_consistent") is False:
        reasons.append("the forward and reverse passes disagree (hysteresis); raise target_ess "
                       "or num_moves")
    if stage_cap_message(sched, betas, max_stages) is not None:
        reasons.append("the schedule hit max_stages; raise max_stages")
    if reference_info.get("kind") == "auto (pilot)":
        reasons.append(
            "the target has no Laplace mode (a funnel's neck, an energy unbounded below): the "
            "reference was fitted to a pilot run, and mass that no walker reached biases log Z "
            "low beyond log_z_err (calibration: coverage far below nominal on Neal's funnel); "
            "compare runs with higher target_ess and num_moves, or give a reference")
    return reasons


def _reverse(path, out, key, betas, opts):
    """Reverse pass from the final resampled walkers down the same schedule; BAR per stage."""
    k_res, k_run = jax.random.split(key)
    idx = systematic_resample(k_res, out.log_weights)
    state = jax.tree.map(lambda a: a[idx], out.state)
    rev_opts = dict(opts, log_z0=0.0, desc="reverse pass")
    rev = anneal(k_run, state, schedule=betas[::-1].copy(), step_size=float(
        out.history["step_size"][-1]), **rev_opts)
    log_z_bar, se_bar = bar_log_z(out.increments, rev.increments, path.log_z0)
    # the reverse pass estimates log(Z_0 / Z_1)
    lz_rev, se_rev = rev.log_z, rev.log_z_se
    return dict(log_z_bar=log_z_bar, log_z_bar_se=se_bar, log_z_reverse=path.log_z0 - lz_rev,
                log_z_reverse_se=se_rev), rev.num_grads


def _importance(path, state, grads, reference, reference_info, t0):
    """Seed eq. 2: Z = E_0[exp(-U) / rho_0] with draws from the reference (no gradients)."""
    log_w = -jnp.where(jnp.isnan(state.delta), jnp.inf, state.delta) + path.log_z0
    n = log_w.shape[0]
    w = np.exp(to_host(log_w) - float(jnp.max(log_w)))
    se = float(w.std(ddof=1) / np.sqrt(n) / w.mean()) if w.mean() > 0 else float("inf")
    return EvidenceResult(
        log_z=float(log_mean_exp(log_w)), log_z_se=se, samples=_samples(path, state.position),
        log_weights=to_host(log_w), ess=np.asarray([float(ess_fraction(log_w))]),
        schedule=np.array([0.0, 1.0]), num_resamples=0,
        num_gradient_evals=grads,
        method="is", num_walkers=n, group_log_z=np.zeros(0), reference=reference,
        reference_info=reference_info, wall_time=time.perf_counter() - t0,
        walkers=state.position,
        messages=("importance sampling: log_z_se is the delta-method error of the weights, "
                  "unreliable when their variance is infinite",))
