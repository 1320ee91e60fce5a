"""Parallel tempering (replica exchange) over any kernel of the library (seed section 4).

R replicas of a pure kernel run at inverse temperatures ``betas[0] = 1 > betas[1] > ...``, each
on the tempered energy ``beta_r U`` (a spin model keeps its fast local fields through its
``tempered`` method). After every round of moves, neighbouring rungs propose to exchange their
configurations with probability ``min(1, exp((beta_r - beta_{r+1}) (U(x_r) - U(x_{r+1}))))``;
even and odd pairs alternate (the deterministic even-odd scheme of Okabe et al. 2001 / Syed et
al. 2019, non-reversible, with better round trips than random pair choice). The kernel state
caches U (and grad U) of *its* temperature, so a swapped state is rescaled by beta_new /
beta_old when that is all it caches (Langevin, random-walk and spin kernels: a round costs one
kernel step per rung) and re-initialised at its new temperature otherwise.

Diagnostics: swap acceptance per neighbouring pair, and round trips: a configuration that
leaves the target rung (slot 0), reaches the hottest rung and comes back completes one.

* [`pt_init`][ebm_ppl.tempering.pt_init] / [`pt_step`][ebm_ppl.tempering.pt_step] -- the pure pair, for any
``(init, step)`` kernel.
* [`parallel_tempering`][ebm_ppl.tempering.parallel_tempering] -- a driver (chains, warmup with per-replica
step adaptation,
  progress bar) returning [`PTResult`][ebm_ppl.tempering.PTResult].
* [`ParallelTempering`][ebm_ppl.tempering.ParallelTempering] -- a ``numpyro.infer.MCMC`` kernel whose draws
are the target rung.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer.hmc_util import dual_averaging
from numpyro.infer.util import init_to_uniform
from tqdm.auto import tqdm

from .errors import check_finite_array, check_key, check_positive
from .mcmc import MALA, RWMH, ULA, PureKernelSampler
from .spins.kernels import check_spins
from .spins.samplers import SpinGibbs, SpinMetropolis

Array = jax.Array


def geometric_ladder(num_replicas: int = 8, beta_min: float = 0.1) -> np.ndarray:
    """``beta_r = beta_min^(r / (R - 1))``: from 1 (the target) down to ``beta_min``."""
    num_replicas = check_positive("num_replicas", num_replicas, integer=True)
    beta_min = check_positive("beta_min", beta_min)
    if num_replicas < 2 or beta_min >= 1.0:
        raise ValueError("a ladder needs num_replicas >= 2 and 0 < beta_min < 1, got "
                         f"num_replicas={num_replicas}, beta_min={beta_min}")
    return beta_min ** (np.arange(num_replicas) / (num_replicas - 1))


def check_ladder(betas) -> np.ndarray:
    """Validate a ladder: 1-D, finite, starts at 1, strictly decreasing, >= 0."""
    b = check_finite_array("betas", betas, ndim=1).astype(np.float64)
    if b.size < 2 or b[0] != 1.0 or np.any(np.diff(b) >= 0) or b[-1] < 0:
        raise ValueError("betas must start at 1 (the target) and strictly decrease to a value "
                         f">= 0 (at least 2 rungs), got {b.tolist()}")
    return b


def tempered(potential_fn: Callable, beta) -> Callable:
    """``beta * U``; uses ``potential_fn.tempered(beta)`` when the energy has one (spin models)."""
    method = getattr(potential_fn, "tempered", None)
    if method is not None:
        return method(beta)
    return lambda x: beta * potential_fn(x)


class PTState(NamedTuple):
    """State of one replica-exchange chain. ``replicas`` is a batch of kernel states (slot r
    runs at ``betas[r]``); ``position``/``potential_energy`` repeat slot 0 (the target)."""

    position: Array
    potential_energy: Array
    replicas: Any
    energies: Array            # (R,) untempered U at each slot
    walker_at_slot: Array      # (R,) which configuration (walker id) sits at slot r
    walker_label: Array        # (R,) per walker: 1 last extreme was cold, -1 hot after cold
    round_trips: Array         # completed cold -> hot -> cold trips
    swap_accept_sum: Array     # (R-1,) summed swap acceptance probabilities per pair
    swap_attempts: Array       # (R-1,) number of attempts per pair
    num_rounds: Array


class PTInfo(NamedTuple):
    accept_prob: Array          # mean inner acceptance over replicas
    replica_accept_prob: Array  # (R,)
    swap_accept_prob: Array     # (R-1,), 0 where no swap was attempted this round
    is_divergent: Array


def pt_init(positions: Array, potential_fn: Callable, betas, kernel_init: Callable) -> PTState:
    """Start R replicas at ``positions`` (shape ``(R, dim)``)."""
    betas = jnp.asarray(betas, positions.dtype)
    r = betas.shape[0]
    replicas = jax.vmap(lambda x, b: kernel_init(x, tempered(potential_fn, b)))(positions, betas)
    energies = jax.vmap(potential_fn)(positions)
    ids = jnp.arange(r, dtype=jnp.int32)
    zeros = jnp.zeros(r - 1, positions.dtype)
    return PTState(positions[0], energies[0], replicas, energies, ids,
                   jnp.zeros(r, jnp.int32).at[0].set(1), jnp.zeros((), jnp.int32), zeros,
                   zeros, jnp.zeros((), jnp.int32))


_LINEAR_FIELDS = ("potential_energy", "grad")  # cached quantities proportional to beta


def _positive_ladder(betas):
    """The ladder as numpy when it is concrete and every rung has beta > 0, else None."""
    try:
        b = np.asarray(betas, np.float64)
    except jax.errors.TracerArrayConversionError:
        return None
    return b if np.all(b > 0) else None


def _rescalable(replicas) -> bool:
    """Kernel states whose only potential-dependent fields are U and grad U (Langevin,
    random-walk, spin states): moved to another rung, they are rescaled, not re-initialised."""
    fields = getattr(type(replicas), "_fields", None)
    return (fields is not None and "potential_energy" in fields
            and set(fields) <= {"position", *_LINEAR_FIELDS})


def pt_step(key: Array, state: PTState, potential_fn: Callable, step_size, *, betas,
            kernel_step: Callable, kernel_init: Callable) -> tuple[PTState, PTInfo]:
    """One round: a kernel step in every replica, then one even or odd swap sweep.

    ``step_size`` is a scalar or one step per replica. When the ladder is concrete with all
    beta > 0 and the kernel state caches only U and grad U (Langevin, random-walk and spin
    kernels), the untempered energies are read from the states (``U = U_beta / beta``) and a
    swapped state is rescaled by ``beta_new / beta_old``: a round then costs one kernel step
    per rung. Otherwise U is evaluated at every rung and swapped rungs are re-initialised.
    """
    ladder = _positive_ladder(betas)
    betas = jnp.asarray(betas, state.energies.dtype)
    r = betas.shape[0]
    steps = jnp.broadcast_to(jnp.asarray(step_size, betas.dtype), (r,))
    key_move, key_swap = jax.random.split(key)

    def move(k, s, b, h):
        return kernel_step(k, s, tempered(potential_fn, b), h)

    replicas, info = jax.vmap(move)(jax.random.split(key_move, r), state.replicas, betas, steps)
    fast = ladder is not None and _rescalable(replicas)
    positions = replicas.position
    if fast:
        u = replicas.potential_energy / betas
    else:
        u = jax.vmap(potential_fn)(positions)

    pair = jnp.arange(r - 1)
    attempt = (pair % 2) == (state.num_rounds % 2)
    log_ratio = (betas[:-1] - betas[1:]) * (u[:-1] - u[1:])
    log_ratio = jnp.where(jnp.isnan(log_ratio), -jnp.inf, log_ratio)
    log_unif = jnp.log(jax.random.uniform(key_swap, (r - 1,), u.dtype))
    accept = attempt & (log_unif < log_ratio)
    src = jnp.arange(r)
    src = src.at[:-1].set(jnp.where(accept, pair + 1, src[:-1]))
    src = src.at[1:].set(jnp.where(accept, pair, src[1:]))
    changed = src != jnp.arange(r)

    positions, u = positions[src], u[src]
    moved = jax.tree.map(lambda a: a[src], replicas)
    if fast:
        ratio = betas / betas[src]
        replicas = moved._replace(**{
            f: getattr(moved, f) * ratio.reshape((r,) + (1,) * (getattr(moved, f).ndim - 1))
            for f in _LINEAR_FIELDS if f in type(moved)._fields})
    else:
        fresh = jax.vmap(lambda x, b: kernel_init(x, tempered(potential_fn, b)))(positions, betas)
        replicas = jax.tree.map(
            lambda a, b: jnp.where(changed.reshape((r,) + (1,) * (a.ndim - 1)), a, b),
            fresh, moved)

    walkers = state.walker_at_slot[src]
    label = state.walker_label
    trip = label[walkers[0]] == -1
    label = label.at[walkers[0]].set(1)
    label = label.at[walkers[-1]].set(jnp.where(label[walkers[-1]] == 1, -1, label[walkers[-1]]))
    swap_p = jnp.where(attempt, jnp.exp(jnp.minimum(log_ratio, 0.0)), 0.0)
    new = PTState(positions[0], u[0], replicas, u, walkers, label,
                  state.round_trips + trip.astype(jnp.int32), state.swap_accept_sum + swap_p,
                  state.swap_attempts + attempt.astype(u.dtype), state.num_rounds + 1)
    acc = info.accept_prob.astype(u.dtype)
    return new, PTInfo(jnp.mean(acc), acc, swap_p, jnp.any(info.is_divergent))


def swap_diagnostics(state: PTState) -> dict:
    """Swap acceptance per pair, round trips and round trips per round (batch dims allowed)."""
    rounds = np.maximum(np.asarray(state.num_rounds), 1)
    return {
        "swap_acceptance": np.asarray(state.swap_accept_sum)
        / np.maximum(np.asarray(state.swap_attempts), 1),
        "round_trips": np.asarray(state.round_trips),
        "round_trip_rate": np.asarray(state.round_trips) / rounds,
    }


# ---- the driver and the NumPyro kernel over the pure pair above ----


def _kernel_classes():
    return {"mala": MALA, "rwmh": RWMH, "ula": ULA, "metropolis": SpinMetropolis,
            "gibbs": SpinGibbs}


def resolve_kernel(kernel):
    """``(init, step, target_accept_prob or None, name, is_spin)`` for a name, a
    [`PureKernelSampler`][ebm_ppl.mcmc.PureKernelSampler] class or instance, or an ``(init, step)`` pair."""
    classes = _kernel_classes()
    if isinstance(kernel, str):
        if kernel not in classes:
            raise ValueError(f"unknown kernel {kernel!r}; valid choices are "
                             + ", ".join(repr(k) for k in classes))
        kernel = classes[kernel]
    if isinstance(kernel, PureKernelSampler):
        kernel = type(kernel)
    if isinstance(kernel, type) and issubclass(kernel, PureKernelSampler):
        spin = issubclass(kernel, (classes["gibbs"], classes["metropolis"]))
        return (kernel.pure_init, kernel.pure_step, kernel.default_target_accept_prob,
                kernel.__name__, spin)
    if isinstance(kernel, tuple) and len(kernel) == 2 and all(map(callable, kernel)):
        return kernel[0], kernel[1], None, "custom", False
    raise ValueError("kernel must be a name, a PureKernelSampler class or an (init, step) pair, "
                     f"got {kernel!r}")


@dataclass(frozen=True)
class PTResult:
    """Draws of the target rung and the tempering diagnostics of
    [`parallel_tempering`][ebm_ppl.tempering.parallel_tempering]."""

    samples: np.ndarray            # (chains, draws, dim) at beta = 1
    energies: np.ndarray           # (chains, draws, R) untempered U at every rung
    betas: np.ndarray              # (R,)
    swap_acceptance: np.ndarray    # (chains, R - 1) mean swap probability per neighbouring pair
    round_trips: np.ndarray        # (chains,) completed cold -> hot -> cold trips
    round_trip_rate: float         # round trips per round, averaged over chains
    accept_prob: np.ndarray        # (chains, R) mean acceptance of the kernel at each rung
    step_size: np.ndarray          # (chains, R) step used at each rung after warmup
    num_rounds: int                # sampling rounds per chain (draws * thinning)
    num_kernel_steps: int          # kernel steps, all chains, rungs and rounds (with warmup)
    kernel: str
    replica_samples: np.ndarray | None = None  # (chains, draws, R, dim) if keep_replicas
    traces: np.ndarray | None = None  # (chains, draws, R, ...) trace_fn at every rung

    def to_arviz(self):
        """ArviZ DataTree: ``posterior.z`` (target rung), ``sample_stats`` with its energy and
        the energy of every rung (dimension ``rung``)."""
        import arviz as az
        return az.from_dict(
            {"posterior": {"z": self.samples},
             "sample_stats": {"potential_energy": self.energies[..., 0],
                              "rung_energy": self.energies}},
            dims={"rung_energy": ["rung"]}, coords={"rung": np.arange(self.betas.size)})

    def __str__(self):
        acc = np.array2string(self.swap_acceptance.mean(0), precision=2, separator=", ")
        return (f"PTResult({self.kernel}, {self.samples.shape[0]} chains x "
                f"{self.samples.shape[1]} draws, {self.betas.size} rungs beta in "
                f"[{self.betas[-1]:.3g}, 1])\n  swap acceptance per pair: {acc}\n"
                f"  round trips per chain: {self.round_trips.tolist()} "
                f"(rate {self.round_trip_rate:.2e} per round)")


def _initial_positions(init_position, num_chains, r):
    x = np.asarray(init_position)
    if not np.issubdtype(x.dtype, np.number) or not np.all(np.isfinite(x)):
        raise ValueError("init_position must be a finite numeric array")
    x = x.astype(np.result_type(float))
    if x.ndim == 1:
        x = np.broadcast_to(x, (num_chains, r, x.size))
    elif x.ndim == 2:
        if x.shape[0] != r:
            raise ValueError(f"init_position of shape {x.shape}: a 2-D start needs one row per "
                             f"rung ({r})")
        x = np.broadcast_to(x, (num_chains,) + x.shape)
    elif x.ndim != 3 or x.shape[:2] != (num_chains, r):
        raise ValueError(f"init_position must have shape (dim,), (R, dim) or (num_chains, R, dim)"
                         f" = ({num_chains}, {r}, dim), got {x.shape}")
    return jnp.asarray(x)


def _check_potential(potential_fn, x):
    if not callable(potential_fn):
        raise ValueError(f"potential_fn must be callable, got {type(potential_fn).__name__}")
    try:
        value = potential_fn(x)
    except (TypeError, ValueError) as err:
        raise ValueError(f"potential_fn failed at init_position: {err}") from None
    shape, dtype = jnp.shape(value), jnp.result_type(value)
    if shape != () or not jnp.issubdtype(dtype, jnp.floating) or not bool(jnp.isfinite(value)):
        what = f"shape {shape}" if shape != () else f"{dtype} value {value}"
        raise ValueError(f"potential_fn must return a finite float scalar at init_position, "
                         f"got {what}")


def _chunk_sizes(warm, draws, progress_bar):
    """Chunk lengths (in draws): warmup then sampling, one length for both when possible so
    that the scan compiles once; about 10 chunks with a progress bar."""
    total, g = warm + draws, math.gcd(warm, draws)
    if g * 10 >= max(warm, draws):
        if progress_bar:
            d = max(d for d in range(1, g + 1) if g % d == 0 and d <= max(1, total // 10))
            g = d if d * 50 >= total else g
        return [g] * (total // g)

    def split(n):
        k = next(d for d in range(min(10, n), 0, -1) if n % d == 0) if progress_bar else 1
        return [n // k] * k
    return (split(warm) if warm else []) + split(draws)


def parallel_tempering(potential_fn, init_position, *, key, kernel="mala", betas=None,
                       num_replicas: int = 8, beta_min: float = 0.1, num_samples: int = 1000,
                       num_warmup: int = 500, thinning: int = 1, step_size=0.1,
                       adapt_step_size: bool = True, target_accept_prob: float | None = None,
                       num_chains: int = 1, keep_replicas: bool = False, trace_fn=None,
                       progress_bar: bool = True) -> PTResult:
    """Replica exchange over any kernel; returns the target rung's draws and diagnostics.

    Args:
        potential_fn: U on a flat position (a target, a function, or a spin model).
        init_position: ``(dim,)``, ``(R, dim)`` or ``(num_chains, R, dim)``.
        kernel: ``"mala"``, ``"rwmh"``, ``"ula"``, ``"metropolis"``, ``"gibbs"`` (spins), a
            [`PureKernelSampler`][ebm_ppl.mcmc.PureKernelSampler] class, or an ``(init, step)`` pair.
        betas: the ladder (``betas[0] = 1``, strictly decreasing); default
            [`geometric_ladder`][ebm_ppl.tempering.geometric_ladder] ``(num_replicas, beta_min)``.
        step_size: scalar (scaled by ``beta^-1/2`` per rung) or one per rung; adapted per rung
            during warmup toward ``target_accept_prob`` (the kernel's default) by dual averaging.
        keep_replicas: also return every rung's configurations (memory: draws x R x dim).
        trace_fn: ``position -> array`` recorded at every rung and draw (e.g. the
            magnetization), cheaper than ``keep_replicas``.
        thinning: rounds per recorded draw (warmup is rounded up to a multiple). One round =
            one kernel step at every rung + one
            swap sweep (+ one ``init`` per rung).
    """
    key = check_key(key)
    init_fn, step_fn, default_target, name, is_spin = resolve_kernel(kernel)
    betas = geometric_ladder(num_replicas, beta_min) if betas is None else check_ladder(betas)
    r = betas.size
    num_chains = check_positive("num_chains", num_chains, integer=True)
    num_samples = check_positive("num_samples", num_samples, integer=True)
    thinning = check_positive("thinning", thinning, integer=True)
    num_warmup = 0 if num_warmup == 0 else check_positive("num_warmup", num_warmup, integer=True)
    if trace_fn is not None and not callable(trace_fn):
        raise ValueError(f"trace_fn must be callable, got {type(trace_fn).__name__}")
    h = np.asarray(step_size, np.float64)
    if h.ndim == 0:
        h = check_positive("step_size", float(h)) * np.maximum(betas, 1e-12) ** -0.5
    elif h.shape != (r,) or np.any(~np.isfinite(h)) or np.any(h <= 0):
        raise ValueError(f"step_size must be a positive scalar or one per rung ({r},), got {h}")
    x0 = _initial_positions(init_position, num_chains, r)
    if is_spin:
        check_spins("init_position", np.asarray(x0))
    _check_potential(potential_fn, x0[0, 0])
    target = default_target if target_accept_prob is None else target_accept_prob
    adapt = bool(adapt_step_size and target is not None and num_warmup > 0)
    if adapt and not 0.0 < target < 1.0:
        raise ValueError(f"target_accept_prob must lie in (0, 1), got {target!r}")

    dtype = x0.dtype
    betas_j, h_j = jnp.asarray(betas, dtype), jnp.asarray(h, dtype)
    da_init, da_update = dual_averaging()
    kw = dict(betas=betas, kernel_step=step_fn, kernel_init=init_fn)  # numpy: see pt_step

    def one_round(carry, k, adapting):
        pt, da, log_h = carry
        pt, info = pt_step(k, pt, potential_fn,
                           jnp.exp(jnp.where(adapting, da[0], log_h)), **kw)
        if adapt:
            new_da = jax.vmap(da_update)(target - info.replica_accept_prob, da)
            da = jax.tree.map(lambda a, b: jnp.where(adapting, a, b), new_da, da)
        return (pt, da, log_h), info.replica_accept_prob

    @partial(jax.jit, static_argnums=(3,))
    def run(carry, keys, adapting, thin):
        def draw(carry, k):
            carry, acc = jax.lax.scan(partial(one_round, adapting=adapting), carry,
                                      jax.random.split(k, thin))
            pt = carry[0]
            x = pt.replicas.position if keep_replicas else pt.position
            tr = jnp.zeros(()) if trace_fn is None else jax.vmap(trace_fn)(pt.replicas.position)
            return carry, (x, pt.energies, jnp.mean(acc, 0), tr)
        return jax.vmap(lambda c, ks: jax.lax.scan(draw, c, ks))(carry, keys)

    @jax.jit
    def start(x0, log_h):
        pt = jax.vmap(lambda x: pt_init(x, potential_fn, betas_j, init_fn))(x0)
        da = jax.vmap(jax.vmap(da_init))(jnp.log(10.0) + log_h)
        return pt, da, log_h

    @jax.jit
    def end_warmup(carry):
        pt, da, log_h = carry
        log_h = da[1] if adapt else log_h
        zero = jnp.zeros_like(pt.swap_accept_sum)
        label = jax.vmap(lambda w: jnp.zeros(r, jnp.int32).at[w[0]].set(1))(pt.walker_at_slot)
        pt = pt._replace(swap_accept_sum=zero, swap_attempts=zero, num_rounds=0 * pt.num_rounds,
                         round_trips=0 * pt.round_trips, walker_label=label)
        return pt, da, log_h

    key, key_run = jax.random.split(key)
    carry = start(x0, jnp.broadcast_to(jnp.log(h_j), (num_chains, r)))
    warm_draws = -(-num_warmup // thinning)
    sizes = _chunk_sizes(warm_draws, num_samples, progress_bar)
    bar = None
    if progress_bar:
        bar = tqdm(total=(warm_draws + num_samples) * thinning, desc=f"PT {name} x{r}")
    outs, done = [], 0
    for size in sizes:
        if done == warm_draws and warm_draws:
            carry = end_warmup(carry)
        key_run, sub = jax.random.split(key_run)
        carry, out = run(carry, jax.random.split(sub, (num_chains, size)),
                         jnp.asarray(done < warm_draws), thinning)
        if done >= warm_draws:
            outs.append(jax.device_get(out))
        done += size
        bar is not None and bar.update(size * thinning)
    bar is not None and bar.close()
    x, energies, acc, traces = (np.concatenate(parts, axis=1) for parts in zip(*outs))
    pt, _, log_h = carry
    diag = swap_diagnostics(pt)
    return PTResult(
        samples=x[:, :, 0] if keep_replicas else x, energies=energies, betas=betas,
        swap_acceptance=diag["swap_acceptance"], round_trips=diag["round_trips"],
        round_trip_rate=float(np.mean(diag["round_trip_rate"])), accept_prob=acc.mean(1),
        step_size=np.exp(np.asarray(log_h)), num_rounds=num_samples * thinning,
        num_kernel_steps=num_chains * r * (num_warmup + num_samples * thinning), kernel=name,
        replica_samples=x if keep_replicas else None,
        traces=None if trace_fn is None else traces)


class ParallelTempering(PureKernelSampler):
    """Replica exchange as a ``numpyro.infer.MCMC`` kernel; draws are the target rung (beta=1).

    ``kernel`` is any [`PureKernelSampler`][ebm_ppl.mcmc.PureKernelSampler] class (``ep.MALA``, ``ep.RWMH``,
    ``ep.spins.SpinGibbs``, ...). One NumPyro step is one round (a kernel step at every rung and
    a swap sweep). The scalar ``step_size`` is adapted during warmup on the mean acceptance
    over rungs; rung r uses ``step_size * betas[r]^-1/2``. The tempering diagnostics are in
    ``mcmc.last_state.inner`` (see [`diagnostics`][ebm_ppl.diagnostics]).
    """

    def __init__(self, model=None, potential_fn=None, *, kernel=MALA, betas=None,
                 num_replicas: int = 8, beta_min: float = 0.1, step_size: float = 0.1,
                 adapt_step_size: bool = True, target_accept_prob: float | None = None,
                 init_strategy=init_to_uniform):
        init_fn, step_fn, default_target, _, _ = resolve_kernel(kernel)
        self.default_target_accept_prob = default_target
        super().__init__(model, potential_fn, step_size=step_size,
                         adapt_step_size=adapt_step_size and default_target is not None,
                         target_accept_prob=target_accept_prob, init_strategy=init_strategy)
        self.betas = (geometric_ladder(num_replicas, beta_min) if betas is None
                      else check_ladder(betas))
        scale = np.maximum(self.betas, 1e-12) ** -0.5
        # a spin model keeps its local fields only if tempered itself, not through the flat wrapper
        own = potential_fn if hasattr(potential_fn, "tempered") else None

        def pure_init(position, flat_potential):
            positions = jnp.broadcast_to(position, (self.betas.size,) + position.shape)
            return pt_init(positions, own or flat_potential,
                           jnp.asarray(self.betas, position.dtype), init_fn)

        def pure_step(key, state, flat_potential, step):
            new, info = pt_step(key, state, own or flat_potential,
                                step * jnp.asarray(scale, state.energies.dtype),
                                betas=self.betas,
                                kernel_step=step_fn, kernel_init=init_fn)
            return new, info

        self.pure_init, self.pure_step = pure_init, pure_step

    @staticmethod
    def diagnostics(state) -> dict:
        """Swap acceptance per pair and round trips of a state (e.g. ``mcmc.last_state``)."""
        inner = getattr(state, "inner", state)
        if not isinstance(inner, PTState):
            raise ValueError("state is not a ParallelTempering state")
        return swap_diagnostics(inner)


__all__ = ["geometric_ladder", "check_ladder", "tempered", "PTState", "PTInfo", "pt_init",
           "pt_step", "swap_diagnostics", "parallel_tempering", "PTResult", "ParallelTempering"]
