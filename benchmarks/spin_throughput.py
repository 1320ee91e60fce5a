"""Spin-flip attempts per second: checkerboard heat-bath Gibbs on L x L Ising lattices.

Compared in one run, same lattice, temperature (T = 2.5), replica count and number of sweeps:

* ``bare``      -- a hand-written vectorized loop: the replicas as one (R, L, L) array, the
                   neighbour sum by four ``jnp.roll``, one uniform per site and sweep; no
                   library code (the floor for what JAX does with this update).
* ``library``   -- ``ep.spins.gibbs_sweep`` on ``ep.spins.Ising`` vmapped over replicas (flat
                   spins, colour masks, a per-replica key, flip statistics and U(s) recomputed
                   after each sweep: what the NumPyro kernel and the annealing engine run).
* ``metropolis``-- the same with ``metropolis_sweep``.
* ``tempering`` -- ``ep.tempering.pt_step`` with the R replicas as R rungs (a sweep per rung,
                   an energy per rung, a swap sweep and a re-initialisation per round).

Compilation is excluded (one warm-up call); the median of ``--repeats`` timed calls is kept,
in wall-clock time and in process CPU time (all threads): on a shared, loaded host the CPU
time is the steadier figure, so ratios to the bare loop are given for both.

    python benchmarks/spin_throughput.py                      # L = 64 and 256, float32
    python benchmarks/spin_throughput.py --x64 --json out.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import jax
import numpy as np


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 256])
    p.add_argument("--replicas", type=int, nargs="+", default=None,
                   help="replicas per size (default 256 for L=64, 16 for L=256)")
    p.add_argument("--sweeps", type=int, default=100)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--x64", action="store_true", help="float64 spins (default float32)")
    p.add_argument("--json", default=None, help="also write the results to this file")
    return p.parse_args(argv)


def bare_loop(L, R, beta, sweeps, dtype):
    import jax.numpy as jnp
    import numpy as np

    i, j = np.meshgrid(np.arange(L), np.arange(L), indexing="ij")
    black = jnp.asarray((i + j) % 2 == 0)

    @jax.jit
    def run(x, key):
        def body(x, k):
            u = jax.random.uniform(k, x.shape, dtype)
            for mask in (black, ~black):
                nb = jnp.roll(x, 1, 1) + jnp.roll(x, -1, 1) + jnp.roll(x, 1, 2) + jnp.roll(x, -1, 2)
                x = jnp.where(mask & (u < jax.nn.sigmoid(-2.0 * beta * x * nb)), -x, x)
            return x, None
        return jax.lax.scan(body, x, jax.random.split(key, sweeps))[0]

    return run, jnp.ones((R, L, L), dtype)


def library_loop(L, R, beta, sweeps, dtype, kernel):
    import jax.numpy as jnp

    from ebm_ppl import spins

    model = spins.Ising(L, beta=beta)
    sweep = spins.gibbs_sweep if kernel == "gibbs" else spins.metropolis_sweep
    state = jax.vmap(lambda x: spins.spin_init(x, model))(jnp.ones((R, L * L), dtype))

    @jax.jit
    def run(state, key):
        def body(st, k):
            st, _ = jax.vmap(lambda kk, s: sweep(kk, s, model))(jax.random.split(k, R), st)
            return st, None
        return jax.lax.scan(body, state, jax.random.split(key, sweeps))[0]

    return run, state


def tempering_loop(L, R, beta, sweeps, dtype):
    import jax.numpy as jnp
    import numpy as np

    from ebm_ppl import spins
    from ebm_ppl.tempering import pt_init, pt_step

    model = spins.Ising(L, beta=beta)
    betas = np.geomspace(1.0, 0.6, R)  # a concrete ladder (numpy) enables the rescaling path
    state = pt_init(jnp.ones((R, L * L), dtype), model, betas, spins.spin_init)

    @jax.jit
    def run(state, key):
        def body(st, k):
            st, _ = pt_step(k, st, model, 1.0, betas=betas, kernel_step=spins.gibbs_sweep,
                            kernel_init=spins.spin_init)
            return st, None
        return jax.lax.scan(body, state, jax.random.split(key, sweeps))[0]

    return run, state


def timed(run, state, repeats):
    """Median wall-clock and CPU seconds of one call (after a compiling call)."""
    jax.block_until_ready(run(state, jax.random.key(0)))
    wall, cpu = [], []
    for r in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        jax.block_until_ready(run(state, jax.random.key(r + 1)))
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return float(np.median(wall)), float(np.median(cpu))


def main(argv=None):
    args = parse_args(argv)
    jax.config.update("jax_enable_x64", bool(args.x64))
    import jax.numpy as jnp

    dtype = jnp.float64 if args.x64 else jnp.float32
    replicas = args.replicas or [256 if L <= 64 else 16 for L in args.sizes]
    beta = 1.0 / 2.5
    rows = []
    for L, R in zip(args.sizes, replicas):
        setups = {"bare": bare_loop(L, R, beta, args.sweeps, dtype),
                  "library": library_loop(L, R, beta, args.sweeps, dtype, "gibbs"),
                  "metropolis": library_loop(L, R, beta, args.sweeps, dtype, "metropolis"),
                  "tempering": tempering_loop(L, R, beta, args.sweeps, dtype)}
        base = None
        for name, (run, state) in setups.items():
            wall, cpu = timed(run, state, args.repeats)
            flips = R * L * L * args.sweeps
            base = base or (wall, cpu)
            rows.append(dict(L=L, replicas=R, path=name, wall_s=wall, cpu_s=cpu,
                             flips_per_s=flips / wall, flips_per_cpu_s=flips / cpu,
                             cpu_vs_bare=cpu / base[1], wall_vs_bare=wall / base[0]))
            print(f"L={L:4d} R={R:4d} {name:10s} {flips / wall / 1e6:8.1f} M flips/s wall, "
                  f"{flips / cpu / 1e6:8.1f} M per CPU s; cost x bare: CPU {cpu / base[1]:.2f}, "
                  f"wall {wall / base[0]:.2f}", flush=True)
    meta = dict(python=sys.version.split()[0], jax=jax.__version__, backend=jax.default_backend(),
                devices=str(jax.devices()), machine=platform.machine(),
                dtype=jnp.dtype(dtype).name, sweeps=args.sweeps)
    print("\n| L | replicas | path | M flips / s (wall) | M flips / CPU s | CPU x bare | "
          "wall x bare |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['L']} | {r['replicas']} | {r['path']} | {r['flips_per_s'] / 1e6:.1f} | "
              f"{r['flips_per_cpu_s'] / 1e6:.1f} | {r['cpu_vs_bare']:.2f} | "
              f"{r['wall_vs_bare']:.2f} |")
    print(meta)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(meta=meta, rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
