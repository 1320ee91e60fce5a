"""One adapter that turns a pure ``(init, step)`` kernel into a ``numpyro.infer.MCMC`` kernel.

[`ULA`][ebm_ppl.mcmc.ULA], [`MALA`][ebm_ppl.mcmc.MALA] and [`RWMH`][ebm_ppl.mcmc.RWMH] are three lines each on
top of
[`PureKernelSampler`][ebm_ppl.mcmc.PureKernelSampler]; new kernels (Jarzynski, spin kernels) reuse it the same
way.
The adapter handles what NumPyro expects of a kernel: ``model=`` or ``potential_fn=``,
batched keys for ``chain_method="vectorized"``, ``postprocess_fn`` for constrained sites,
step-size and mass-matrix adaptation during warmup (NumPyro's own ``warmup_adapter``, its
``adapt_state`` convention), model arguments passed to every step (``jit_model_args=True``),
warm restarts via ``mcmc.post_warmup_state``, diagnostics collectable with ``extra_fields``,
and a warning when a chain's draws become non-finite.
"""

from __future__ import annotations

import warnings
from collections import namedtuple
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from numpyro import handlers
from numpyro.infer.hmc_util import build_adaptation_schedule, dual_averaging, warmup_adapter
from numpyro.infer.mcmc import MCMCKernel
from numpyro.infer.util import initialize_model, init_to_uniform
from numpyro.util import identity, is_prng_key

from .energy import Energy, _check_scalar_energy
from .errors import check_model_data, check_positive
from .kernels import (jarzynski_init, jarzynski_step, langevin_init, mala_step, rwmh_init,
                      rwmh_step, ula_step)
from .kernels.metric import Metric, make_metric


class NonFiniteDrawWarning(UserWarning):
    """A chain's draws became NaN or infinite: they are not samples of the target."""


class StateFieldError(AttributeError):
    """A field asked of a [`SamplerState`][ebm_ppl.mcmc.SamplerState] (e.g. in ``extra_fields``) that it does
    not have."""


_FIELDS = ("i", "z", "potential_energy", "accept_prob", "mean_accept_prob", "diverging",
           "num_divergent", "step_size", "adapt_state", "inner", "rng_key", "log_weight")


class _StateFields:
    __slots__ = ()

    def __getitem__(self, index):
        # NumPyro's extra_fields lookup falls back to state[name] after an AttributeError
        if isinstance(index, str):
            return self.__getattr__(index)
        return super().__getitem__(index)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        valid = ", ".join(self._fields) + (
            ", adapt_state.step_size, adapt_state.inverse_mass_matrix")
        extra = (" 'energy' (the Hamiltonian, for E-BFMI) is defined for ep.MALA only: the"
                 " other kernels have no momentum." if name == "energy" else "")
        raise StateFieldError(
            f"{type(self).__name__} has no field {name!r}.{extra} Fields you can collect with "
            f"mcmc.run(..., extra_fields=...): {valid}")


class SamplerState(_StateFields, namedtuple("SamplerState", _FIELDS, defaults=(0.0,))):
    """State of a [`PureKernelSampler`][ebm_ppl.mcmc.PureKernelSampler] chain; every field can go in
    ``extra_fields``.

    ``z`` is the sample in the user's structure; ``inner`` the pure kernel's state (flat);
    ``diverging`` flags a divergent step or a non-finite draw; ``adapt_state`` is NumPyro's
    ``HMCAdaptState`` (``adapt_state.step_size``, ``adapt_state.inverse_mass_matrix``, the
    same convention as NUTS, so ``extra_fields=("adapt_state.step_size",)`` works and
    ``az.from_numpyro`` shows ``sample_stats.step_size``); ``log_weight`` is the Jarzynski
    log weight A_k (eq. 102-103), 0 for unweighted kernels. Asking for a field it lacks
    (e.g. ``energy`` of a kernel without momentum) raises [`StateFieldError`][ebm_ppl.mcmc.StateFieldError]
    naming the
    valid ones.
    """

    __slots__ = ()


class LangevinSamplerState(_StateFields, namedtuple("LangevinSamplerState",
                                                    _FIELDS + ("energy",), defaults=(0.0, 0.0))):
    """[`SamplerState`][ebm_ppl.mcmc.SamplerState] of [`MALA`][ebm_ppl.mcmc.MALA], plus ``energy``: the
    Hamiltonian
    ``U + |p|^2/2`` after the step of the one-leapfrog HMC that MALA is (ArviZ's
    ``sample_stats.energy``, used by the E-BFMI diagnostic)."""

    __slots__ = ()


