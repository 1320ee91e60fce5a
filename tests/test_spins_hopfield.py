"""Hopfield networks: Hebbian storage (eq. 109) and retrieval (eq. 110) (issue 5, acceptance 5)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_ppl import spins


def _retrieve(p, seed, n=100, fraction=0.1, synchronous=True):
    k1, k2 = jax.random.split(jax.random.key(seed))
    xi = spins.random_patterns(k1, p, n)
    net = spins.Hopfield(patterns=xi)
    noisy = spins.corrupt(k2, xi, fraction)
    assert np.all(np.sum(np.asarray(noisy) != np.asarray(xi), axis=1) == round(fraction * n))
    x, iters, converged = net.retrieve(noisy, synchronous=synchronous)
    return net, np.asarray(xi), np.asarray(noisy), np.asarray(x), np.asarray(converged)


def test_hebbian_couplings():
    xi = np.asarray(spins.random_patterns(jax.random.key(0), 3, 20))
    net = spins.Hopfield(patterns=xi)
    expected = xi.T @ xi / 20
    np.fill_diagonal(expected, 0)
    np.testing.assert_allclose(net.J, expected)
    assert net.load == 3 / 20
    np.testing.assert_allclose(net.overlaps(xi[0])[0], 1.0)


@pytest.mark.parametrize("synchronous", [True, False])
def test_low_load_retrieves_every_pattern_exactly(synchronous):
    for seed in range(3):  # P = 5 on N = 100: every corrupted pattern comes back exactly
        _, xi, _, x, ok = _retrieve(5, seed, synchronous=synchronous)
        np.testing.assert_array_equal(x, xi)
        assert np.all(ok)


def test_high_load_fails_for_most_patterns():
    net, xi, noisy, x, _ = _retrieve(30, 0)
    exact = np.all(x == xi, axis=1)
    assert exact.mean() < 0.5, exact.mean()
    # and the stored patterns themselves are no longer fixed points (beyond capacity)
    x_fixed, _, _ = net.retrieve(xi)
    assert np.mean(np.all(np.asarray(x_fixed) == xi, axis=1)) < 0.5


def test_asynchronous_dynamics_descends_the_energy():
    net, _, noisy, x, ok = _retrieve(30, 1, synchronous=False)
    assert np.all(ok)  # sequential updates always reach a fixed point
    h0 = np.asarray(net.hamiltonian(jnp.asarray(noisy)))
    h1 = np.asarray(net.hamiltonian(jnp.asarray(x)))
    assert np.all(h1 <= h0 + 1e-12) and np.all(h1 < h0)
    assert np.all(np.asarray(net.flip_delta(jnp.asarray(x))) >= -1e-12)  # local minima of H


def test_retrieval_curve_shows_the_capacity():
    curve = spins.retrieval_curve(jax.random.key(0), loads=(0.05, 0.3), num_trials=2)
    assert curve["exact_fraction"][0] == 1.0 and curve["exact_fraction"][1] < 0.5
    assert curve["mean_overlap"][0] > curve["mean_overlap"][1]


def test_hopfield_bad_input():
    net = spins.Hopfield(patterns=np.ones((1, 4)))
    with pytest.raises(ValueError, match="x0"):
        net.retrieve(np.zeros(4))
    with pytest.raises(ValueError, match="spins in its last axis"):
        net.retrieve(np.ones(5))
    with pytest.raises(ValueError, match="J from the patterns"):
        spins.Hopfield(J=np.zeros((4, 4)), patterns=np.ones((1, 4)))
    with pytest.raises(ValueError, match="fraction"):
        spins.corrupt(jax.random.key(0), np.ones((1, 4)), 1.5)
