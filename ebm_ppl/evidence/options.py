"""The options of an annealing run, validated once, frozen, and passed whole.

`AnnealOptions` is built by every entry point ([`log_partition`][ebm_ppl.log_partition],
[`log_evidence`][ebm_ppl.log_evidence], the pilot run of an automatic reference and
[`ebm_ppl.spins.log_partition`][ebm_ppl.spins.log_partition]) and handed as one object to the run and to
[`anneal`][ebm_ppl.evidence.anneal]. Options left at ``None`` take the method's default
(`METHOD_DEFAULTS`), resolved in one place, here, so that a spin model gets the same
numbers through ``ep.log_partition`` and ``ep.spins.log_partition``. The object is hashable: the
part the compiled stage depends on (`AnnealOptions.stage_key`) is the static key of its
compilation cache.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np

from ..errors import check_choice, check_key, check_positive
from .resampling import RESAMPLING_SCHEMES
from .schedules import Adaptive, as_schedule

__all__ = ["AnnealOptions", "METHODS", "SPIN_METHODS", "DEFAULT_METHOD", "METHOD_DEFAULTS"]

METHODS = ("hmc", "mala", "jarzynski", "nuts", "is", "ti")
SPIN_METHODS = ("gibbs", "metropolis")
DEFAULT_METHOD = "hmc"
DEFAULT_SPIN_METHOD = "gibbs"

# per method: walkers, moves per stage, target acceptance, step jitter (per-walker factor
# exp(+-j)), initial step (whitened units) as d -> h0 (capped by a stability bound)
METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "hmc": dict(num_walkers=4096, num_moves=8, target_accept=0.9, step_jitter=1.0,
                step=lambda d: 1.0 * d ** -0.25),
    "mala": dict(num_walkers=4096, num_moves=5, target_accept=0.9, step_jitter=1.0,
                 step=lambda d: 0.5 * d ** (-1 / 3)),
    # ULA's weights explode past its stability limit: jitter the step only a little
    "jarzynski": dict(num_walkers=4096, num_moves=5, target_accept=0.9, step_jitter=0.2,
                      step=lambda d: 0.5 * d ** (-1 / 3)),
    "nuts": dict(num_walkers=4096, num_moves=1, target_accept=0.8, step_jitter=1.0,
                 step=lambda d: 0.5 * d ** -0.25),
    "ti": dict(num_walkers=4096, num_moves=2, target_accept=0.8, step_jitter=1.0,
               step=lambda d: 0.5 * d ** -0.25),
    "is": dict(num_walkers=4096, num_moves=1, target_accept=0.9, step_jitter=0.2,
               step=lambda d: 1.0),
    # spin sweeps have no step: these keep the engine's arithmetic of earlier releases
    "gibbs": dict(num_walkers=1024, num_moves=2, target_accept=0.9, step_jitter=0.2,
                  step=lambda d: 1.0),
    "metropolis": dict(num_walkers=1024, num_moves=2, target_accept=0.9, step_jitter=0.2,
                       step=lambda d: 1.0),
}

_CONTINUOUS_ONLY = ("resampling", "bias_check", "step_size", "num_leapfrog", "target_accept",
                    "adapt_step_size", "step_jitter", "precondition", "bar", "keep_modes")
KEEP_MODES_GROUPS = 8  # keep_modes: independent groups, whose spread is the error bar


def _keep_modes_groups(n: int) -> int:
    """keep_modes' default groups: the most (at most `KEEP_MODES_GROUPS`, at least 2) that
    divide ``n`` into groups of at least 32 walkers; their spread is the error bar."""
    for g in range(KEEP_MODES_GROUPS, 1, -1):
        if n % g == 0 and n // g >= 32:
            return g
    raise ValueError(f"keep_modes forms 2 to {KEEP_MODES_GROUPS} independent groups of at least "
                     f"32 walkers for its error bar: num_walkers={n} has no such split (use "
                     "e.g. a multiple of 8, at least 256, or give num_groups)")


def _as_float(name, value):
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None


@dataclass(frozen=True, init=False)
class AnnealOptions:
    """Validated options of one annealing run (see [`ebm_ppl.log_partition`][ebm_ppl.log_partition] for each).

    ``None`` means "the method's default" (`METHOD_DEFAULTS`); after construction every
    field holds its resolved value, except ``step_size`` (None: chosen from the reference's
    gradients at run time). An array ``schedule`` is kept as a tuple of floats (hashable).
    Spin methods ("gibbs", "metropolis") reject the options of continuous moves.
    """

    method: str
    num_walkers: int
    num_groups: int
    step_size: float | None
    schedule: Any
    num_stages: int | None
    target_ess: float
    num_moves: int
    num_leapfrog: int
    target_accept: float
    adapt_step_size: bool
    step_jitter: float
    precondition: bool
    resample_threshold: float
    bar: bool
    max_stages: int
    adapt_gain: float
    progress_bar: bool
    resampling: str
    bias_check: bool
    keep_modes: bool

    def __init__(self, method: str = DEFAULT_METHOD, num_walkers: int | None = None,
                 num_groups: int | None = None, step_size: float | None = None,
                 schedule: Any = "adaptive", num_stages: int | None = None,
                 target_ess: float = 0.7, num_moves: int | None = None,
                 num_leapfrog: int | None = None, target_accept: float | None = None,
                 adapt_step_size: bool | None = None, step_jitter: float | None = None,
                 precondition: bool | None = None, resample_threshold: float = 1.0,
                 bar: bool | None = None, max_stages: int = 1000, adapt_gain: float = 0.5,
                 progress_bar: bool = True, resampling: str | None = None,
                 bias_check: bool | None = None, keep_modes: bool | None = None):
        given = (method, num_walkers, num_groups, step_size, schedule, num_stages, target_ess,
                 num_moves, num_leapfrog, target_accept, adapt_step_size, step_jitter,
                 precondition, resample_threshold, bar, max_stages, adapt_gain, progress_bar,
                 resampling, bias_check, keep_modes)
        for field, value in zip(dataclasses.fields(self), given):  # resolved below
            object.__setattr__(self, field.name, value)
        self._resolve()

    def _resolve(self):
        set_ = object.__setattr__  # frozen: resolve in place once
        method = check_choice("method", self.method, METHODS + SPIN_METHODS)
        spins = method in SPIN_METHODS
        if spins:
            given = [name for name in _CONTINUOUS_ONLY if getattr(self, name) is not None]
            if given:
                raise ValueError(f"{', '.join(given)}: not options of spin models (their moves "
                                 "are Gibbs or Metropolis sweeps); the spin options are "
                                 "num_walkers, num_groups, schedule, num_stages, target_ess, "
                                 "num_moves, resample_threshold, max_stages and progress_bar")
        d = METHOD_DEFAULTS[method]
        n = check_positive("num_walkers", d["num_walkers"] if self.num_walkers is None
                           else self.num_walkers, integer=True)
        set_(self, "num_walkers", int(n))
        if self.step_size is not None:
            check_positive("step_size", self.step_size)
            set_(self, "step_size", _as_float("step_size", self.step_size))
        moves = d["num_moves"] if self.num_moves is None else self.num_moves
        set_(self, "num_moves", int(check_positive("num_moves", moves, integer=True)))
        set_(self, "num_leapfrog", int(check_positive(
            "num_leapfrog", 5 if self.num_leapfrog is None else self.num_leapfrog, integer=True)))
        set_(self, "max_stages", int(check_positive("max_stages", self.max_stages, integer=True)))
        accept = d["target_accept"] if self.target_accept is None else self.target_accept
        if not 0.0 < accept < 1.0:
            raise ValueError(f"target_accept must lie in (0, 1), got {accept!r}")
        set_(self, "target_accept", _as_float("target_accept", accept))
        if not 0.0 < self.target_ess < 1.0:
            raise ValueError(f"target_ess must lie in (0, 1), got {self.target_ess!r}")
        set_(self, "target_ess", _as_float("target_ess", self.target_ess))
        if not np.isfinite(self.resample_threshold) or self.resample_threshold < 0:
            raise ValueError(f"resample_threshold must be >= 0, got {self.resample_threshold!r}")
        set_(self, "resample_threshold", _as_float("resample_threshold", self.resample_threshold))
        jitter = d["step_jitter"] if self.step_jitter is None else self.step_jitter
        if not 0.0 <= jitter <= 5.0:
            raise ValueError(f"step_jitter must lie in [0, 5], got {jitter!r}")
        set_(self, "step_jitter", _as_float("step_jitter", jitter))
        set_(self, "adapt_step_size", not spins and (
            True if self.adapt_step_size is None else bool(self.adapt_step_size)))
        # keep_modes: the walkers' robust scale would mix the modes' widths (a narrow mode's
        # moves then take the broad one's steps), so no preconditioning unless asked for
        set_(self, "precondition", not self.keep_modes if self.precondition is None
             else bool(self.precondition))
        set_(self, "bar", bool(self.bar))
        set_(self, "progress_bar", bool(self.progress_bar))
        schedule = self.schedule
        if not isinstance(schedule, str | Adaptive):
            schedule = tuple(float(b) for b in np.asarray(schedule, dtype=np.float64).ravel()) \
                if np.ndim(schedule) == 1 else schedule
            set_(self, "schedule", schedule)
        if method not in ("is", "ti") or schedule != "adaptive":
            as_schedule(self.schedule_array_or_adaptive(schedule), self.num_stages,
                        self.target_ess)  # validate now, before any work
        # one pool by default (log_z_se from the genealogy); TI's error and the spins' are the
        # spread of independent groups
        keep = bool(self.keep_modes)
        if keep and method in ("is", "ti"):
            raise ValueError(f"keep_modes needs an annealing method with resampling, not "
                             f"method={method!r}")
        if keep and self.bias_check:
            raise ValueError("keep_modes takes its error bar from independent groups and has "
                             "no bias probe yet: leave bias_check unset (or False)")
        set_(self, "keep_modes", keep)
        spread = method == "ti" or spins
        g = (min(16, max(1, n // 64)) if spread else 1) if self.num_groups is None \
            else self.num_groups
        if keep and self.num_groups is None:
            g = _keep_modes_groups(n)
        g = check_positive("num_groups", g, integer=True)
        if n % g or (method != "is" and n // g < 2):
            raise ValueError(f"num_walkers={n} must be a multiple of num_groups={g} with at "
                             "least 2 walkers per group")
        set_(self, "num_groups", int(g))
        scheme = self.resampling or ("systematic" if spins else "multinomial")
        set_(self, "resampling", check_choice("resampling", scheme, RESAMPLING_SCHEMES))
        set_(self, "bias_check", not spins and not keep and (
            True if self.bias_check is None else bool(self.bias_check)))

    @staticmethod
    def schedule_array_or_adaptive(schedule):
        return np.asarray(schedule, dtype=np.float64) if isinstance(schedule, tuple) else schedule

    @property
    def spins(self) -> bool:
        """Whether the moves are spin sweeps (no step size, no gradients)."""
        return self.method in SPIN_METHODS

    def initial_step(self, dim: int) -> float:
        """The method's default first step (whitened units) in dimension ``dim``."""
        return float(METHOD_DEFAULTS[self.method]["step"](dim))

    def replace(self, **changes) -> AnnealOptions:
        """A validated copy with ``changes`` (e.g. the pilot run's walkers)."""
        return dataclasses.replace(self, **changes)

    def stage_key(self) -> tuple:
        """What the compiled stage depends on (hashable): the static key of its cache, so
        that runs differing only in walkers' data, key, initial step, schedule array, stage
        cap or progress output share one compiled program."""
        return (self.num_moves, self.resample_threshold, self.target_accept, self.step_jitter,
                self.adapt_gain, self.resampling)


