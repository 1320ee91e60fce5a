"""User-facing entry points: `log_partition` (log Z of exp(-U)) and `log_evidence`
(log p(data) of a NumPyro model).

Both check their inputs, build one frozen [`AnnealOptions`][ebm_ppl.evidence.AnnealOptions], a
path (`paths`: geometric from a reference, likelihood tempering from a model's prior, or a
spin model's path) and the reference, and hand them to the run shell (`_run`: moves, the one
annealing loop of `engine`, the bias probe of `_probe`, the reverse/BAR pass, the result).
The automatic reference's pilot run lives in `_pilot`, the initial walkers in `_walkers`, and
what a model's result carries beyond the run (data fingerprint, pointwise log-likelihood) in
`_model_result`.
"""

from __future__ import annotations

import dataclasses
import time

import jax

from ..compilation import CompileClock
from ..energy import as_energy, energy_from_model
from ..errors import check_model_data, check_positive
from ..sharding import check_divisible, num_shards, walker_sharding
from ._model_result import with_model_data
from ._pilot import pilot_run_reference
from ._run import run
from .options import DEFAULT_METHOD, METHODS, SPIN_METHODS, AnnealOptions, entry_keys, typed_key
from .paths import geometric_path, tempering_path
from .reference import auto_reference
from .result import EvidenceResult

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
                  mesh=None, keep_modes: bool | None = None) -> EvidenceResult:
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
            walkers (at least 256) from N(0, init_scale^2 I), with a multivariate Cauchy of
            the same location and scale as its defensive component. What was built, and the
            gradients it cost (included in ``num_gradient_evals``), are in
            ``result.reference_info``.
        method: "hmc" (default: most accurate per gradient in ``benchmarks/RESULTS.md``),
            "mala", "jarzynski" (ULA with exact nonequilibrium weights), "nuts", "is"
            (importance sampling from the reference, eq. 2) or "ti" (thermodynamic integration).
        num_walkers: walkers (default 4096; 1024 for spin models), resampled as one pool;
            ``log_z_se`` comes from their genealogy (Lee & Whiteley 2018; see
            [`genealogy_relative_variance`][ebm_ppl.evidence.genealogy_relative_variance]).
        num_groups: split the walkers into this many independent groups that resampling never
            mixes (default 1; one per device when sharded, so that resampling stays on each
            device; ``num_walkers // 64``, at most 16, for "ti" and spin models, whose error is
            the groups' spread). Each group's genealogy gives its variance;
            ``result.group_log_z`` holds their estimates. More groups lose more: a group that
            loses a narrow mode never gets it back (``benchmarks/RESULTS.md``).
        resampling: "multinomial" (default: the genealogy ``log_z_se`` is exact under it) or
            "systematic" (less resampling noise; ``log_z_se`` then approximate; the default for
            spin models).
        bias_check: also anneal a probe at a quarter of the effort (about 25% more
            gradients): 4 independent pools of ``num_walkers / 4`` walkers at a quarter of the
            moves per stage, in the main run's compiled programs (else one run of
            ``num_walkers / 4`` walkers), and extrapolate the effort trend between the two
            estimates (bias ~ 1 / effort) into ``result.log_z_bias``; ``result.log_z_err`` =
            ``sqrt(se^2 + bias^2)`` counts the bias only where the trend is significant
            (beyond 2 standard errors); ``se`` is ``log_z_se``, or with a pilot-fitted
            reference the larger of it and the pools' spread (``docs/evidence.md``). The
            probe also feeds ``result.reliable``.
        step_size: initial step in whitened coordinates (x / walker std); None picks one from
            the reference's gradients. It adapts toward ``target_accept`` after every move
            (one step for all walkers, jittered per walker) unless ``adapt_step_size=False``.
        schedule: "adaptive" (next beta at conditional ESS ``target_ess``), "linear",
            "geometric", "power" (with ``num_stages``) or an increasing array from 0 to 1.
        num_moves, num_leapfrog, target_accept, step_jitter, precondition: None takes the
            method's default (`ebm_ppl.evidence.options.METHOD_DEFAULTS`).
        bar: also run the schedule in reverse from the final resampled walkers and report
            the BAR and reverse estimates (doubles the cost).
        keep_modes: find the target's modes first (L-BFGS from 1024 of the initial walkers;
            its gradients are counted) and, when there are several, resample so that every
            mode keeps its walkers (`mode_guarded_resample_if`: a share 0.8 of the walkers
            spread evenly over the modes, the modes' weights carried as importance
            weights). For separated modes of unequal widths under a broad reference, where a
            narrow mode's share dips along the path (``docs/evidence.md``). The walkers form 8
            independent groups (fewer when 8 does not divide ``num_walkers``; or
            ``num_groups``) whose spread is
            ``log_z_se``; no bias probe; no preconditioning unless ``precondition=True`` (the
            walkers' scale would mix the modes' widths). Measured with ``method="mala"``
            (``benchmarks/RESULTS.md``). The modes are in
            ``result.reference_info["kept_modes"]``.
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
            progress_bar=progress_bar, keep_modes=keep_modes)
    except ValueError as err:
        if not misused or "not options of spin models" not in str(err):
            raise
        raise ValueError(f"{', '.join(misused)}, {err}") from None
    if misused:
        raise ValueError(f"{', '.join(misused)}: not options of spin models (their moves are "
                         "Gibbs or Metropolis sweeps: method='gibbs' or 'metropolis')")
    if spins:
        path = _spin_path(potential_fn)
        with CompileClock() as clock:
            return _timed(run(path, key, opts), clock)
    sharding = walker_sharding(devices, mesh)
    check_divisible(int(opts.num_walkers), sharding)
    opts = _default_groups(opts, num_groups, sharding)
    energy = as_energy(potential_fn, dim=_reference_dim(potential_fn, dim, reference))
    check_positive("num_starts", num_starts, integer=True)
    check_positive("init_scale", init_scale)
    if reference is not None:
        _check_reference(reference, energy.dim)
    key_ref, key_run, *keys = entry_keys(typed_key(key))
    with CompileClock() as clock:
        t0 = time.perf_counter()
        if reference is None:
            reference, info = auto_reference(energy, key_ref, num_starts=num_starts,
                                             init_scale=init_scale)
            if not len(info["modes"]):
                reference, info = pilot_run_reference(energy, jax.random.fold_in(key_ref, 1),
                                                       reference, info, opts)
        else:
            info = dict(kind=type(reference).__name__)
        return _timed(run(geometric_path(energy, reference), key_run, opts, reference=reference,
                          reference_info=info, t0=t0, sharding=sharding, keys=keys), clock)


