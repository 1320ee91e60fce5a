"""User-facing entry points: `log_partition` (log Z of exp(-U)) and `log_evidence`
(log p(data) of a NumPyro model).

Both build a linear path (`paths`), a move (`moves`) and run the one annealing loop
(`engine`); "is" is plain importance sampling from the reference (seed eq. 2) and "ti"
thermodynamic integration ``log Z_1 = log Z_0 - int_0^1 E_beta[V] dbeta`` with NUTS moves on a
fixed ladder (both baselines for teaching and comparison).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..energy import as_energy, energy_from_model
from ..compilation import CompileClock
from ..errors import SamplingDivergedError, check_model_data, check_positive
from ..sharding import check_divisible, num_shards, sharded_jit, to_host, walker_sharding
from . import moves as _moves
from .bar import bar_log_z
from .engine import anneal
from .fingerprint import observed_fingerprint
from .paths import LinearPath, geometric_path, tempering_path
from .reference import auto_reference, pilot_reference
from .resampling import ess_fraction, log_mean_exp, systematic_resample
from .result import EvidenceResult, group_standard_error
from .options import DEFAULT_METHOD, METHODS, SPIN_METHODS, AnnealOptions, typed_key
from .schedules import as_schedule, power, stage_cap_message

__all__ = ["log_partition", "log_evidence", "METHODS", "DEFAULT_METHOD"]


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
                  method: str | None = None, num_walkers: int | None = None, step_size=None,
                  schedule="adaptive", num_stages: int | None = None, target_ess: float = 0.7,
                  num_moves: int | None = None, num_leapfrog: int | None = None,
                  target_accept=None, adapt_step_size: bool | None = None,
                  step_jitter: float | None = None, precondition: bool | None = None,
                  resample_threshold: float = 1.0, num_groups: int | None = None,
                  resampling: str | None = None, bias_check: bool | None = None,
                  bar: bool | None = None, max_stages: int = 1000, num_starts: int = 256,
                  init_scale: float = 3.0, progress_bar: bool = True, devices=None,
                  mesh=None) -> EvidenceResult:
    """log Z = log int exp(-U(x)) dx by annealing from a normalized reference (seed eq. 102-104).

    Args:
        potential_fn: U on flat arrays of shape (dim,), an [`Energy`][ebm_ppl.energy.Energy], a
            target from [`ebm_ppl.targets`][ebm_ppl.targets], or a spin model
            ([`ebm_ppl.spins`][ebm_ppl.spins], see below).
        key: a JAX random key. The same key gives the same result.
        reference: a NumPyro distribution with event shape (dim,) and exact ``log_prob`` (its
            event shape gives ``dim``); None
            builds a Gaussian mixture over the modes a multi-start L-BFGS finds (``num_starts``
            starts from N(0, init_scale^2 I)); when no mode qualifies (e.g. Neal's funnel), a
            diagonal Gaussian mixture fitted to a pilot annealing of ``num_walkers / 16``
            walkers (at least 256) from N(0, init_scale^2 I). What was built, and the
            gradients it cost (included in ``num_gradient_evals``), are in
            ``result.reference_info``.
        method: "hmc" (default: most accurate per gradient in ``benchmarks/RESULTS.md``),
            "mala", "jarzynski" (ULA with exact nonequilibrium weights), "nuts", "is"
            (importance sampling from the reference, eq. 2) or "ti" (thermodynamic integration).
        num_walkers: walkers (default 4096; 1024 for spin models), resampled as one pool;
            ``log_z_se`` comes from their genealogy (Lee & Whiteley 2018; see
            [`genealogy_relative_variance`][ebm_ppl.evidence.resampling.genealogy_relative_variance]).
        num_groups: split the walkers into this many independent groups that resampling never
            mixes (default 1; one per device when sharded, so that resampling stays on each
            device; ``num_walkers // 64``, at most 16, for "ti" and spin models, whose error is
            the groups' spread). Each group's genealogy gives its variance;
            ``result.group_log_z`` holds their estimates. More groups lose more: a group that
            loses a narrow mode never gets it back (``benchmarks/RESULTS.md``).
        resampling: "multinomial" (default: the genealogy ``log_z_se`` is exact under it) or
            "systematic" (less resampling noise; ``log_z_se`` then approximate; the default for
            spin models).
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
        num_moves, num_leapfrog, target_accept, step_jitter, precondition: None takes the
            method's default (``ebm_ppl.evidence.options.METHOD_DEFAULTS``).
        bar: also run the schedule in reverse from the final resampled walkers and report
            the BAR and reverse estimates (doubles the cost).
        progress_bar: show stages, beta, ESS and the seconds spent compiling while running.
        devices, mesh: shard the walkers over devices (``"all"``, a count, a list of
            devices, or a ``jax.sharding.Mesh`` with a ``"walkers"`` axis; see
            [`ebm_ppl.sharding`][ebm_ppl.sharding] and ``docs/scaling.md``); ``num_walkers`` must divide
            evenly. Reductions and resampling stay global: the same key gives the same log Z
            as on one device, up to floating-point reduction order. ``result.walkers`` keeps
            the final walkers on the devices.

    A spin model runs the same engine from beta = 0 (uniform spins, ``log Z_0 = N log 2``)
    with Gibbs sweeps (``method="gibbs"``, the default for spins, or ``"metropolis"``);
    options of continuous moves are refused by name. ``ep.spins.log_partition`` is the same
    call. ``result.compile_time`` is the part of ``result.wall_time`` spent compiling.
    """
    spins = hasattr(potential_fn, "tempered") and hasattr(potential_fn, "random_spins")
    misused = []
    if spins:
        misused = [name for name, value in (("reference", reference), ("dim", dim),
                                            ("devices", devices), ("mesh", mesh)) if value is not None]
        if method not in (None, *SPIN_METHODS):
            misused.insert(0, "method")
            method = None
    try:
        opts = AnnealOptions(
            method=method or ("gibbs" if spins else DEFAULT_METHOD), num_walkers=num_walkers,
            num_groups=num_groups, step_size=step_size, schedule=schedule, num_stages=num_stages,
            target_ess=target_ess, num_moves=num_moves, num_leapfrog=num_leapfrog,
            target_accept=target_accept, adapt_step_size=adapt_step_size,
            step_jitter=step_jitter, precondition=precondition,
            resample_threshold=resample_threshold, resampling=resampling,
            bias_check=bias_check, bar=bar,
            max_stages=max_stages,
            progress_bar=progress_bar)
    except ValueError as err:
        if not misused or "not options of spin models" not in str(err):
            raise
        raise ValueError(f"{', '.join(misused)}, {err}") from None
    if misused:
        raise ValueError(f"{', '.join(misused)}: not options of spin models (their moves are "
                         "Gibbs or Metropolis sweeps: method='gibbs' or 'metropolis')")
    if spins:
        from ..spins.free_energy import spin_path

        with CompileClock() as clock:
            return _timed(_run(spin_path(potential_fn), key, opts), clock)
    sharding = walker_sharding(devices, mesh)
    check_divisible(int(opts.num_walkers), sharding)
    opts = _default_groups(opts, num_groups, sharding)
    energy = as_energy(potential_fn, dim=_reference_dim(potential_fn, dim, reference))
    check_positive("num_starts", num_starts, integer=True)
    check_positive("init_scale", init_scale)
    if reference is not None:
        _check_reference(reference, energy.dim)
    key_ref, key_run = jax.random.split(typed_key(key))
    with CompileClock() as clock:
        t0 = time.perf_counter()
        if reference is None:
            reference, info = auto_reference(energy, key_ref, num_starts=num_starts,
                                             init_scale=init_scale)
            if not len(info["modes"]):
                reference, info = _pilot_reference(energy, jax.random.fold_in(key_ref, 1),
                                                   reference, info, opts)
        else:
            info = dict(kind=type(reference).__name__)
        return _timed(_run(geometric_path(energy, reference), key_run, opts, reference=reference,
                           reference_info=info, t0=t0, sharding=sharding), clock)


def log_evidence(model, *model_args, key, method: str = DEFAULT_METHOD,
                 num_walkers: int | None = None, step_size=None, schedule="adaptive",
                 num_stages: int | None = None, target_ess: float = 0.7,
                 num_moves: int | None = None, num_leapfrog: int | None = None,
                 target_accept=None, adapt_step_size: bool | None = None,
                 step_jitter: float | None = None, precondition: bool | None = None,
                 resample_threshold: float = 1.0, num_groups: int | None = None,
                 resampling: str | None = None, bias_check: bool | None = None,
                 bar: bool | None = None, max_stages: int = 1000, progress_bar: bool = True,
                 devices=None, mesh=None, **model_kwargs) -> EvidenceResult:
    """log p(data) of a NumPyro model by likelihood tempering from its prior (log Z_0 = 0).

    Walkers move in NumPyro's unconstrained space; ``result.samples`` are constrained
    posterior draws (weighted by ``result.log_weights``). Options as in
    `log_partition` (``devices=``/``mesh=`` shard the walkers); other keyword arguments
    go to the model.
    """
    opts = AnnealOptions(
        method=method, num_walkers=num_walkers, num_groups=num_groups, step_size=step_size,
        schedule=schedule, num_stages=num_stages, target_ess=target_ess, num_moves=num_moves,
        num_leapfrog=num_leapfrog, target_accept=target_accept,
        adapt_step_size=adapt_step_size, step_jitter=step_jitter, precondition=precondition,
        resample_threshold=resample_threshold, resampling=resampling,
            bias_check=bias_check, bar=bar,
            max_stages=max_stages,
        progress_bar=progress_bar)
    if opts.spins:
        raise ValueError(f"method={method!r} is a spin method; log_evidence takes one of "
                         f"{', '.join(repr(m) for m in METHODS)}")
    sharding = walker_sharding(devices, mesh)
    check_divisible(int(opts.num_walkers), sharding)
    opts = _default_groups(opts, num_groups, sharding)
    check_model_data(model_args, model_kwargs)
    key_model, key_run = jax.random.split(typed_key(key))
    with CompileClock() as clock:
        t0 = time.perf_counter()
        energy = energy_from_model(model, *model_args, key=key_model, **model_kwargs)
        result = _run(tempering_path(energy), key_run, opts, reference="prior",
                      reference_info=dict(kind="prior"), t0=t0, sharding=sharding)
        result = dataclasses.replace(  # so that comparisons can refuse evidences of other data
            result, data_fingerprint=observed_fingerprint(model, *model_args, **model_kwargs))
        result = _with_log_likelihood(result, energy)  # for az.loo
    return _timed(result, clock)


def _default_groups(opts: AnnealOptions, num_groups, sharding) -> AnnealOptions:
    """Sharded runs without ``num_groups``: one group per device, so that resampling never
    moves walkers between devices (the groups are exact: each has its own genealogy
    variance; pooled resampling would gather across devices at every stage)."""
    shards, n = num_shards(sharding), int(opts.num_walkers)
    if num_groups is None and opts.method != "ti" and shards > 1 and n % shards == 0 and \
            n // shards >= 2:
        return opts.replace(num_groups=shards)
    return opts


def _reference_dim(potential_fn, dim, reference):
    """``dim`` of a plain function from the reference's event shape ``(dim,)`` when not given
    (an Energy or a target knows its own; a wrong reference is reported by _check_reference)."""
    if dim is not None or reference is None or hasattr(potential_fn, "dim") or \
            hasattr(potential_fn, "energy"):
        return dim
    event = tuple(getattr(reference, "event_shape", ()))
    return int(event[0]) if len(event) == 1 and int(event[0]) > 0 else dim


@functools.partial(jax.jit, static_argnums=0)
def _pointwise_log_likelihood(structure, samples, data):
    from numpyro.infer import log_likelihood

    args, kwargs = structure.args(data)
    return log_likelihood(structure.model, samples, *args, batch_ndims=1, **kwargs)


def _with_log_likelihood(result: EvidenceResult, energy) -> EvidenceResult:
    """``result`` with the pointwise log-likelihood of the model's observed sites at its
    walkers (``to_arviz()``'s ``log_likelihood`` group, for ``az.loo``), as
    `with_log_likelihood` computes it, compiled once per model structure."""
    if not isinstance(result.samples, dict) or energy.structure is None:
        return result
    try:
        values = _pointwise_log_likelihood(energy.structure, result.samples, energy.data)
    except Exception:  # noqa: BLE001 - a model the vectorized replay cannot handle: no group
        return result
    return dataclasses.replace(result, log_likelihood={k: np.asarray(v)
                                                       for k, v in values.items()})


def _timed(result: EvidenceResult, clock: CompileClock) -> EvidenceResult:
    return dataclasses.replace(result, compile_time=clock.seconds)


PILOT_FRACTION = 16  # the pilot anneals num_walkers / 16 walkers, at least 256


def _pilot_reference(energy, key, broad, info, opts: AnnealOptions):
    """No usable Laplace mode: anneal a few walkers from the broad Gaussian with the default
    method and fit `pilot_reference` to them (its gradients are counted).
    Up to 4 components, fewer when the pilot has under 5 walkers per fitted parameter pair."""
    n_pilot = max(256, int(opts.num_walkers) // PILOT_FRACTION // 16 * 16)
    pilot = _run(geometric_path(energy, broad), key, AnnealOptions(
        num_walkers=n_pilot, bias_check=False, progress_bar=opts.progress_bar), reference=broad,
        reference_info=dict(kind="broad"), t0=time.perf_counter())
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


_sample_compiled = jax.jit(_sample_base, static_argnums=2)


def _initial_state(path: LinearPath, key, n, sharding=None):
    """Exact draws from the reference with U_0, V and gradients cached. A model's prior is
    sampled by one compiled program per model structure (NumPyro's ``Predictive`` run eagerly
    would build, and compile, a new scan every call); a reference distribution eagerly (its
    operations are compiled once per shape and cached)."""
    if sharding is None:
        model = getattr(path, "target_data", None) is not None
        x0 = _sample_compiled(path, key, n) if model else path.sample_base(key, n)
        state = _evaluate_batch(path, x0)
    else:  # drawn in place: each device makes only its own walkers (same values)
        x0 = sharded_jit(_sample_base, sharding, static_argnums=(2,))(path, key, n)
        state = _evaluate_batch(path, x0)
    finite = jnp.isfinite(state.delta)
    if hasattr(state, "u0"):
        finite = finite & jnp.isfinite(state.u0)
    if not bool(jnp.any(finite)):
        raise SamplingDivergedError("the energy is not finite at any draw from the reference")
    return state


@functools.partial(jax.jit, static_argnums=2)
def _whitened_grad_trace(position, grad_u0, precondition):
    """Mean of |g_y|^2 over the walkers with a finite whitened gradient (one compiled
    program instead of a dozen eager operations, each compiled on a first call)."""
    g = grad_u0 * _moves.walker_scale(position, precondition)
    ok = jnp.all(jnp.isfinite(g), axis=-1)
    return jnp.sum(jnp.where(ok[:, None], g * g, 0.0)) / jnp.maximum(jnp.sum(ok), 1)


def _initial_step(state, method, default, precondition):
    """A stable first step from the reference's whitened gradients: E|g_y|^2 = tr(A_y) bounds
    the stiffest curvature, so h = 1/tr (Langevin: stable below 2/lambda_max) or
    1/sqrt(tr) (leapfrog: stable below 2/sqrt(lambda_max)), never above the default."""
    tr = float(_whitened_grad_trace(state.position, state.grad_u0, precondition))
    if not np.isfinite(tr) or tr <= 0:
        return default
    bound = 1.0 / tr if method in ("mala", "jarzynski") else 1.0 / math.sqrt(tr)
    return float(min(default, bound))


@jax.jit
def _constrain_batch(path, positions):
    return jax.vmap(path.constrain)(positions)


def _samples(path, positions):
    return to_host(_constrain_batch(path, positions))


def _move(path, opts: AnnealOptions):
    if opts.spins:
        return path.move(opts.method)
    builder: Any = _moves.MOVES["nuts" if opts.method == "ti" else opts.method]
    if opts.method == "hmc":
        return builder(path, opts.num_leapfrog, opts.precondition)
    return builder(path, precondition=opts.precondition)


def _schedule(opts: AnnealOptions):
    schedule = AnnealOptions.schedule_array_or_adaptive(opts.schedule)
    if opts.method == "ti" and isinstance(schedule, str) and schedule == "adaptive":
        return power(32 if opts.num_stages is None else opts.num_stages)
    return as_schedule(schedule, opts.num_stages, opts.target_ess)


def _run(path, key, opts: AnnealOptions, *, reference="uniform", reference_info=None, t0=None,
         sharding=None):
    """One annealing run of ``path`` (a `LinearPath` or a spin path) with
    ``opts``, from the initial draws to the `EvidenceResult` (without compile time)."""
    t0 = time.perf_counter() if t0 is None else t0
    reference_info = {} if reference_info is None else reference_info
    method, n = opts.method, int(opts.num_walkers)
    if opts.spins:  # the key split of the spin driver of earlier releases (same numbers)
        (key_init, key_fwd), key_rev = jax.random.split(typed_key(key)), None
    else:
        key_init, key_fwd, key_rev = jax.random.split(key, 3)
    state = _initial_state(path, key_init, n, sharding)
    grads = 0 if opts.spins else n + int(reference_info.get("num_gradient_evals", 0))
    if method == "is":
        return _importance(path, state, grads, reference, reference_info, t0)
    sched = _schedule(opts)
    step_size = opts.step_size
    if opts.spins:
        step_size, desc = 1.0, f"log Z ({path.name}, {method})"
    else:
        desc = f"log Z ({method})"
        if step_size is None:
            step_size = _initial_step(state, method, opts.initial_step(path.dim),
                                      opts.precondition)
    move = _move(path, opts)
    out = anneal(key_fwd, state, delta_fn=_path_delta, move=move, schedule=sched,
                 options=opts, log_z0=path.log_z0, step_size=step_size, desc=desc)
    return _finish(path, key, opts, state, out, sched, step_size, move, grads, reference,
                   reference_info, t0, key_rev)


def _finish(path, key, opts: AnnealOptions, state, out, sched, step_size, move, grads,
            reference, reference_info, t0, key_rev, probe=None):
    """The `EvidenceResult` of the annealing output ``out`` of `_run` (from the
    initial walkers ``state``): messages, the bias probe (run here unless ``probe``, its
    `AnnealOutput` or the `SamplingDivergedError` it raised, is given,
    as `batch` does), the reverse pass and the verdict."""
    method, n, g = opts.method, int(opts.num_walkers), int(opts.num_groups)
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
    if (capped := stage_cap_message(sched, betas, opts.max_stages)) is not None:
        messages.append(capped)
    # spins: the spread of the groups (systematic resampling); else the genealogy
    log_z, log_z_se = group_standard_error(out.group_log_z) if opts.spins else \
        (out.log_z, out.log_z_se)
    if method == "ti":
        e0 = to_host(state.delta).reshape(g, -1)
        e0 = np.array([np.mean(r[np.isfinite(r)]) for r in e0])
        md = np.concatenate([e0[None], h["mean_delta"]], axis=0)
        ti = path.log_z0 - np.trapezoid(md, betas, axis=0)
        log_z, log_z_se = float(np.mean(ti)), float(np.std(ti, ddof=1) / np.sqrt(g))
        messages.append(f"TI: log_z_se excludes the quadrature error of {len(betas) - 1} "
                        f"stages; the SMC estimate on the same run is {out.log_z:.4f}")
    extra = {}
    if opts.bias_check and method != "ti":
        try:
            if probe is None:
                probe = _probe(path, jax.random.fold_in(key, 15), n, sched, step_size, move,
                               opts)
            elif isinstance(probe, SamplingDivergedError):
                raise probe
        except SamplingDivergedError as err:  # a small probe can die where the run did not
            messages.append(f"unreliable: the bias probe of {max(n // PROBE_FRACTION, 2)} "
                            f"walkers diverged ({err}); raise num_walkers")
        else:
            grads += probe.num_grads
            extra.update(_effort_trend(log_z, log_z_se, n, probe))
    if opts.bar:
        rev, rev_grads = _reverse(path, out, key_rev, betas, move, opts)
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
    if not opts.spins:  # spins: the groups' spread is the error bar (no verdict, as before)
        reasons = _verdict(extra, h, sched, betas, opts.max_stages, reference_info,
                           out.num_ancestors)
        messages += [f"unreliable: {r}" for r in reasons]
        reasons += [m for m in messages if m.startswith("unreliable: the bias probe")]
        extra.update(reliable=not reasons, log_z_err=float(np.hypot(
            log_z_se, extra.pop("_bias_counted", 0.0))))
    if opts.spins:
        reference_info = dict(kind="uniform spins (beta = 0)", log_z0=path.log_z0,
                              sweeps=int(n * int(opts.num_moves) * (len(betas) - 1)))
    return EvidenceResult(
        log_z=float(log_z), log_z_se=float(log_z_se), samples=_samples(path, out.state.position),
        log_weights=to_host(out.log_weights), ess=h["ess"], schedule=betas,
        num_resamples=int(np.sum(h["num_resampled"] > 0)), num_gradient_evals=int(grads),
        method=f"spins-{method}" if opts.spins else method, num_walkers=n,
        group_log_z=out.group_log_z, acceptance=h["accept"],
        step_size=np.zeros_like(h["accept"]) if opts.spins else h["step_size"],
        num_dead=int(dead.sum()), num_dead_per_stage=dead,
        reference=reference, reference_info=reference_info,
        wall_time=time.perf_counter() - t0, messages=tuple(messages),
        walkers=out.state.position, **extra)


PROBE_FRACTION = 4  # the bias probe anneals num_walkers / 4 walkers


def _probe(path, key, n, sched, step_size, move, opts: AnnealOptions):
    """An independent run at lower effort (``n / PROBE_FRACTION`` walkers, one pool, same
    schedule rule, moves and initial step) for the effort trend of `_effort_trend`."""
    m = max(n // PROBE_FRACTION, 2)
    k_init, k_run = jax.random.split(key)
    state = _initial_state(path, k_init, m)
    return anneal(k_run, state, delta_fn=_path_delta, move=move, schedule=sched,
                  options=opts.replace(num_walkers=m, num_groups=1, bar=False),
                  step_size=step_size, desc="bias probe")


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


def _reverse(path, out, key, betas, move, opts: AnnealOptions):
    """Reverse pass from the final resampled walkers down the same schedule; BAR per stage."""
    k_res, k_run = jax.random.split(key)
    idx = systematic_resample(k_res, out.log_weights)
    state = jax.tree.map(lambda a: a[idx], out.state)
    rev = anneal(k_run, state, delta_fn=_path_delta, move=move, schedule=betas[::-1].copy(),
                 options=opts, log_z0=0.0, step_size=float(out.history["step_size"][-1]),
                 desc="reverse pass")
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