def _check_rng_key(rng_key):
    """A single key, or a batch of keys (``chain_method="vectorized"``); else a ValueError."""
    if is_prng_key(rng_key):
        return False
    if isinstance(rng_key, jax.Array | np.ndarray):
        if jax.dtypes.issubdtype(rng_key.dtype, jax.dtypes.prng_key) and rng_key.ndim == 1:
            return True
        if rng_key.dtype == np.uint32 and rng_key.ndim == 2 and rng_key.shape[-1] == 2:
            return True
    raise ValueError(
        f"rng_key must be a JAX random key, e.g. mcmc.run(jax.random.PRNGKey(0), ...) or "
        f"jax.random.key(0) (or a batch of num_chains keys), got {rng_key!r:.60}")


def _check_continuous_model(model, model_args, model_kwargs, key):
    """Discrete latent sites cannot be moved by gradient or random-walk kernels: say so."""
    try:
        trace = handlers.trace(handlers.seed(model, key)).get_trace(*model_args, **model_kwargs)
    except Exception:  # noqa: BLE001 - initialize_model reports model errors with context
        return
    discrete = [name for name, site in trace.items()
                if site["type"] == "sample" and not site["is_observed"]
                and getattr(site["fn"], "support", None) is not None
                and site["fn"].support.is_discrete
                and not site.get("infer", {}).get("enumerate")]
    if discrete:
        raise ValueError(
            f"the model has discrete latent site(s) {discrete}: ep kernels move continuous "
            "latents only. Marginalize them out in the model (sum over their values, e.g. a "
            "MixtureSameFamily likelihood), or sample them with NumPyro's DiscreteHMCGibbs / "
            "MixedHMC around NUTS; for +-1 spin systems use ep.spins.SpinGibbs.")


# With chain_method="sequential" or "parallel" (and one chain) NumPyro runs the kernel on one
# chain at a time without its index (a key per chain, under a Python loop or pmap), and calls
# nothing of the kernel after the run: the warning says how to find the chain instead.
_UNNAMED_CHAIN = (
    "a chain (chain_method='sequential'/'parallel' runs the kernel without the chain's index; "
    "np.flatnonzero(mcmc.get_extra_fields(group_by_chain=True)['diverging'].any(axis=1)) "
    "lists the chains with divergent draws, and chain_method='vectorized' names them here)")


def _check_dense_mass(dense_mass):
    """``True``/``False``, or NumPyro's list of tuples of site names (returned as a list)."""
    if isinstance(dense_mass, bool | np.bool_):
        return None
    if (isinstance(dense_mass, list) and dense_mass
            and all(isinstance(b, tuple) and b and all(isinstance(n, str) for n in b)
                    for b in dense_mass)):
        return dense_mass
    raise ValueError(
        f"dense_mass must be True, False or a non-empty list of tuples of site names (NumPyro's "
        f"form, e.g. [('a', 'b')]), got {dense_mass!r}")


def _block_mask(blocks, example):
    """The (d, d) boolean pattern of a mass matrix dense among the sites of each block and
    diagonal elsewhere, on the flat (``ravel_pytree``) coordinates of ``example``."""
    if not isinstance(example, dict):
        raise ValueError("dense_mass as a list of site names needs a model (model=...); with "
                         "potential_fn= use dense_mass=True or False")
    sizes = {name: int(np.size(v)) for name, v in example.items()}
    unknown = sorted({n for b in blocks for n in b} - set(sizes))
    if unknown:
        raise ValueError(f"dense_mass names site(s) {unknown} that are not latent sites of the "
                         f"model; its latent sites are {sorted(sizes)}")
    # ravel_pytree flattens a dict in jax.tree order: sorted keys
    offsets, start = {}, 0
    for name in sorted(sizes):
        offsets[name] = np.arange(start, start + sizes[name])
        start += sizes[name]
    mask = np.eye(start, dtype=bool)
    for block in blocks:
        idx = np.concatenate([offsets[n] for n in block])
        mask[np.ix_(idx, idx)] = True
    return mask


def _metric_updated(num_warmup):
    """``(t, window) -> bool``: whether warmup step ``t`` ends a middle window of NumPyro's
    schedule (``build_adaptation_schedule``), i.e. whether its adapter updates the mass
    matrix there."""
    schedule = build_adaptation_schedule(num_warmup)
    num_windows = len(schedule)
    window_ends = jnp.asarray([w.end for w in schedule])

    def updated(t, window):
        return (t == window_ends[window]) & (window > 0) & (window < num_windows - 1)

    return updated


