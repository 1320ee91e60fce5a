"""Parallel tempering over continuous and spin kernels (issue 5, acceptance 3)."""

from typing import NamedTuple

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer import MCMC

import ebm_ppl as ep
from ebm_ppl import spins
from ebm_ppl.tempering import (ParallelTempering, geometric_ladder, parallel_tempering,
                               pt_init, pt_step)


def test_geometric_ladder_and_validation():
    b = geometric_ladder(5, 0.01)
    np.testing.assert_allclose(b, [1, 0.1 ** 0.5, 0.1, 0.1 ** 1.5, 0.01])
    for bad in ([0.5, 0.1], [1.0, 1.0], [1.0], [1.0, 0.5, 0.7], [1.0, -0.1]):
        with pytest.raises(ValueError, match="betas"):
            parallel_tempering(lambda x: jnp.sum(x ** 2), np.zeros(1), key=jax.random.key(0),
                               betas=bad, progress_bar=False)
    with pytest.raises(ValueError, match="num_replicas"):
        geometric_ladder(1)


@pytest.mark.parametrize("kwargs, match", [
    (dict(kernel="nope"), "kernel"), (dict(step_size=-1.0), "step_size"),
    (dict(num_samples=0), "num_samples"), (dict(init=np.zeros((3, 1))), "rung"),
    (dict(init=np.array([np.nan])), "finite"), (dict(key=0), "key"),
    (dict(potential=lambda x: x), "scalar"), (dict(kernel="gibbs", init=np.array([0.5])), "spins"),
])
def test_bad_input(kwargs, match):
    potential = kwargs.pop("potential", lambda x: jnp.sum(x ** 2))
    init = kwargs.pop("init", np.zeros(1))
    key = kwargs.pop("key", jax.random.key(0))
    with pytest.raises(ValueError, match=match):
        parallel_tempering(potential, init, key=key, num_replicas=4, progress_bar=False, **kwargs)


def test_round_trips_and_swap_rates_match_a_reference_count():
    """On a flat energy every swap is accepted: the even/odd sweeps move configurations
    deterministically, and the round trips must equal an independent count."""
    r, rounds = 5, 37
    state = pt_init(jnp.zeros((r, 1)), lambda x: 0.0 * jnp.sum(x), geometric_ladder(r, 0.1),
                    ep.kernels.rwmh_init)
    step = jax.jit(lambda k, s: pt_step(k, s, lambda x: 0.0 * jnp.sum(x), 0.1,
                                        betas=geometric_ladder(r, 0.1),
                                        kernel_step=ep.kernels.rwmh_step,
                                        kernel_init=ep.kernels.rwmh_init)[0])
    for k in jax.random.split(jax.random.key(0), rounds):
        state = step(k, state)
    slot_of = list(range(r))  # reference: walker w sits at slot_of[w]
    last = {w: ("cold" if w == 0 else None) for w in range(r)}
    trips = 0
    for t in range(rounds):
        for p in range(t % 2, r - 1, 2):
            a, b = slot_of.index(p), slot_of.index(p + 1)
            slot_of[a], slot_of[b] = p + 1, p
        cold, hot = slot_of.index(0), slot_of.index(r - 1)
        trips += last[cold] == "hot"
        last[cold] = "cold"
        if last[hot] == "cold":
            last[hot] = "hot"
    assert trips > 0 and int(state.round_trips) == trips
    np.testing.assert_array_equal(np.asarray(state.walker_at_slot), np.argsort(slot_of))
    d = ep.tempering.swap_diagnostics(state)
    np.testing.assert_allclose(d["swap_acceptance"], 1.0)


class _Wrapped(NamedTuple):  # a MALA state with one more field: forces re-initialisation
    position: jax.Array
    potential_energy: jax.Array
    grad: jax.Array
    extra: jax.Array


def _wrapped_init(x, u):
    return _Wrapped(*ep.kernels.langevin_init(x, u), jnp.zeros(()))


def _wrapped_step(key, state, u, h):
    inner = ep.kernels.LangevinState(state.position, state.potential_energy, state.grad)
    new, info = ep.kernels.mala_step(key, inner, u, h)
    return _Wrapped(*new, state.extra), info