def log_evidence(model, *model_args, key, method: str = DEFAULT_METHOD,
                 num_walkers: int | None = None, step_size=None, schedule="adaptive",
                 num_stages: int | None = None, target_ess: float = 0.7,
                 num_moves: int | None = None, num_leapfrog: int | None = None,
                 target_accept=None, adapt_step_size: bool | None = None,
                 step_jitter: float | None = None, precondition: bool | None = None,
                 resample_threshold: float = 1.0, num_groups: int | None = None,
                 resampling: str | None = None, bias_check: bool | None = None,
                 bar: bool | None = None, max_stages: int = 1000, progress_bar: bool = True,
                 devices=None, mesh=None, keep_modes: bool | None = None,
                 **model_kwargs) -> EvidenceResult:
    """log p(data) of a NumPyro model by likelihood tempering from its prior (log Z_0 = 0).

    Walkers move in NumPyro's unconstrained space; ``result.samples`` are constrained
    posterior draws (weighted by ``result.log_weights``). Options as in
    [`log_partition`][ebm_ppl.evidence.log_partition] (``devices=``/``mesh=`` shard the
    walkers); other keyword arguments go to the model.
    """
    opts = AnnealOptions(
        method=method, num_walkers=num_walkers, num_groups=num_groups, step_size=step_size,
        schedule=schedule, num_stages=num_stages, target_ess=target_ess, num_moves=num_moves,
        num_leapfrog=num_leapfrog, target_accept=target_accept,
        adapt_step_size=adapt_step_size, step_jitter=step_jitter, precondition=precondition,
        resample_threshold=resample_threshold, resampling=resampling,
        bias_check=bias_check, bar=bar, max_stages=max_stages, progress_bar=progress_bar,
        keep_modes=keep_modes)
    if opts.spins:
        raise ValueError(f"method={method!r} is a spin method; log_evidence takes one of "
                         f"{', '.join(repr(m) for m in METHODS)}")
    sharding = walker_sharding(devices, mesh)
    check_divisible(int(opts.num_walkers), sharding)
    opts = _default_groups(opts, num_groups, sharding)
    check_model_data(model_args, model_kwargs)
    key_model, key_run, *keys = entry_keys(typed_key(key))
    with CompileClock() as clock:
        t0 = time.perf_counter()
        energy = energy_from_model(model, *model_args, key=key_model, **model_kwargs)
        result = run(tempering_path(energy), key_run, opts, reference="prior",
                     reference_info=dict(kind="prior"), t0=t0, sharding=sharding, keys=keys)
        result = with_model_data(result, energy, model, *model_args, **model_kwargs)
    return _timed(result, clock)


def _spin_path(model):
    """The spin model's own annealing path (``ep.spins.SpinModel.annealing_path``; evidence
    does not import spins, which builds on it)."""
    if not callable(getattr(model, "annealing_path", None)):
        raise TypeError(f"{type(model).__name__} looks like a spin model (it has tempered and "
                        "random_spins) but has no annealing_path(); subclass ep.spins.SpinModel")
    return model.annealing_path()


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


def _timed(result: EvidenceResult, clock: CompileClock) -> EvidenceResult:
    return dataclasses.replace(result, compile_time=clock.seconds)
