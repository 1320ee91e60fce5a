"""Time to answer: wall seconds to a log Z with standard error <= 0.05 (issue 14).

Three problems, each run by ``ep`` and by BlackJAX's adaptive tempered SMC (MALA inner
kernel, 10 steps per stage, target ESS 0.5, systematic resampling, step 0.05 in the
unconstrained space), side by side in one process:

* ``regression``: the 4-parameter regression of ``benchmarks/compile_time.py`` (50 points,
  ``ep.log_evidence``; BlackJAX tempers the same model's likelihood from its prior, using
  ``energy_from_model``'s prior and likelihood on the unconstrained space);
* ``eight_schools``: the non-centered eight-schools model (10 parameters), likewise;
* ``mixture10``: the hard 10-D two-mode mixture of ``benchmarks/evidence_vs_peers.py``
  (log Z = 0 exactly), ``ep.log_partition`` from N(0, 5^2 I); BlackJAX from the same prior.

For each: the first call in the process (compiling) and a later call with a new key (compiled),
wall seconds, log Z and its standard error. ``ep`` reports its own error bar
(``result.total_error``); BlackJAX reports none, so its standard error is the spread of its
``--repeats`` later calls. The walker count doubles from ``--walkers`` until ``ep``'s error is
<= 0.05 (each new count compiles: its first call is counted). dynesty is run only when
installed (it is not a dependency).

    PYTHONPATH=$PWD python benchmarks/time_to_answer.py [--walkers 2048] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import math
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

TARGET_SE = 0.05
REF_SCALE = 5.0


def regression(x, y=None):
    a = numpyro.sample("a", dist.Normal(0.0, 1.0))
    b = numpyro.sample("b", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    numpyro.sample("y", dist.Normal(a + x @ b, sigma), obs=y)


def eight_schools(sigma, y=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("schools", sigma.shape[0]):
        eta = numpyro.sample("eta", dist.Normal(0.0, 1.0))
        numpyro.sample("y", dist.Normal(mu + tau * eta, sigma), obs=y)


def problems():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 2))
    y = 0.5 + x @ np.array([1.0, -0.7]) + 0.3 * rng.normal(size=50)
    schools_y = jnp.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
    schools_sigma = jnp.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])
    mixture = ep.targets.two_mode_mixture(10, separation=3, weights=(0.2, 0.8),
                                          scales=(1, 0.5), along_diagonal=False)
    return {
        "regression": ("model", regression, (jnp.asarray(x),), {"y": jnp.asarray(y)}),
        "eight_schools": ("model", eight_schools, (schools_sigma,), {"y": schools_y}),
        "mixture10": ("energy", mixture, None, None),
    }


def _ep_call(kind, obj, args, kwargs, n, seed):
    t0 = time.perf_counter()
    if kind == "model":
        r = ep.log_evidence(obj, *args, key=jax.random.key(seed), num_walkers=n,
                            progress_bar=False, **kwargs)
    else:
        r = ep.log_partition(obj, key=jax.random.key(seed), num_walkers=n, progress_bar=False,
                             reference=dist.Normal(jnp.zeros(obj.dim), REF_SCALE).to_event(1))
    return dict(wall=time.perf_counter() - t0, compile=r.compile_time, log_z=r.log_z,
                se=r.total_error, grads=r.num_gradient_evals)


def run_ep(kind, obj, args, kwargs, n0, max_walkers):
    """Double the walkers until se <= TARGET_SE; ``ladder_wall`` sums the first calls of
    every count tried (what a user who does not know the count waits)."""
    n, first, ladder = n0, None, 0.0
    while True:
        first = _ep_call(kind, obj, args, kwargs, n, 0)
        ladder += first["wall"]
        if first["se"] <= TARGET_SE or 2 * n > max_walkers:
            break
        n *= 2
    later = _ep_call(kind, obj, args, kwargs, n, 1)
    return dict(walkers=n, ladder_wall=ladder, first=first, later=later)


def _blackjax_parts(kind, obj, args, kwargs):
    """(log prior, log likelihood, prior sampler) on flat unconstrained vectors."""
    if kind == "model":
        e = ep.energy_from_model(obj, *args, **kwargs)
        return e.log_prior_fn, e.log_likelihood_fn, e.sample_prior, e.dim
    d = obj.dim

    def logprior(x):
        return -0.5 * jnp.sum(x**2) / REF_SCALE**2 - 0.5 * d * math.log(2 * math.pi * REF_SCALE**2)

    def sample(key, n):
        return REF_SCALE * jax.random.normal(key, (n, d))

    return logprior, lambda x: -obj.potential(x) - logprior(x), sample, d


def run_blackjax(kind, obj, args, kwargs, n, repeats, step=0.05):
    import blackjax
    from blackjax.smc import resampling

    logprior, loglik, sample, d = _blackjax_parts(kind, obj, args, kwargs)

    def one(seed):
        # built per call, as a user's script would (BlackJAX recompiles its step every call)
        smc = blackjax.adaptive_tempered_smc(
            logprior, loglik, blackjax.mala.build_kernel(), blackjax.mala.init,
            {"step_size": jnp.array([step])}, resampling.systematic, 0.5, num_mcmc_steps=10)
        step_fn = jax.jit(smc.step)
        t0 = time.perf_counter()
        key = jax.random.key(seed)
        k0, key = jax.random.split(key)
        state = smc.init(sample(k0, n))
        log_z, stages = 0.0, 0
        while float(state.tempering_param) < 1.0 and stages < 2000:
            key, sk = jax.random.split(key)
            state, info = step_fn(sk, state)
            log_z += float(info.log_likelihood_increment)
            stages += 1
        return dict(wall=time.perf_counter() - t0, log_z=log_z, stages=stages)

    first = one(0)
    later = [one(s) for s in range(1, repeats + 1)]
    spread = statistics.stdev([r["log_z"] for r in later]) if repeats > 1 else float("nan")
    return dict(walkers=n, first=first, later_median_wall=statistics.median(
        r["wall"] for r in later), log_z_mean=statistics.mean(r["log_z"] for r in later),
        se_from_spread=spread)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--walkers", type=int, default=2048)
    p.add_argument("--max-walkers", type=int, default=16384)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--only", default="")
    args = p.parse_args()
    print(json.dumps(dict(loadavg=os.getloadavg()[0], jax=jax.__version__)), flush=True)
    for name, (kind, obj, a, kw) in problems().items():
        if args.only and name not in args.only.split(","):
            continue
        ours = run_ep(kind, obj, a, kw, args.walkers, args.max_walkers)
        print(json.dumps(dict(problem=name, peer="ep", **ours), default=float), flush=True)
        bj = run_blackjax(kind, obj, a, kw, ours["walkers"], args.repeats)
        print(json.dumps(dict(problem=name, peer="blackjax", **bj), default=float), flush=True)
    try:
        import dynesty  # noqa: F401
    except ImportError:
        print("dynesty is not installed: skipped", flush=True)


if __name__ == "__main__":
    main()