def _block_diagonal_mass(wa_update, num_warmup, mask):
    """NumPyro's list-of-sites ``dense_mass``: its adapter runs dense (a full Welford estimate,
    whose entries within a block are exactly the block's sample covariances) and, at each
    mass-matrix update, the off-block entries are zeroed and the square roots recomputed
    (NumPyro's ``_initialize_mass_matrix``, via [`make_metric`][ebm_ppl.kernels.metric.make_metric]).
    The regularization NumPyro applies is elementwise, so the result is NumPyro's block
    estimate."""
    metric_updated = _metric_updated(num_warmup)
    mask_j = jnp.asarray(mask)

    def update(t, accept_prob, z_info, state):
        new = wa_update(t, accept_prob, z_info, state)
        updated = metric_updated(t, state.window_idx)

        def to_blocks(a):
            metric = make_metric(jnp.where(mask_j, a.inverse_mass_matrix, 0.0), dense=True)
            return a._replace(inverse_mass_matrix=metric.inverse_mass_matrix,
                              mass_matrix_sqrt=metric.mass_matrix_sqrt,
                              mass_matrix_sqrt_inv=metric.mass_matrix_sqrt_inv)

        return jax.lax.cond(updated, to_blocks, identity, new)

    return update


def _warn_nonfinite(name, num_warmup, vectorized, newly_bad, i):
    newly_bad = np.atleast_1d(np.asarray(newly_bad))
    i = np.atleast_1d(np.asarray(i))
    for c in np.flatnonzero(newly_bad):
        it = int(i[c] if i.size > 1 else i[0])
        where = (f"warmup iteration {it}" if it < num_warmup
                 else f"draw {it - num_warmup} after {num_warmup} warmup iterations")
        chain = f"chain {c}" if vectorized else _UNNAMED_CHAIN
        warnings.warn(
            f"{name}: {chain} produced a non-finite (NaN/inf) draw at {where}; every later draw "
            "of it is counted in 'diverging' and is not a sample of the target. Use a smaller "
            "step_size (e.g. half of it), or ep.MALA, whose Metropolis test rejects such moves, "
            "instead of ep.ULA / ep.Jarzynski.", NonFiniteDrawWarning, stacklevel=2)


