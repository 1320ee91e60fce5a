"""Fresh-process first call with and without the persistent compilation cache (issue 14).

Runs the first ``ep.log_evidence`` call of ``benchmarks/compile_time.py``'s regression in
fresh Python processes: (1) cold, no cache; (2) with ``EBM_PPL_COMPILATION_CACHE`` set to an
empty directory (fills it); (3) again with the filled cache. Prints each process's wall time
for the call, its compile seconds and the speed-up cold / warm.

    PYTHONPATH=$PWD python benchmarks/persistent_cache.py [--walkers N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

CHILD = """
import json, time, jax
jax.config.update("jax_enable_x64", True)
import sys; sys.path.insert(0, "benchmarks")
from compile_time import regression, data
import ebm_ppl as ep
x, y = data(0)
t0 = time.perf_counter()
r = ep.log_evidence(regression, x, y=y, key=jax.random.key(0), num_walkers={walkers},
                    progress_bar=False)
print(json.dumps(dict(wall=time.perf_counter() - t0, compile=r.compile_time, log_z=r.log_z)))
"""


def child(walkers, cache=None):
    env = dict(os.environ)
    env.pop("EBM_PPL_COMPILATION_CACHE", None)
    if cache is not None:
        env["EBM_PPL_COMPILATION_CACHE"] = cache
    out = subprocess.run([sys.executable, "-c", CHILD.format(walkers=walkers)], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--walkers", type=int, default=4096)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        cold = child(args.walkers)
        filling = child(args.walkers, cache)
        warm = child(args.walkers, cache)
    for name, r in (("cold (no cache)", cold), ("cache filling", filling), ("warm cache", warm)):
        print(json.dumps(dict(run=name, **{k: round(v, 4) for k, v in r.items()})))
    print(json.dumps(dict(speedup_first_call=round(cold["wall"] / warm["wall"], 2),
                          same_log_z=cold["log_z"] == warm["log_z"])))


if __name__ == "__main__":
    main()