def test_rescaled_swaps_match_reinitialised_swaps():
    """The fast path (U = U_beta / beta, swapped states rescaled) and the generic one (U
    re-evaluated, swapped rungs re-initialised) give the same chain."""
    target = ep.targets.tilted_double_well(5.0)
    betas = geometric_ladder(5, 0.05)
    x0 = jnp.linspace(-1.0, 1.0, 5)[:, None]

    def run(init, step):
        def body(st, k):
            st, info = pt_step(k, st, target, 0.1, betas=betas, kernel_step=step,
                               kernel_init=init)
            return st, info.swap_accept_prob
        st = pt_init(x0, target, betas, init)
        return jax.jit(lambda ks: jax.lax.scan(body, st, ks))(
            jax.random.split(jax.random.key(2), 300))

    fast, p_fast = run(ep.kernels.langevin_init, ep.kernels.mala_step)
    slow, p_slow = run(_wrapped_init, _wrapped_step)
    np.testing.assert_allclose(fast.replicas.position, slow.replicas.position, rtol=1e-9)
    np.testing.assert_allclose(fast.replicas.grad, slow.replicas.grad, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(p_fast, p_slow, rtol=1e-9, atol=1e-12)
    assert int(fast.round_trips) == int(slow.round_trips) and float(np.sum(p_fast)) > 10


def test_every_rung_samples_its_temperature_ising_l4():
    """Swaps must leave the joint law invariant: each rung's energy matches enumeration."""
    model = spins.Ising(4, T=2.0)
    betas = np.array([1.0, 0.8, 0.6, 0.45])
    res = parallel_tempering(model, np.ones(16), key=jax.random.key(3), kernel="metropolis",
                             betas=betas, num_samples=1000, num_warmup=100, num_chains=8,
                             progress_bar=False)
    for k, b in enumerate(betas):
        e = res.energies[..., k] / model.beta / 16
        exact = spins.enumerate_exact(spins.Ising(4, T=2.0 / b)).energy_per_spin
        assert abs(e.mean() - exact) < 4 * float(az.mcse(e)), (b, e.mean(), exact)
    assert np.all(res.swap_acceptance > 0.2) and np.all(res.round_trips > 0)
    assert res.to_arviz().posterior.z.shape == (8, 1000, 16)
    assert "swap acceptance" in str(res)


def test_double_well_pt_recovers_left_mass_where_mala_does_not():
    """Acceptance 3a: a = 10 (barrier ~10). All chains start in the minority (right) well."""
    target = ep.targets.tilted_double_well(10.0)
    truth = target.mode_masses[0]
    assert abs(truth - 0.8762847873) < 1e-6
    chains, warm, draws = 16, 1000, 4000
    res = parallel_tempering(target, np.array([1.0]), key=jax.random.key(0), kernel="mala",
                             num_replicas=8, beta_min=0.03, num_samples=draws, num_warmup=warm,
                             num_chains=chains, progress_bar=False)
    left = (res.samples[..., 0] < target.barrier).astype(float)
    se = float(az.mcse(left))
    assert abs(left.mean() - truth) < min(0.01, 4 * se), (left.mean(), se)
    assert np.all(res.round_trips > 10)
    # plain MALA chains of the same cost (8 rungs x one MALA step per round: swapped states
    # are rescaled, not re-initialised), with the step PT adapted for its target rung
    steps = 8 * (warm + draws)

    def mala_left(key, h):
        def body(c, k):
            st, n = c
            st, _ = ep.kernels.mala_step(k, st, target, h)
            return (st, n + (st.position[0] < target.barrier).astype(jnp.int32)), None
        st = ep.kernels.langevin_init(jnp.ones(1), target)
        n0 = jnp.zeros((), jnp.int32)
        return jax.lax.scan(body, (st, n0), jax.random.split(key, steps))[0][1] / steps

    single = jax.jit(jax.vmap(mala_left))(jax.random.split(jax.random.key(1), chains),
                                          jnp.asarray(res.step_size[:, 0]))
    assert abs(float(np.mean(single)) - truth) > 0.3, single


def _ising16(chains, draws, key):
    model = spins.Ising(16, T=2.0)
    return model, parallel_tempering(model, np.ones(256), key=jax.random.key(key),
                                     kernel="gibbs", num_replicas=12, beta_min=0.55,
                                     num_samples=draws, num_warmup=200, num_chains=chains,
                                     progress_bar=False)


def _check_ising16(model, res, tol):
    pos = (res.samples.mean(-1) > 0).astype(float)
    se = float(az.mcse(pos))
    assert abs(pos.mean() - 0.5) < min(tol, 4 * se), (pos.mean(), se)
    assert np.all((pos.mean(1) > 0) & (pos.mean(1) < 1))  # every chain visits both states
    e = res.energies[..., 0] / model.beta / model.dim
    exact = spins.ising_exact(16, 2.0).energy_per_spin
    assert abs(e.mean() - exact) < 4 * float(az.mcse(e))
    return pos


def test_ising_l16_below_tc_pt_visits_both_magnetizations():
    """Acceptance 3b, reduced (the full 0.05 criterion is the slow test below)."""
    model, res = _ising16(chains=8, draws=1500, key=0)
    _check_ising16(model, res, tol=0.15)
    assert np.all(res.round_trips > 0)
    # the same cost without swaps: heat-bath chains started all-up, one draw per 12 sweeps
    # (12 rungs x one sweep per PT round); they rarely tunnel, so the fraction of draws with
    # m > 0 stays far from 1/2
    def chain(key):
        def draw(st, k):
            st, _ = jax.lax.scan(lambda s, kk: (spins.gibbs_sweep(kk, s, model)[0], None), st,
                                 jax.random.split(k, 12))
            return st, jnp.mean(st.position)
        return jax.lax.scan(draw, spins.spin_init(jnp.ones(256), model),
                            jax.random.split(key, 1700))[1]

    m = np.asarray(jax.jit(jax.vmap(chain))(jax.random.split(jax.random.key(1), 8)))
    assert abs(np.mean(m > 0) - 0.5) > 0.25, np.mean(m > 0, axis=1)
    flips_single = np.sum(np.diff(np.sign(m), axis=1) != 0)
    flips_pt = np.sum(np.diff(np.sign(res.samples.mean(-1)), axis=1) != 0)
    assert flips_pt > 20 * max(flips_single, 1), (flips_pt, flips_single)


@pytest.mark.slow
def test_ising_l16_below_tc_pt_full_criterion():
    model, res = _ising16(chains=32, draws=4000, key=1)
    _check_ising16(model, res, tol=0.05)


def test_numpyro_parallel_tempering_kernel():
    target = ep.targets.tilted_double_well(5.0)

    def run(method, warm, draws):
        kernel = ParallelTempering(potential_fn=target, kernel=ep.MALA, num_replicas=6,
                                   beta_min=0.05)
        mcmc = MCMC(kernel, num_warmup=warm, num_samples=draws, num_chains=4,
                    chain_method=method, progress_bar=False)
        mcmc.run(jax.random.key(0), init_params=np.ones((4, 1)), extra_fields=("accept_prob",))
        return mcmc

    # (chain methods share the adapter, checked in test_spins.py and test_kernels.py; long
    # sequential and vectorized runs drift apart by rounding, which swaps amplify)
    mcmc = run("vectorized", 300, 2000)
    z = np.asarray(mcmc.get_samples())
    left = (z[:, 0] < target.barrier).reshape(4, -1).astype(float)
    assert abs(left.mean() - target.mode_masses[0]) < 4 * float(az.mcse(left))
    d = ParallelTempering.diagnostics(mcmc.last_state)
    assert d["swap_acceptance"].shape == (4, 5) and np.all(d["round_trips"] > 0)


def test_numpyro_parallel_tempering_over_spins():
    model = spins.Ising(4, T=spins.T_CRITICAL)
    kernel = ParallelTempering(potential_fn=model, kernel=spins.SpinGibbs, betas=[1.0, 0.7, 0.5])
    mcmc = MCMC(kernel, num_warmup=100, num_samples=2000, num_chains=4,
                chain_method="vectorized", progress_bar=False)
    mcmc.run(jax.random.key(0), init_params=np.ones((4, 16)))
    z = mcmc.get_samples(group_by_chain=True)
    e = np.asarray(model.hamiltonian(z)) / 16
    exact = spins.ising_exact(4, spins.T_CRITICAL).energy_per_spin
    assert abs(e.mean() - exact) < 4 * float(az.mcse(e))
