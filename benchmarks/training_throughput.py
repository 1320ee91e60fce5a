"""Training throughput: iterations per second of every ``ep.train`` method.

Two problems: the d = 50 mode-weight mixture of Carbone et al. (10^4 data, 10^4 walkers) and a
2-D MLP energy (hidden 32-32, 2000 data from a two-mode mixture, 1000 walkers). Each method is
compiled by a first short call (same energy, optimizer and options, so the second call reuses
the compiled programs) and then timed over ``--iterations`` iterations; the compile time is
reported apart. Also: the iterations and seconds Jarzynski needs to reach |p1 - 0.25| < 0.02
on the full experiment (and stay there), from one run of the full protocol.

Run ``python benchmarks/training_throughput.py [--quick] [--iterations N] [--skip-full]``;
it prints a Markdown table (copied into benchmarks/RESULTS.md).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
import optax  # noqa: E402

import ebm_ppl as ep  # noqa: E402
from ebm_ppl.training import experiments  # noqa: E402
from ebm_ppl.training.estimators import FACTORIES  # noqa: E402

METHODS = ("jarzynski", "pcd", "cd", "sm", "dsm", "ssm", "nce")


def _options(method, n_walkers, dim, student=None):
    """The estimator's options for ``method`` (its factory in ep.training.estimators)."""
    kw = {"num_walkers": n_walkers} if method in ("jarzynski", "pcd", "cd") else {}
    if method == "jarzynski":
        if student is not None:
            kw["init_walkers"] = experiments.initial_walkers(student, n_walkers)
            kw["log_z0"] = float(student.log_z_fn(student.params))
        else:
            kw["init_walkers"] = np.random.default_rng(0).normal(size=(n_walkers, dim))
            kw["log_z0"] = 0.0  # throughput only
    if method == "cd":
        kw["reinit_every"] = 4
    if method == "nce" and student is not None:  # the mixture optimizer is label-structured
        kw["log_z_optimizer"] = optax.sgd(0.0125)
    return kw


def time_method(energy_fn, params, data, method, optimizer, iterations, step_size, **kw):
    if method in ("jarzynski", "pcd", "cd"):
        kw["step_size"] = step_size
    estimator = FACTORIES[method](**kw)
    common = dict(key=jax.random.key(0), estimator=estimator, optimizer=optimizer,
                  progress_bar=False, chunk_size=100)
    t0 = time.perf_counter()
    ep.train(energy_fn, params, data, num_iterations=1, **common)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    fit = ep.train(energy_fn, params, data, num_iterations=iterations, **common)
    jax.block_until_ready(fit.params)
    return iterations / (time.perf_counter() - t0), compile_s


def mixture_rows(iterations, quick):
    dim = 10 if quick else 50
    n_walkers = 1000 if quick else 10_000
    data, _, student = experiments.problem(dim, 2000 if quick else 10_000)
    opt = experiments.optimizer()
    rows = []
    for method in METHODS:
        its, comp = time_method(student.energy_fn, student.params, data, method, opt,
                                iterations, 0.1, **_options(method, n_walkers, dim, student))
        rows.append((f"mixture d={dim}, N={n_walkers}", method, its, comp))
        print(rows[-1], flush=True)
    return rows


def mlp_rows(iterations, quick):
    fam = ep.mlp_energy(jax.random.key(0), 2, hidden=(32, 32))
    rng = np.random.default_rng(0)
    centers = np.where(rng.random(2000)[:, None] < 0.3, [-2.0, 0.0], [2.0, 1.0])
    data = centers + 0.5 * rng.normal(size=(2000, 2))
    opt = optax.adam(1e-3)
    n_walkers = 1000
    rows = []
    for method in METHODS:
        its, comp = time_method(fam.energy_fn, fam.params, data, method, opt, iterations, 0.01,
                                **_options(method, n_walkers, 2))
        rows.append((f"MLP 2-32-32-1, N={n_walkers}", method, its, comp))
        print(rows[-1], flush=True)
    return rows


def time_to_target(quick):
    kw = dict(dim=5, num_walkers=5000, num_iterations=3000, lr_means=3 * 0.0025,
              lr_log_weights=3 * 0.0125) if quick else {}
    t0 = time.perf_counter()
    r = experiments.run("jarzynski", progress_bar=not quick, **kw)
    total = time.perf_counter() - t0
    p1 = r["fit"].history["p1"]
    bad = np.nonzero(np.abs(p1 - 0.25) >= 0.02)[0]
    first = int(bad[-1]) + 1 if bad.size else 0
    per_it = r["fit"].info["wall_time_s"] / p1.size
    return first, first * per_it, total, r


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--skip-full", action="store_true", help="skip the time-to-target run")
    args = parser.parse_args(argv)
    print(f"# jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPUs, "
          f"{platform.processor() or platform.machine()}, float64")
    rows = mixture_rows(args.iterations, args.quick) + mlp_rows(args.iterations, args.quick)
    print("\n| problem | method | iterations / s | first-call (compile) s |")
    print("|---|---|---|---|")
    for prob, method, its, comp in rows:
        print(f"| {prob} | {method} | {its:.1f} | {comp:.1f} |")
    if not args.skip_full:
        first, secs, total, r = time_to_target(args.quick)
        print(f"\nJarzynski reaches |p1 - 0.25| < 0.02 for good at iteration {first} "
              f"(~{secs:.0f} s of training; whole run {total:.0f} s incl. compile and KL); "
              f"final p1 = {r['p1']:.4f}, a1 = {r['a1']:.3f}, KL = {r['kl']:.4f}")


if __name__ == "__main__":
    main()
