"""Teaching claims of the tutorials that a reader can check (issue 17)."""

import sys
from pathlib import Path

import jax
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def hopfield_example():
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import hopfield_boltzmann
    finally:
        sys.path.pop(0)
    states, p_data, protos = hopfield_boltzmann.data_distribution(np.random.default_rng(0))
    return hopfield_boltzmann, states, p_data, protos


@pytest.mark.parametrize("iters", [200, pytest.param(600, marks=pytest.mark.slow)],
                         ids=["quick", "full"])
def test_exact_gradient_boltzmann_machine_decreases_kl_monotonically(hopfield_example, iters):
    """The exact-gradient baseline of examples/hopfield_boltzmann.py: its KL never rises
    (the learning rate is below 1/lambda_max of the Fisher information), in the example's
    quick (200) and full (600) runs, and it reaches the data's minority mass."""
    hb, states, p_data, protos = hopfield_example
    kl, minority, truth = hb.fit(states, p_data, protos, "exact", jax.random.key(1), iters)
    steps = np.diff(kl)
    assert np.all(steps <= 1e-12), f"KL rises at iterations {np.flatnonzero(steps > 1e-12)[:5]}"
    assert kl[-1] < 0.06 and abs(minority[-1] - truth) < 0.01, (kl[-1], minority[-1], truth)


def test_the_old_learning_rate_would_oscillate(hopfield_example):
    """The check above can fail: lr = 0.1 (above 2 / lambda_max ~ 0.087 near the optimum)
    makes the exact ascent oscillate with period 2."""
    hb, states, p_data, protos = hopfield_example
    kl, _, _ = hb.fit(states, p_data, protos, "exact", jax.random.key(1), 100, lr=0.1)
    rises = np.flatnonzero(np.diff(kl) > 1e-12)
    assert rises.size > 10 and rises[0] > 10, rises[:5]