@functools.partial(jax.jit, static_argnums=1)
def split_key(key, num: int = 2) -> tuple:
    """``tuple(jax.random.split(key, num))`` (the same keys) as one compiled program: eagerly,
    the split and the unstacking each compiled a program on a first call."""
    return tuple(jax.random.split(key, num))


PROBE_KEY_DATA = 15  # the bias probe's key: ``fold_in(run key, 15)``, split into (init, run)


@jax.jit
def run_keys(key) -> tuple:
    """The keys of one annealing run from its key, as one compiled program (eagerly, the
    probe's fold-in, split and unstacking compiled four programs on a first call): the
    initial draws', the forward pass's and the reverse pass's (``split(key, 3)``), then the
    bias probe's initial draws' and run's (``split(fold_in(key, 15))``)."""
    key_init, key_fwd, key_rev = jax.random.split(key, 3)
    probe_init, probe_run = jax.random.split(jax.random.fold_in(key, PROBE_KEY_DATA))
    return key_init, key_fwd, key_rev, probe_init, probe_run


@jax.jit
def entry_keys(key) -> tuple:
    """An entry point's keys from its key, as one compiled program: ``split(key)`` (the
    model's or the reference's key, and the run's key), then `run_keys` of the run's key
    (passed to `_run.run` as ``keys=``, so that a first call compiles one key program)."""
    first, key_run = jax.random.split(key)
    return (first, key_run) + run_keys(key_run)


def typed_key(key):
    """A new-style typed key from a typed key or raw uint32 key data (validated)."""
    key = check_key(key)
    if not jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.wrap_key_data(key)
    return key
