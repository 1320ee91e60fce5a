"""One adapter that turns a pure ``(init, step)`` kernel into a ``numpyro.infer.MCMC`` kernel.

:class:`ULA`, :class:`MALA` and :class:`RWMH` are three lines each on top of
:class:`PureKernelSampler`; new kernels (Jarzynski, spin kernels) reuse it the same way.
The adapter handles what NumPyro expects of a kernel: ``model=`` or ``potential_fn=``,
batched keys for ``chain_method="vectorized"``, ``postprocess_fn`` for constrained sites,
step-size adaptation during warmup (NumPyro's own dual averaging), warm restarts via
``mcmc.post_warmup_state``, and diagnostics collectable with ``extra_fields``.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from numpyro.infer.hmc_util import dual_averaging
from numpyro.infer.mcmc import MCMCKernel
from numpyro.infer.util import initialize_model, init_to_uniform
from numpyro.util import identity, is_prng_key

from .energy import Energy, _check_scalar_energy
from .errors import check_model_data, check_positive
from .kernels import (jarzynski_init, jarzynski_step, langevin_init, mala_step, rwmh_init,
                      rwmh_step, ula_step)


class SamplerState(NamedTuple):
    """State of a :class:`PureKernelSampler` chain; every field can go in ``extra_fields``.

    ``z`` is the sample in the user's structure; ``inner`` the pure kernel's state (flat).
    """

    i: jax.Array
    z: Any
    potential_energy: jax.Array
    accept_prob: jax.Array
    mean_accept_prob: jax.Array
    diverging: jax.Array
    num_divergent: jax.Array
    step_size: jax.Array
    adapt_state: Any
    inner: Any
    rng_key: jax.Array
    log_weight: Any = 0.0  # Jarzynski log weight A_k (eq. 102-103); 0 for unweighted kernels


class PureKernelSampler(MCMCKernel):
    """A NumPyro ``MCMCKernel`` built from a pure kernel.

    Args:
        model: a NumPyro model (exactly one of ``model`` / ``potential_fn``).
        potential_fn: U(z) of a pytree ``z`` (NumPyro's convention), or an
            :class:`~ebm_ppl.energy.Energy` / target; requires ``init_params`` in ``run``.
        step_size: initial step size (> 0).
        adapt_step_size: adapt the step during warmup toward ``target_accept_prob``.
        target_accept_prob: acceptance rate sought during warmup.
        init_strategy: NumPyro init strategy, used with ``model=``.
    """

    pure_init: Callable = staticmethod(langevin_init)
    pure_step: Callable = staticmethod(mala_step)
    default_target_accept_prob: float | None = 0.574

    def __init__(self, model=None, potential_fn=None, *, step_size: float = 0.1,
                 adapt_step_size: bool = True, target_accept_prob: float | None = None,
                 init_strategy=init_to_uniform):
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
        self._init_strategy = init_strategy
        self._postprocess_fn = None
        self._sample_fn = None

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
        vectorized = not is_prng_key(rng_key)
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
        sample_one = self._make_sample_fn(flat_potential, unravel, int(num_warmup))

        def init_one(params, key):
            flat, _ = ravel_pytree(params)
            flat = flat.astype(jnp.result_type(float)) if not jnp.issubdtype(
                flat.dtype, jnp.floating) else flat
            inner = self.pure_init(flat, flat_potential)
            da_init, _ = dual_averaging()
            step = jnp.asarray(self._step_size, flat.dtype)
            zero = jnp.zeros((), flat.dtype)
            return SamplerState(
                i=jnp.zeros((), jnp.int32), z=unravel(inner.position),
                potential_energy=inner.potential_energy, accept_prob=zero,
                mean_accept_prob=zero, diverging=jnp.array(False),
                num_divergent=jnp.zeros((), jnp.int32), step_size=step,
                adapt_state=da_init(jnp.log(10.0 * step)), inner=inner, rng_key=key,
                log_weight=getattr(inner, "log_weight", zero))

        if vectorized:
            state = jax.vmap(init_one)(init_params, rng_key)
            sample_one = jax.vmap(sample_one, in_axes=(0, None, None))
        else:
            state = init_one(init_params, rng_key)
        # always rebind: a kernel reused with another chain_method (vectorized <-> not) or
        # new init_params must not keep the previous run's (possibly vmapped) sample function
        self._sample_fn = sample_one
        return state

    def sample(self, state, model_args, model_kwargs):
        return self._sample_fn(state, model_args, model_kwargs)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_sample_fn"] = None
        return state

    # -- internals ------------------------------------------------------------------------
    def _potential_and_init(self, key, init_params, model_args, model_kwargs):
        if self._model is not None:
            check_model_data(model_args, model_kwargs)
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

    def _make_sample_fn(self, flat_potential, unravel, num_warmup):
        pure_step, adapt, target = self.pure_step, self._adapt, self._target
        _, da_update = dual_averaging()

        def sample_one(state: SamplerState, model_args, model_kwargs) -> SamplerState:
            key, key_step = jax.random.split(state.rng_key)
            inner, info = pure_step(key_step, state.inner, flat_potential, state.step_size)
            accept_prob = info.accept_prob.astype(state.accept_prob.dtype)
            step_size, adapt_state = state.step_size, state.adapt_state
            in_warmup = state.i < num_warmup
            if adapt:
                new_da = da_update(target - accept_prob, adapt_state)
                last = state.i == num_warmup - 1
                tuned = jnp.exp(jnp.where(last, new_da[1], new_da[0])).astype(step_size.dtype)
                step_size = jnp.where(in_warmup, tuned, step_size)
                adapt_state = jax.tree.map(lambda n, o: jnp.where(in_warmup, n, o),
                                           new_da, adapt_state)
            n_post = (state.i - num_warmup + 1).astype(accept_prob.dtype)
            mean_accept = jnp.where(
                in_warmup, accept_prob,
                state.mean_accept_prob + (accept_prob - state.mean_accept_prob) / jnp.maximum(n_post, 1))
            return SamplerState(
                i=state.i + 1, z=unravel(inner.position), potential_energy=inner.potential_energy,
                accept_prob=accept_prob, mean_accept_prob=mean_accept,
                diverging=info.is_divergent,
                num_divergent=state.num_divergent + info.is_divergent.astype(jnp.int32),
                step_size=step_size, adapt_state=adapt_state, inner=inner, rng_key=key,
                log_weight=getattr(inner, "log_weight", jnp.zeros_like(accept_prob)))

        return sample_one


class _FixedStepSampler(PureKernelSampler):
    """A kernel without a Metropolis test: nothing to adapt its step toward, so it keeps the
    ``step_size`` it is given (and takes no ``adapt_step_size``)."""

    default_target_accept_prob = None

    def __init__(self, model=None, potential_fn=None, *, step_size: float = 0.01,
                 init_strategy=init_to_uniform):
        super().__init__(model, potential_fn, step_size=step_size, adapt_step_size=False,
                         init_strategy=init_strategy)


class ULA(_FixedStepSampler):
    """Unadjusted Langevin algorithm (seed eq. 67) as a NumPyro kernel.

    ULA keeps the step it is given: it has no accept/reject step, so at any fixed
    ``step_size`` h its stationary law is biased (for a Gaussian target N(mu, Sigma) it is
    N(mu, Sigma (I - h Sigma^{-1}/2)^{-1}), seed Example 4.1, eq. 73). That bias is the
    point of teaching it; use :class:`MALA` or NUTS for exact sampling, or the Jarzynski
    kernel to reweight ULA exactly.
    """

    pure_init = staticmethod(langevin_init)
    pure_step = staticmethod(ula_step)


class MALA(PureKernelSampler):
    """Metropolis-adjusted Langevin algorithm (seed Definition 4.4) as a NumPyro kernel.

    The step adapts during warmup toward ``target_accept_prob`` (default 0.574, the optimal
    rate for MALA in high dimension) and is then frozen.
    """

    pure_init = staticmethod(langevin_init)
    pure_step = staticmethod(mala_step)
    default_target_accept_prob = 0.574


class RWMH(PureKernelSampler):
    """Random-walk Metropolis-Hastings (seed Definition 4.2) with a Gaussian proposal of
    scale ``step_size``, adapted during warmup toward acceptance 0.234."""

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
    warmup adaptation); annealing along a path of energies is :func:`ebm_ppl.log_partition`.
    """

    pure_init = staticmethod(jarzynski_init)
    pure_step = staticmethod(jarzynski_step)
