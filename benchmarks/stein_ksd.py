"""Exact KSD of n = 10^4 draws in d = 50 on the CPU, and the linear-time estimate beside it.

``ep.diagnostics.stein_discrepancy`` sums the n x n Stein kernel in row blocks under jit
(O(n^2 d) time, O(n) memory). The draws are N(0, 1.1^2 I) and the target N(0, I), so the KSD
is small but not zero. Reported: compile + first call, then the median of ``--repeats`` timed
calls (scores given, so only the kernel sum is timed; the gradient pass is timed apart), the
exact U-statistic of KSD^2 and the linear-time estimate with its standard error, for
``--pairs`` independent random pairings (the estimate must lie within 3 se of the exact value).

Usage: ``python benchmarks/stein_ksd.py [--n 10000] [--dim 50] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import ebm_ppl as ep  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--dim", type=int, default=50)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--pairs", type=int, default=5, help="independent linear-time estimates")
    args = p.parse_args(argv)
    x = np.random.default_rng(0).normal(size=(args.n, args.dim)) * 1.1

    def potential(z):
        return 0.5 * jnp.sum(z**2)

    t = time.perf_counter()
    full = ep.diagnostics.stein_discrepancy(x, potential)
    first = time.perf_counter() - t
    scores = -x
    times, cpu = [], []
    for _ in range(args.repeats):
        t, c = time.perf_counter(), time.process_time()
        exact = ep.diagnostics.stein_discrepancy(x, scores=scores)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    assert abs(exact.ksd - full.ksd) < 1e-12 * full.ksd
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores "
          f"(shared, loaded), jax {jax.__version__}, float64")
    print(f"n = {args.n}, d = {args.dim}: exact KSD {exact.ksd:.6f}, U-statistic of KSD^2 "
          f"{exact.ksd_squared_u:.6g}")
    print(f"  first call (scores + compile + sum): {first:.2f} s; exact sum, median of "
          f"{args.repeats}: {statistics.median(times):.2f} s (all: "
          f"{', '.join(f'{v:.2f}' for v in times)}); process CPU time per call (both cores "
          f"summed), median {statistics.median(cpu):.2f} s; load average "
          f"{os.getloadavg()[0]:.1f}")
    worst = 0.0
    for k in range(args.pairs):
        t = time.perf_counter()
        lin = ep.diagnostics.stein_discrepancy(x, scores=scores, method="linear",
                                               key=jax.random.key(k))
        dt = time.perf_counter() - t
        z = (lin.ksd_squared_u - exact.ksd_squared_u) / lin.se
        worst = max(worst, abs(z))
        print(f"  linear-time (key {k}): KSD^2 {lin.ksd_squared_u:.6g} +- {lin.se:.3g} "
              f"({dt:.2f} s), z = {z:+.2f}")
    print(f"  largest |z| over {args.pairs} pairings: {worst:.2f} (criterion: < 3)")


if __name__ == "__main__":
    main()