class PureKernelSampler(MCMCKernel):
    """A NumPyro ``MCMCKernel`` built from a pure kernel.

    Args:
        model: a NumPyro model (exactly one of ``model`` / ``potential_fn``).
        potential_fn: U(z) of a pytree ``z`` (NumPyro's convention), or an
            [`Energy`][ebm_ppl.energy.Energy] / target; requires ``init_params`` in ``run``.
        step_size: initial step size (> 0).
        adapt_step_size: adapt the step during warmup toward ``target_accept_prob``.
        target_accept_prob: acceptance rate sought during warmup.
        adapt_mass_matrix: adapt a mass matrix (preconditioner) during warmup with NumPyro's
            windowed schedule and Welford estimator (``numpyro.infer.hmc_util.warmup_adapter``,
            the one NUTS uses); it is fixed after warmup. Kernels without a mass matrix
            (spin sweeps, parallel tempering) ignore it.
        dense_mass: a dense mass matrix instead of a diagonal one; or NumPyro's list of
            tuples of site names, e.g. ``[("a", "b")]``: dense among the sites of each tuple,
            diagonal elsewhere (a block-diagonal M; with ``model=`` only).
        inverse_mass_matrix: the initial (or, without adaptation, fixed) ``M^-1``: a vector
            (diagonal) or a matrix (dense); the identity when omitted.
        init_strategy: NumPyro init strategy, used with ``model=``.
    """

    pure_init: Callable = staticmethod(langevin_init)
    pure_step: Callable = staticmethod(mala_step)
    default_target_accept_prob: float | None = 0.574
    supports_mass_matrix: bool = False
    state_class: type = SamplerState

    def __init__(self, model=None, potential_fn=None, *, step_size: float = 0.1,
                 adapt_step_size: bool = True, target_accept_prob: float | None = None,
                 adapt_mass_matrix: bool = False, dense_mass: bool | list = False,
                 inverse_mass_matrix=None, init_strategy=init_to_uniform):
        if (model is None) == (potential_fn is None):
            raise ValueError("give exactly one of model= or potential_fn=")
        if potential_fn is not None and not callable(potential_fn):
            raise ValueError(f"potential_fn must be callable, got {type(potential_fn).__name__}")
        self._model = model
        self._energy = potential_fn if isinstance(potential_fn, Energy) else getattr(
            potential_fn, "energy", None)
        self._user_potential = potential_fn
        self._step_size = check_positive("step_size", step_size)
        target = self.default_target_accept_prob if target_accept_prob is None else target_accept_prob
        if adapt_step_size and target is not None and not 0.0 < target < 1.0:
            raise ValueError(f"target_accept_prob must lie in (0, 1), got {target!r}")
        self._adapt = bool(adapt_step_size and target is not None)
        self._target = target
        self._dense_blocks = _check_dense_mass(dense_mass)
        self._dense_mass = bool(dense_mass)
        self._adapt_mass = bool(adapt_mass_matrix) and self.supports_mass_matrix
        self._inverse_mass_matrix = self._check_inverse_mass_matrix(inverse_mass_matrix)
        self._init_strategy = init_strategy
        self._postprocess_fn = None
        self._potential_gen = None
        self._sample_fn = None

    def _check_inverse_mass_matrix(self, imm):
        if imm is None:
            return None
        if not self.supports_mass_matrix:
            raise ValueError(f"{type(self).__name__} has no mass matrix: drop inverse_mass_matrix=")
        arr = np.asarray(imm, dtype=float)
        if arr.ndim not in (1, 2) or (arr.ndim == 2 and arr.shape[0] != arr.shape[1]):
            raise ValueError("inverse_mass_matrix must be a vector (diagonal) or a square matrix, "
                             f"got shape {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError("inverse_mass_matrix contains NaN or inf")
        if arr.ndim == 1 and np.any(arr <= 0):
            raise ValueError("inverse_mass_matrix (diagonal) must be > 0")
        if arr.ndim == 2 and (not np.allclose(arr, arr.T)
                              or np.min(np.linalg.eigvalsh(arr)) <= 0):
            raise ValueError("inverse_mass_matrix must be symmetric positive definite")
        if arr.ndim == 2:
            self._dense_mass = True
        return arr

    # -- NumPyro's MCMCKernel interface -------------------------------------------------
    @property
    def model(self):
        return self._model

    @property
    def sample_field(self):
        return "z"

    @property
    def default_fields(self):
        return ("z", "diverging")

    def get_diagnostics_str(self, state):
        return f"step size {float(state.step_size):.2e}. acc. prob={float(state.mean_accept_prob):.2f}"

    def postprocess_fn(self, model_args, model_kwargs):
        if self._postprocess_fn is None:
            return identity
        return self._postprocess_fn(*model_args, **model_kwargs)

    def init(self, rng_key, num_warmup, init_params=None, model_args=(), model_kwargs=None):
        model_kwargs = {} if model_kwargs is None else model_kwargs
        vectorized = _check_rng_key(rng_key)
        num_chains = rng_key.shape[0] if vectorized else None
        split = jax.vmap(jax.random.split) if vectorized else jax.random.split
        keys = split(rng_key)
        rng_key, key_model = (keys[:, 0], keys[:, 1]) if vectorized else (keys[0], keys[1])
        potential_fn, init_params = self._potential_and_init(
            key_model, init_params, model_args, model_kwargs)
        example = jax.tree.map(lambda x: x[0], init_params) if vectorized else init_params
        if vectorized:
            self._check_leading_dim(init_params, num_chains)
        flat_example, unravel = ravel_pytree(example)
        self._check_init_point(potential_fn, example)
        if vectorized:
            self._check_every_chain(potential_fn, init_params)
        flat_potential = lambda x: potential_fn(unravel(x))  # noqa: E731
        num_warmup = int(num_warmup)
        wa_init, wa_update = self._adapter(num_warmup)
        if self._dense_blocks is not None and self._adapt_mass:
            wa_update = _block_diagonal_mass(wa_update, num_warmup,
                                             _block_mask(self._dense_blocks, example))
        sample_one = self._make_sample_fn(unravel, num_warmup, wa_update)
        imm = self._inverse_mass_matrix
        if imm is not None and imm.shape[-1] != flat_example.size:
            raise ValueError(f"inverse_mass_matrix has size {imm.shape[-1]} but the sampler has "
                             f"{flat_example.size} unconstrained coordinates")

        def init_one(params, key):
            flat, _ = ravel_pytree(params)
            flat = flat.astype(jnp.result_type(float)) if not jnp.issubdtype(
                flat.dtype, jnp.floating) else flat
            inner = self.pure_init(flat, flat_potential)
            step = jnp.asarray(self._step_size, flat.dtype)
            zero = jnp.zeros((), flat.dtype)
            key, key_adapt = jax.random.split(key)
            grad = getattr(inner, "grad", jnp.zeros_like(flat))
            adapt_state = wa_init((flat, inner.potential_energy, grad), key_adapt, step_size=step,
                                  inverse_mass_matrix=None if imm is None
                                  else jnp.asarray(imm, flat.dtype),
                                  mass_matrix_size=flat.size)
            fields = dict(
                i=jnp.zeros((), jnp.int32), z=unravel(inner.position),
                potential_energy=inner.potential_energy, accept_prob=zero,
                mean_accept_prob=zero, diverging=jnp.array(False),
                num_divergent=jnp.zeros((), jnp.int32), step_size=step,
                adapt_state=adapt_state, inner=inner, rng_key=key,
                log_weight=getattr(inner, "log_weight", zero))
            if self.state_class is LangevinSamplerState:
                fields["energy"] = inner.potential_energy
            return self.state_class(**fields)

        name = f"ep.{type(self).__name__}"
        if vectorized:
            state = jax.vmap(init_one)(init_params, rng_key)
            # every chain is at the same iteration and adaptation window: keep the iteration
            # and the window index unbatched inside the vmap, so the adapter's conds (warmup
            # or not, window end or not) stay real conds and not selects that would run the
            # step-size search and the mass-matrix update at every step
            axes = jax.tree.map(lambda _: 0, state)
            axes = axes._replace(i=None, adapt_state=axes.adapt_state._replace(window_idx=None))
            batched = jax.vmap(sample_one, in_axes=(axes, None, None, None), out_axes=axes)

            def sample_fn(state, model_args, model_kwargs):
                n = state.i.shape[0]
                shared = state._replace(i=state.i[0], adapt_state=state.adapt_state._replace(
                    window_idx=state.adapt_state.window_idx[0]))
                new = batched(shared, model_args, model_kwargs, shared.i < num_warmup)
                new = new._replace(i=jnp.broadcast_to(new.i, (n,)),
                                   adapt_state=new.adapt_state._replace(window_idx=jnp.broadcast_to(
                                       new.adapt_state.window_idx, (n,))))
                return _report_nonfinite(name, num_warmup, True, state, new)
        else:
            state = init_one(init_params, rng_key)

            def sample_fn(state, model_args, model_kwargs):
                new = sample_one(state, model_args, model_kwargs, state.i < num_warmup)
                return _report_nonfinite(name, num_warmup, False, state, new)
        # always rebind: a kernel reused with another chain_method (vectorized <-> not) or
        # new init_params must not keep the previous run's (possibly vmapped) sample function
        self._sample_fn = sample_fn
        return state

    def sample(self, state, model_args, model_kwargs):
        return self._sample_fn(state, model_args, model_kwargs)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_sample_fn"] = None
        return state

    # -- internals ------------------------------------------------------------------------
    def _adapter(self, num_warmup):
        """NumPyro's warmup adapter (dual averaging + windowed Welford mass matrix), with the
        step-size part of `_steadier_step_adaptation`."""
        wa_init, wa_update = warmup_adapter(
            num_warmup, find_reasonable_step_size=_restart_at_current_step,
            adapt_step_size=self._adapt, adapt_mass_matrix=self._adapt_mass,
            dense_mass=self._dense_mass,
            target_accept_prob=self._target if self._target is not None else 0.8)
        if not self._adapt:
            return wa_init, wa_update
        return wa_init, _steadier_step_adaptation(wa_update, num_warmup, self._target)

    def _potential_and_init(self, key, init_params, model_args, model_kwargs):
        if self._model is not None:
            check_model_data(model_args, model_kwargs)
            _check_continuous_model(self._model, model_args, model_kwargs, key)
            try:
                info, potential_gen, postprocess_gen, _ = initialize_model(
                    key, self._model, init_strategy=self._init_strategy, dynamic_args=True,
                    model_args=model_args, model_kwargs=model_kwargs, validate_grad=False)
            except (TypeError, ValueError, KeyError) as err:
                raise ValueError(f"the model failed with the given data: {err}") from None
            except RuntimeError as err:  # NumPyro: "Cannot find valid initial parameters"
                raise ValueError(f"cannot initialize the model: {err}") from None
            if self._postprocess_fn is None:
                self._postprocess_fn = postprocess_gen
            self._potential_gen = potential_gen
            potential_fn = potential_gen(*model_args, **model_kwargs)
            return potential_fn, info.z if init_params is None else init_params
        if init_params is None:
            raise ValueError("init_params is required with potential_fn= (one point per chain)")
        return self._user_potential, jax.tree.map(jnp.asarray, init_params)

    @staticmethod
    def _check_leading_dim(init_params, num_chains):
        for leaf in jax.tree.leaves(init_params):
            if jnp.ndim(leaf) == 0 or jnp.shape(leaf)[0] != num_chains:
                raise ValueError(
                    f"init_params has leading dimension {jnp.shape(leaf)[:1]} but "
                    f"chain_method='vectorized' runs {num_chains} chains: give one row per chain")

    def _check_init_point(self, potential_fn, example):
        if self._energy is not None:
            size = ravel_pytree(example)[0].size
            if size != self._energy.dim:
                raise ValueError(
                    f"init_params has {size} coordinates per chain but the energy has dim="
                    f"{self._energy.dim} (for several chains, the leading dimension must be "
                    "num_chains)")
        try:
            value = potential_fn(example)
        except (TypeError, ValueError) as err:
            raise ValueError(f"potential_fn failed at init_params: {err}") from None
        if jnp.shape(value) != ():
            raise ValueError(
                f"potential_fn returned shape {jnp.shape(value)} at init_params, not a scalar: "
                "either the potential returns a vector or init_params has an extra leading "
                "dimension (with several chains it must equal num_chains)")
        if not isinstance(value, jax.core.Tracer):  # under pmap the values are abstract
            _check_scalar_energy(value, "init_params")

    @staticmethod
    def _check_every_chain(potential_fn, init_params):
        """Every chain must start at a finite energy, not only the first one checked above."""
        values = jax.vmap(potential_fn)(init_params)
        if isinstance(values, jax.core.Tracer):
            return
        bad = np.flatnonzero(~np.isfinite(np.asarray(values)))
        if bad.size:
            raise ValueError(f"potential_fn is not finite at init_params of chain(s) "
                             f"{bad[:10].tolist()}")

    def _make_sample_fn(self, unravel, num_warmup, wa_update):
        """One step: the potential is rebuilt from ``model_args`` at every call (as NumPyro's
        HMC does), so ``jit_model_args=True`` reruns on new data reuse the compiled step."""
        pure_step, state_class = self.pure_step, self.state_class
        metric_kw = self.supports_mass_matrix
        adapt_any = self._adapt or self._adapt_mass
        gen, fixed = self._potential_gen, self._user_potential

        def sample_one(state, model_args, model_kwargs, in_warmup):
            potential_fn = fixed if gen is None else gen(*model_args, **model_kwargs)
            flat_potential = lambda x: potential_fn(unravel(x))  # noqa: E731
            key, key_step = jax.random.split(state.rng_key)
            adapt_state = state.adapt_state
            if metric_kw:
                metric = Metric(adapt_state.inverse_mass_matrix, adapt_state.mass_matrix_sqrt,
                                adapt_state.mass_matrix_sqrt_inv)
                inner, info = pure_step(key_step, state.inner, flat_potential, state.step_size,
                                        metric)
            else:
                inner, info = pure_step(key_step, state.inner, flat_potential, state.step_size)
            accept_prob = info.accept_prob.astype(state.accept_prob.dtype)
            step_size = state.step_size
            if adapt_any:
                grad = getattr(inner, "grad", jnp.zeros_like(inner.position))
                adapt_state = jax.lax.cond(
                    in_warmup,
                    lambda a: wa_update(state.i, accept_prob,
                                        (inner.position, inner.potential_energy, grad), a),
                    identity, adapt_state)
                step_size = adapt_state.step_size.astype(step_size.dtype)
            n_post = (state.i - num_warmup + 1).astype(accept_prob.dtype)
            mean_accept = jnp.where(
                in_warmup, accept_prob,
                state.mean_accept_prob + (accept_prob - state.mean_accept_prob) / jnp.maximum(n_post, 1))
            nonfinite = ~jnp.all(jnp.isfinite(inner.position))
            diverging = info.is_divergent | nonfinite
            fields = dict(
                i=state.i + 1, z=unravel(inner.position), potential_energy=inner.potential_energy,
                accept_prob=accept_prob, mean_accept_prob=mean_accept, diverging=diverging,
                num_divergent=state.num_divergent + diverging.astype(jnp.int32),
                step_size=step_size, adapt_state=adapt_state, inner=inner, rng_key=key,
                log_weight=getattr(inner, "log_weight", jnp.zeros_like(accept_prob)))
            if state_class is LangevinSamplerState:
                fields["energy"] = jnp.asarray(info.energy, inner.potential_energy.dtype)
            return state_class(**fields)

        return sample_one


def _restart_at_current_step(step_size, inverse_mass_matrix, z_info, rng_key):
    """The warmup adapter starts dual averaging at log(10 x) of what this returns: a tenth of
    the initial step makes it start AT that step. Above it MALA/RWMH acceptance collapses far
    faster than HMC's, and NumPyro's HMC search (one trajectory from the current point) is too
    noisy for a random walk; dual averaging itself moves the log step by tens within a window
    when the target needs it."""
    return step_size / 10.0


# t0 of the dual averaging in the final (end-buffer) window: NumPyro's t0 = 10 is for a search
# from scratch; here it only refines a step already averaged over the previous windows.
FINAL_WINDOW_T0 = 100.0


def _steadier_step_adaptation(wa_update, num_warmup, target_accept_prob):
    """Wrap NumPyro's ``warmup_adapter`` update with a step-size schedule whose final step
    hits ``target_accept_prob`` for MALA and RWMH too (NumPyro's dual averaging of Hoffman &
    Gelman 2014, eq. 6, is reused; only its restarts and damping change).

    NumPyro restarts dual averaging at each mass-matrix update from the *last* iterate
    (times 10, for HMC) and ends warmup on the average of the 50-step final window. For a
    random walk at acceptance 0.234 the acceptance is convex in log step: the spread of the
    dual-averaging iterates (large with t0 = 10 in a short window) makes the averaged step
    too large (Jensen), and RWMH sampled at 0.18 instead of 0.234. Here (1) each restart is
    centred on the *averaged* step of the window just finished, and (2) the final window,
    which only refines that step, runs dual averaging with t0 = ``FINAL_WINDOW_T0`` (damped
    iterates); warmup still ends on the window's averaged step, as in NumPyro. Mass-matrix
    adaptation and the window schedule are NumPyro's, unchanged.
    """
    num_windows = len(build_adaptation_schedule(num_warmup))
    metric_updated = _metric_updated(num_warmup)
    ss_init, ss_update = dual_averaging()
    _, ss_update_final = dual_averaging(t0=FINAL_WINDOW_T0)
    # with a single window (warmup < 20) there is no earlier step to refine: NumPyro's t0
    damp_final = num_windows >= 3

    def update(t, accept_prob, z_info, state):
        new = wa_update(t, accept_prob, z_info, state)
        g = target_accept_prob - accept_prob
        window = state.window_idx
        ss = ss_update(g, state.ss_state)
        if damp_final:
            ss_final = ss_update_final(g, state.ss_state)
            ss = jax.tree.map(lambda a, b: jnp.where(window == num_windows - 1, a, b),
                              ss_final, ss)
        log_step = jnp.where(t == num_warmup - 1, ss[1], ss[0])
        # at the end of a middle window the metric changes: restart at the averaged step
        restart = metric_updated(t, window)
        fresh = ss_init(ss[1])
        ss = jax.tree.map(lambda a, b: jnp.where(restart, a, b), fresh, ss)
        log_step = jnp.where(restart, fresh[4], log_step)
        finfo = jnp.finfo(jnp.result_type(new.step_size))
        step_size = jnp.clip(jnp.exp(log_step), finfo.tiny, finfo.max).astype(new.step_size.dtype)
        return new._replace(step_size=step_size, ss_state=ss)

    return update


def _report_nonfinite(name, num_warmup, vectorized, old, new):
    """Warn (once per chain, at its first non-finite draw) from inside the compiled loop."""
    def finite(state):
        pos = state.inner.position
        return jnp.all(jnp.isfinite(pos.reshape(pos.shape[0], -1) if vectorized else pos),
                       axis=-1)

    newly_bad = finite(old) & ~finite(new)
    jax.lax.cond(jnp.any(newly_bad),
                 lambda: jax.debug.callback(
                     lambda b, i: _warn_nonfinite(name, num_warmup, vectorized, b, i),
                     newly_bad, new.i - 1),
                 lambda: None)
    return new


class _FixedStepSampler(PureKernelSampler):
    """A kernel without a Metropolis test: nothing to adapt its step toward, so it keeps the
    ``step_size`` it is given (and takes no ``adapt_step_size``). An optional preconditioner:
    a fixed ``inverse_mass_matrix=``, or ``adapt_mass_matrix=True`` to estimate it during
    warmup with NumPyro's windowed Welford scheme; either way it is fixed after warmup."""

    default_target_accept_prob = None
    supports_mass_matrix = True

    def __init__(self, model=None, potential_fn=None, *, step_size: float = 0.01,
                 adapt_mass_matrix: bool = False, dense_mass: bool | list = False,
                 inverse_mass_matrix=None, init_strategy=init_to_uniform):
        super().__init__(model, potential_fn, step_size=step_size, adapt_step_size=False,
                         adapt_mass_matrix=adapt_mass_matrix, dense_mass=dense_mass,
                         inverse_mass_matrix=inverse_mass_matrix, init_strategy=init_strategy)


class _AdaptiveSampler(PureKernelSampler):
    """A Metropolis-corrected kernel: step size (dual averaging) and mass matrix (diagonal by
    default, ``dense_mass=True`` for a dense one) adapted during warmup as NUTS does, with
    NumPyro's ``warmup_adapter`` and windowed schedule, then fixed."""

    supports_mass_matrix = True

    def __init__(self, model=None, potential_fn=None, *, step_size: float = 0.1,
                 adapt_step_size: bool = True, target_accept_prob: float | None = None,
                 adapt_mass_matrix: bool = True, dense_mass: bool | list = False,
                 inverse_mass_matrix=None, init_strategy=init_to_uniform):
        super().__init__(model, potential_fn, step_size=step_size,
                         adapt_step_size=adapt_step_size, target_accept_prob=target_accept_prob,
                         adapt_mass_matrix=adapt_mass_matrix, dense_mass=dense_mass,
                         inverse_mass_matrix=inverse_mass_matrix, init_strategy=init_strategy)


class ULA(_FixedStepSampler):
    """Unadjusted Langevin algorithm (seed eq. 67) as a NumPyro kernel.

    ULA keeps the step it is given: it has no accept/reject step, so at any fixed
    ``step_size`` h its stationary law is biased (for a Gaussian target N(mu, Sigma) it is
    N(mu, Sigma (I - h Sigma^{-1}/2)^{-1}), seed Example 4.1, eq. 73). That bias is the
    point of teaching it; use [`MALA`][ebm_ppl.mcmc.MALA] or NUTS for exact sampling, or the Jarzynski
    kernel to reweight ULA exactly. A chain that explodes (non-finite draws) is flagged in
    ``diverging`` and warned about ([`NonFiniteDrawWarning`][ebm_ppl.mcmc.NonFiniteDrawWarning]).
    """

    pure_init = staticmethod(langevin_init)
    pure_step = staticmethod(ula_step)


class MALA(_AdaptiveSampler):
    """Metropolis-adjusted Langevin algorithm (seed Definition 4.4) as a NumPyro kernel.

    During warmup the step adapts toward ``target_accept_prob`` (default 0.574, the optimal
    rate for MALA in high dimension) and a diagonal mass matrix M (``dense_mass=True``: dense)
    is estimated with NumPyro's windowed scheme, as NUTS does; both are then frozen. The
    proposal is ``x' = x - h M^-1 grad U(x) + sqrt(2h) M^-1/2 xi`` and the same M enters the
    forward and reverse proposal densities of the Metropolis test (seed eq. 78), so the
    chain is exact for any M. ``extra_fields=("energy",)`` gives the Hamiltonian of the
    one-leapfrog HMC step MALA is (for ArviZ's E-BFMI).

    For correlated posteriors pass ``dense_mass=True``: a diagonal M cannot undo a
    correlation, and MALA's diffusive moves need O(kappa) gradients per independent draw
    (kappa the condition number of the covariance left after preconditioning) where NUTS needs
    O(sqrt(kappa)). On a 2-D Gaussian with correlation 0.99 (kappa = 199) diagonal MALA gets
    0.15x NUTS's bulk ESS per gradient, dense MALA 44x (``benchmarks/RESULTS.md``).
    """

    pure_init = staticmethod(langevin_init)
    pure_step = staticmethod(mala_step)
    default_target_accept_prob = 0.574
    state_class = LangevinSamplerState


class RWMH(_AdaptiveSampler):
    """Random-walk Metropolis-Hastings (seed Definition 4.2) with a Gaussian proposal
    ``x' = x + s M^-1/2 xi``: the scale ``s`` (``step_size``) is adapted during warmup toward
    acceptance 0.234 and the mass matrix M as in [`MALA`][ebm_ppl.mcmc.MALA]."""

    pure_init = staticmethod(rwmh_init)
    pure_step = staticmethod(rwmh_step)
    default_target_accept_prob = 0.234


class Jarzynski(_FixedStepSampler):
    """ULA with the Jarzynski log weight of seed eq. 102-103, as a NumPyro kernel.

    At a fixed energy the walkers move by ULA (biased at any step) while ``log_weight`` (in the
    state: collect it with ``mcmc.run(..., extra_fields=("log_weight",))``) accumulates the
    log Metropolis ratio ULA skips. If the chains start from exact draws of exp(-U)/Z,
    self-normalized averages over chains at step k weighted by ``exp(log_weight)`` are exact
    expectations (eq. 104), although the unweighted ones show ULA's bias. The step is fixed (no
    warmup adaptation); annealing along a path of energies is
    [`ebm_ppl.log_partition`][ebm_ppl.log_partition].
    A fixed ``inverse_mass_matrix=`` preconditions the moves and keeps the weights exact (it
    enters both proposal densities of the increment); ``adapt_mass_matrix=True`` estimates it
    during warmup, and the weights accumulated while it changes are then only approximate.
    """

    pure_init = staticmethod(jarzynski_init)
    pure_step = staticmethod(jarzynski_step)
