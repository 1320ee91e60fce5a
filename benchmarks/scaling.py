"""Cost of one evidence run vs walkers, vs dimension, and vs fake CPU devices (issue 7).

One run = ``ep.log_partition`` (default HMC moves) on a diagonal Gaussian
``U(x) = sum x_i^2 / (2 s_i^2)`` with scales log-spaced in [0.5, 2] (exact
``log Z = d/2 log 2pi + sum log s_i``), reference N(0, 2^2 I), a fixed linear schedule of
``--stages`` stages and ``--moves`` moves per stage, 16 walker groups. The fixed schedule keeps
the work per walker constant, so the time should grow linearly in walkers and in dimension
(the energy and its gradient are O(d)); we fit the slope of log(time) on log(size), over the
whole sweep and over its upper half (fixed per-stage overhead flattens small sizes).
Compilation is excluded: each size runs once to compile, then ``--repeats`` times; we report
the minimum wall time and the minimum process CPU time (all threads; steadier on a shared host).

Devices: the same run with ``devices=k`` in a subprocess started with
``XLA_FLAGS=--xla_force_host_platform_device_count=k`` for k = 1, 2, 4; the speed-up is wall
time(1) / wall time(k). Fake CPU devices share the machine's cores, so the speed-up is bounded
by the number of physical cores (printed), not by k.

    python benchmarks/scaling.py --quick        # ~3 min on 2 busy cores
    python benchmarks/scaling.py                # walkers 2^10..2^16, d 10..1000, 1/2/4 devices
    python benchmarks/scaling.py --part devices --walkers-for-devices 65536
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time

import numpy as np


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="smaller sweeps (walkers to 2^14, d to 300)")
    p.add_argument("--part", nargs="*", default=["walkers", "dims", "devices"],
                   choices=["walkers", "dims", "devices"])
    p.add_argument("--stages", type=int, default=4)
    p.add_argument("--moves", type=int, default=1)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--dim-for-walkers", type=int, default=10)
    p.add_argument("--walkers-for-dims", type=int, default=4096)
    p.add_argument("--walkers-for-devices", type=int, default=None,
                   help="walkers in the device run (default 2^15, 2^13 with --quick)")
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for name in ("stages", "moves", "repeats", "dim_for_walkers", "walkers_for_dims"):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be positive")
    return args


_ENERGIES = {}


def problem(d):
    """(energy, reference, exact log Z) for dimension d; the energy object is built once per d
    so that repeated runs reuse the compiled stage."""
    import jax.numpy as jnp
    import numpyro.distributions as dist

    import ebm_ppl as ep

    if d not in _ENERGIES:
        s = np.exp(np.linspace(np.log(0.5), np.log(2.0), d))
        inv_var = jnp.asarray(1.0 / s**2)

        def potential(x):
            return 0.5 * jnp.sum(inv_var * x * x)

        energy = ep.Energy(potential_fn=potential, dim=d, name=f"diag_gauss{d}")
        ref = dist.Normal(jnp.zeros(d), 2.0).to_event(1)
        _ENERGIES[d] = (energy, ref, 0.5 * d * math.log(2 * math.pi) + float(np.sum(np.log(s))))
    return _ENERGIES[d]


def time_run(n, d, args, devices=None, seed=0):
    """Compile, then time ``repeats`` runs; returns min wall, min CPU, and the last result's
    error in standard errors (a sanity check that the timed runs compute the right thing)."""
    import jax

    import ebm_ppl as ep

    energy, ref, exact = problem(d)
    kw = dict(reference=ref, num_walkers=n, schedule="linear", num_stages=args.stages,
              num_moves=args.moves, num_groups=16, progress_bar=False)
    if devices is not None:
        kw["devices"] = devices
    ep.log_partition(energy, key=jax.random.key(seed), **kw)  # compile
    walls, cpus = [], []
    for r in range(args.repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        res = ep.log_partition(energy, key=jax.random.key(seed + 1 + r), **kw)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    z = (res.log_z - exact) / res.log_z_se
    return dict(walkers=n, dim=d, wall=min(walls), cpu=min(cpus), err_in_se=float(z),
                grads=int(res.num_gradient_evals))


def slopes(sizes, times):
    """Least-squares slope of log(time) on log(size): all points and the upper half."""
    x, y = np.log(np.asarray(sizes, float)), np.log(np.asarray(times, float))
    full = float(np.polyfit(x, y, 1)[0])
    h = len(x) // 2
    upper = float(np.polyfit(x[h:], y[h:], 1)[0]) if len(x) - h >= 2 else float("nan")
    return full, upper


def sweep(name, rows, key):
    print(f"\n{name}")
    print(f"| {key} | wall [s] | cpu [s] | ns per walker-dim-gradient (cpu) | (log Z - exact)/se |")
    print("|---|---|---|---|---|")
    for r in rows:
        per = 1e9 * r["cpu"] / (r["grads"] * r["dim"])
        print(f"| {r[key]} | {r['wall']:.3f} | {r['cpu']:.3f} | {per:.2f} | "
              f"{r['err_in_se']:+.2f} |")
    sizes = [r[key] for r in rows]
    out = {}
    for what in ("wall", "cpu"):
        full, upper = slopes(sizes, [r[what] for r in rows])
        out[what] = dict(slope_all=full, slope_upper_half=upper)
        print(f"log-log slope of {what} time vs {key}: {full:.2f} (all), {upper:.2f} (upper half)")
    return out


def child(args):
    """Run in a subprocess whose XLA_FLAGS set ``args.child`` host devices."""
    import jax

    jax.config.update("jax_enable_x64", True)
    k = args.child
    assert jax.device_count() == k, (jax.device_count(), k)
    n = args.walkers_for_devices or (2**13 if args.quick else 2**15)
    row = time_run(n, args.dim_for_walkers, args, devices=k)
    row["devices"] = k
    print("RESULT " + json.dumps(row), flush=True)


def devices_part(args):
    rows = []
    for k in (1, 2, 4):
        env = dict(os.environ)
        flags = " ".join(f for f in env.get("XLA_FLAGS", "").split()
                         if "xla_force_host_platform_device_count" not in f)
        env["XLA_FLAGS"] = (flags + f" --xla_force_host_platform_device_count={k}").strip()
        env["JAX_PLATFORMS"] = "cpu"
        cmd = [sys.executable, os.path.abspath(__file__), "--child", str(k),
               "--stages", str(args.stages), "--moves", str(args.moves),
               "--repeats", str(args.repeats), "--dim-for-walkers", str(args.dim_for_walkers)]
        if args.walkers_for_devices:
            cmd += ["--walkers-for-devices", str(args.walkers_for_devices)]
        if args.quick:
            cmd.append("--quick")
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
        if out.returncode or not line:
            raise RuntimeError(f"device child {k} failed:\n{out.stdout}\n{out.stderr[-3000:]}")
        rows.append(json.loads(line[-1][7:]))
    base = rows[0]["wall"]
    print(f"\nspeed-up with fake CPU devices ({rows[0]['walkers']} walkers, d = "
          f"{rows[0]['dim']}; {os.cpu_count()} logical CPUs on this machine)")
    print("| devices | wall [s] | cpu [s] | speed-up (wall) | (log Z - exact)/se |")
    print("|---|---|---|---|---|")
    for r in rows:
        r["speedup"] = base / r["wall"]
        print(f"| {r['devices']} | {r['wall']:.3f} | {r['cpu']:.3f} | {r['speedup']:.2f} | "
              f"{r['err_in_se']:+.2f} |")
    return rows


def main(argv=None):
    args = parse_args(argv)
    if args.child is not None:
        return child(args)
    import jax

    jax.config.update("jax_enable_x64", True)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
          f"jax {jax.__version__}, {jax.devices()[0].platform}; HMC moves, {args.stages} stages x "
          f"{args.moves} moves, min of {args.repeats} runs after a compile run", flush=True)
    results = {}
    if "walkers" in args.part:
        top = 14 if args.quick else 16
        rows = [time_run(2**p, args.dim_for_walkers, args) for p in range(10, top + 1)]
        results["walkers"] = dict(rows=rows, fit=sweep(
            f"time vs walkers (d = {args.dim_for_walkers})", rows, "walkers"))
    if "dims" in args.part:
        dims = (10, 30, 100, 300) if args.quick else (10, 30, 100, 300, 1000)
        rows = [time_run(args.walkers_for_dims, d, args) for d in dims]
        results["dims"] = dict(rows=rows, fit=sweep(
            f"time vs dimension ({args.walkers_for_dims} walkers)", rows, "dim"))
        print(f"(the last column only checks that the timed runs estimate log Z: {args.stages} "
              "fixed stages under-anneal in high dimension, so log Z is biased low there, as "
              "Jensen's inequality says; accurate runs use the adaptive schedule)")
    if "devices" in args.part:
        results["devices"] = devices_part(args)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)
    return results


if __name__ == "__main__":
    main()
