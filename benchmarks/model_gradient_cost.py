"""Cost of one value-and-gradient of a model's energy vs a hand-written log density (issue 14).

Model: Bayesian logistic regression on the breast-cancer design (569 x 30 standardized
features plus an intercept column: 31 coefficients, each N(0, 1)), float64, 4096 walkers,
``jax.vmap(jax.value_and_grad(.))`` under ``jax.jit``. scikit-learn's copy of the data is
used when scikit-learn is installed; otherwise (it is not a dependency of ebm_ppl) a
fixed-seed synthetic design of the same shape and scale (standardized Gaussian features with
correlated columns, labels drawn from a logistic model), which costs the same per gradient.

Variants, all compiled first, then timed round-robin (median of ``--repeats``; process CPU
seconds of all threads, the figure to read on a shared machine, and wall seconds):

* ``hand``: the log density written by hand, ``-|b|^2/2 + sum(y eta - softplus(eta))``.
* ``numpyro potential``: ``numpyro.infer.util.potential_energy`` of the model.
* ``ep potential``: ``energy_from_model``'s ``potential_fn`` (the same numbers).
* ``tempered U_beta``: the tempered energy ``U_0 + beta V`` of ``tempering_path``
  (``path.potential(0.5)``), one value-and-gradient.
* ``tempered evaluate``: what every leapfrog step of the annealing engine calls
  (``path.evaluate``): ``U_0``, ``V`` and both gradients at once.

The hand-written reference for ``tempered evaluate`` is ``hand (split)``: the prior and the
likelihood written by hand, each with its value and gradient (what the engine needs).

    PYTHONPATH=$PWD python benchmarks/model_gradient_cost.py [--repeats 15] [--walkers 4096]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import numpyro  # noqa: E402
import numpyro.distributions as dist  # noqa: E402

import ebm_ppl as ep  # noqa: E402
from ebm_ppl.evidence.paths import tempering_path  # noqa: E402
from numpyro.infer.util import potential_energy  # noqa: E402


def design():
    """(X with intercept column, y, source): 569 x 31, standardized, float64."""
    try:
        from sklearn.datasets import load_breast_cancer

        raw = load_breast_cancer()
        x, y, source = raw.data, raw.target.astype(np.float64), "sklearn breast_cancer"
    except ImportError:
        rng = np.random.default_rng(0)
        mix = rng.normal(size=(30, 30)) / np.sqrt(30)
        x = rng.normal(size=(569, 30)) @ (np.eye(30) + mix)
        w = rng.normal(size=30) / np.sqrt(30)
        y = (rng.uniform(size=569) < 1 / (1 + np.exp(-(x @ w * 3.0)))).astype(np.float64)
        source = "synthetic (seed 0; scikit-learn not installed)"
    x = (x - x.mean(0)) / x.std(0)
    x = np.concatenate([np.ones((x.shape[0], 1)), x], axis=1)
    return jnp.asarray(x, jnp.float64), jnp.asarray(y, jnp.float64), source


def model(x, y=None):
    b = numpyro.sample("b", dist.Normal(0.0, 1.0).expand([x.shape[1]]).to_event(1))
    numpyro.sample("y", dist.Bernoulli(logits=x @ b), obs=y)


def hand_log_prior(b):
    return -0.5 * jnp.sum(b * b) - 0.5 * b.shape[0] * jnp.log(2 * jnp.pi)


def hand_log_lik(b, x, y):
    eta = x @ b
    return jnp.sum(y * eta - jnp.logaddexp(0.0, eta))


def variants(x, y):
    energy = ep.energy_from_model(model, x, y=y)
    path = tempering_path(energy)

    def hand(b):
        return -(hand_log_prior(b) + hand_log_lik(b, x, y))

    def hand_split(b):
        u0, g0 = jax.value_and_grad(lambda c: -hand_log_prior(c))(b)
        u1, g1 = jax.value_and_grad(lambda c: -hand_log_lik(c, x, y))(b)
        return u0, u1, g0, g1

    vg = lambda f: jax.jit(jax.vmap(jax.value_and_grad(f)))  # noqa: E731
    def numpyro_potential(b):
        return potential_energy(model, (x,), {"y": y}, {"b": b})

    return {
        "hand": vg(hand),
        "numpyro potential": vg(numpyro_potential),
        "ep potential": vg(energy.potential_fn),
        "tempered U_beta": vg(path.potential(0.5)),
        "hand (split)": jax.jit(jax.vmap(hand_split)),
        "tempered evaluate": jax.jit(path.evaluate_batch),
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--walkers", type=int, default=4096)
    p.add_argument("--label", default="")
    args = p.parse_args()
    x, y, source = design()
    fns = variants(x, y)
    zs = 0.1 * jax.random.normal(jax.random.key(0), (args.walkers, x.shape[1]))
    for f in fns.values():  # compile, and check that all agree
        jax.block_until_ready(f(zs))
    ref = fns["hand"](zs)
    for name in ("numpyro potential", "ep potential"):
        out = fns[name](zs)
        np.testing.assert_allclose(out[0] - out[0][0], ref[0] - ref[0][0], atol=1e-8)
        np.testing.assert_allclose(out[1], ref[1], rtol=1e-8, atol=1e-8)
    wall = {k: [] for k in fns}
    cpu = {k: [] for k in fns}
    for _ in range(args.repeats):
        for k, f in fns.items():
            t0, c0 = time.perf_counter(), time.process_time()
            jax.block_until_ready(f(zs))
            wall[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
    print(json.dumps(dict(label=args.label, data=source, walkers=args.walkers,
                          repeats=args.repeats, loadavg=os.getloadavg()[0])))
    print(f"{'variant':20s} {'CPU us/grad':>11s} {'wall us/grad':>12s}  CPU ratio  wall ratio")
    for k in fns:
        base = "hand (split)" if k == "tempered evaluate" else "hand"
        c, w = statistics.median(cpu[k]), statistics.median(wall[k])
        cb, wb = statistics.median(cpu[base]), statistics.median(wall[base])
        print(f"{k:20s} {1e6 * c / args.walkers:11.2f} {1e6 * w / args.walkers:12.2f}  "
              f"{c / cb:9.2f}  {w / wb:10.2f}  (vs {base})")

if __name__ == "__main__":
    main()
