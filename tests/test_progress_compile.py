"""The progress output shows the seconds spent compiling (issue 14: "record compile and run
seconds separately ... in the progress output")."""

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
import optax

import ebm_ppl as ep
from ebm_ppl.compilation import compile_seconds, compiled_postfix


def _gauss(x):
    return 0.5 * jnp.sum(x**2)


def test_the_evidence_progress_bar_shows_the_compile_seconds(capsys):
    # a shape no other test compiles (11 walkers), so that this call compiles its stage
    res = ep.log_partition(_gauss, key=jax.random.key(0), dim=3, num_walkers=11,
                           reference=dist.Normal(jnp.zeros(3), 2.0).to_event(1),
                           schedule="linear", num_stages=2, bias_check=False)
    err = capsys.readouterr().err
    shown = [float(part.split("=")[1].rstrip("s,] ")) for part in err.replace(",", " ").split()
             if part.startswith("compiled=")]
    assert shown, err
    # shown to 0.1 s (rounded: up to 0.05 s above the seconds compiled by the last update)
    assert 0.0 < shown[-1] <= res.compile_time + 0.05 + 1e-9


def test_the_training_progress_bar_shows_the_compile_seconds(capsys):
    ep.train(lambda p, x: 0.5 * jnp.sum((x - p["mu"]) ** 2), {"mu": jnp.zeros(2)},
             jnp.ones((13, 2)), key=jax.random.key(1), num_iterations=2,
             estimator=ep.training.denoising_score_matching(noise_scale=0.3),
             optimizer=optax.sgd(0.1))
    assert "compiled=" in capsys.readouterr().err


def test_no_clock_no_postfix():
    assert compile_seconds() is None and compiled_postfix() == {}
    with ep.CompileClock():
        assert compiled_postfix() == {"compiled": "0.0s"}
