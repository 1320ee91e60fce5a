"""``ep.log_evidence_batch`` on K simulated data sets vs ``ep.log_evidence`` one data set at a
time (issue 14, acceptance 3).

Model: ``benchmarks/compile_time.py``'s regression (a, b1, b2 ~ N(0, 1), sigma ~
HalfNormal(1), 50 points, 4 unconstrained parameters), default options (4096 walkers, HMC,
bias probe), float64. Data: K data sets from the model's prior predictive, each with its own
design x ~ N(0, 1). In one process:

1. the first unbatched call (cold: everything compiles) on data set 0;
2. ``--loop`` further unbatched calls on data sets 0..loop-1 with the batch's keys (warm:
   nothing compiles), each timed;
3. one batched call on all K data sets (cold: its own program compiles);
4. the match: max |log Z_batch[k] - log Z_unbatched[k]| over the looped data sets.

    PYTHONPATH=$PWD python benchmarks/batch_evidence.py [--K 100] [--loop 10] [--walkers N]
"""

from __future__ import annotations

import argparse
import json
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from numpyro.infer import Predictive  # noqa: E402

import ebm_ppl as ep  # noqa: E402
from compile_time import regression  # noqa: E402


def simulate(k, n=50, seed=0):
    """K data sets (x, y) from the prior predictive, each with its own design."""
    x = np.random.default_rng(seed).normal(size=(k, n, 2))
    keys = jax.random.split(jax.random.key(seed), k)
    y = jnp.stack([Predictive(regression, num_samples=1)(keys[i], jnp.asarray(x[i]))["y"][0]
                   for i in range(k)])
    return jnp.asarray(x), y


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--K", type=int, default=100)
    p.add_argument("--loop", type=int, default=10)
    p.add_argument("--walkers", type=int, default=4096)
    args = p.parse_args()
    x, y = simulate(args.K)
    opts = dict(num_walkers=args.walkers, progress_bar=False)
    key = jax.random.key(1)
    keys = jax.random.split(key, args.K)
    rows = []
    for i in range(args.loop + 1):
        k = max(i - 1, 0)  # call 0 (cold) and call 1 (warm) both on data set 0
        t0 = time.perf_counter()
        r = ep.log_evidence(regression, x[k], y=y[k], key=keys[k], **opts)
        rows.append(dict(call="cold" if i == 0 else "warm", data_set=k,
                         wall=round(time.perf_counter() - t0, 3),
                         compile=round(r.compile_time, 3), log_z=r.log_z,
                         stages=r.num_stages))
        print(json.dumps(rows[-1]), flush=True)
    t0 = time.perf_counter()
    batch = ep.log_evidence_batch(regression, x, y=y, key=key, **opts)
    wall = time.perf_counter() - t0
    warm = [r for r in rows if r["call"] == "warm"]
    diff = max(abs(batch[r["data_set"]].log_z - r["log_z"]) for r in warm)
    stages = [b.num_stages for b in batch]
    one_warm = float(np.median([r["wall"] for r in warm]))
    summary = dict(K=args.K, walkers=args.walkers, batch_wall=round(wall, 2),
                   batch_compile=round(batch.compile_time, 2),
                   unbatched_cold_wall=rows[0]["wall"], unbatched_cold_compile=rows[0]["compile"],
                   unbatched_warm_wall_median=round(one_warm, 3),
                   batch_over_cold_call=round(wall / rows[0]["wall"], 2),
                   batch_over_warm_call=round(wall / one_warm, 2),
                   batch_over_K_warm_calls=round(wall / (args.K * one_warm), 3),
                   max_abs_log_z_diff=diff, stages_min_median_max=[
                       int(np.min(stages)), float(np.median(stages)), int(np.max(stages))],
                   num_unreliable=int(np.sum(~batch.reliable)))
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
