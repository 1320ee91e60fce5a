"""The spin sweeps as ``numpyro.infer.MCMC`` kernels.

They subclass [`PureKernelSampler`][ebm_ppl.mcmc.PureKernelSampler] (one adapter for every kernel of the
library): vectorized / parallel chains, warm restarts and ``extra_fields`` come from it. Two
differences, both set here: a spin kernel has no step to adapt, and the sweep must see the
*spin model itself* (its local fields and colours), not the flat wrapper ``lambda x: U(x)`` the
adapter builds, so the pure functions are bound to the model at construction. Spins are a
flat float vector of +-1 (or any shape the model accepts, e.g. ``(L, L)`` is flattened);
NumPyro models with discrete sites are not supported (``model=`` raises).
"""

from __future__ import annotations

from functools import partial

import jax

from ..mcmc import PureKernelSampler
from .kernels import check_spins, gibbs_sweep, metropolis_sweep, spin_init


def _bound_init(model, position, _flat_potential):
    return spin_init(position, model)


def _bound_step(sweep, model, key, state, _flat_potential, step_size):
    return sweep(key, state, model, step_size)


class _SpinSampler(PureKernelSampler):
    pure_init = staticmethod(spin_init)
    pure_step = staticmethod(gibbs_sweep)
    default_target_accept_prob = None

    def __init__(self, model=None, potential_fn=None):
        if model is not None:
            raise ValueError("spin samplers take potential_fn= (a spin model such as "
                             "ep.spins.Ising, or a function of a +-1 vector), not model=")
        if potential_fn is None:
            raise ValueError("potential_fn is required (a spin model or a function of +-1 spins)")
        super().__init__(potential_fn=potential_fn, step_size=1.0, adapt_step_size=False)
        self.pure_init = partial(_bound_init, potential_fn)
        self.pure_step = partial(_bound_step, type(self).pure_step, potential_fn)

    def init(self, rng_key, num_warmup, init_params=None, model_args=(), model_kwargs=None):
        if init_params is not None and not any(
                isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(init_params)):
            check_spins("init_params", init_params)  # under pmap the values are abstract
        return super().init(rng_key, num_warmup, init_params, model_args, model_kwargs)

    def get_diagnostics_str(self, state):
        return f"flip prob={float(state.mean_accept_prob):.2f}"


class SpinMetropolis(_SpinSampler):
    """Single-spin-flip Metropolis sweeps (checkerboard on lattices) as a NumPyro kernel.

    Example::

        model = ep.spins.Ising(16, T=2.5)
        mcmc = MCMC(ep.spins.SpinMetropolis(potential_fn=model), num_warmup=500, num_samples=2000)
        mcmc.run(key, init_params=model.random_spins(key))
    """

    pure_step = staticmethod(metropolis_sweep)


class SpinGibbs(_SpinSampler):
    """Heat-bath Gibbs sweeps (checkerboard on lattices) as a NumPyro kernel."""

    pure_step = staticmethod(gibbs_sweep)
