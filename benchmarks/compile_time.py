"""Compile vs run time of ``ep.log_evidence`` on a 4-parameter regression (issue 14).

Model: y = a + b1 x1 + b2 x2 + noise, a, b ~ N(0, 1), sigma ~ HalfNormal(1), 50 points
(4 unconstrained parameters), default options. Three calls in one process:

1. first call (cold: everything compiles),
2. second call, new key, same data,
3. third call, new key and new data of the same shapes.

For each: wall seconds, seconds spent tracing/lowering/compiling (summed from JAX's own
compile events, ``jax.monitoring``), the number of XLA compilations, and the run time
(wall - compile). Self-contained (own listener), so it also runs on older versions of the code
for a before/after comparison:

    PYTHONPATH=$PWD python benchmarks/compile_time.py [--label NAME] [--walkers N] [--no-bias-check]

``--no-bias-check`` passes ``bias_check=False`` (no bias probe: the first call's compile is then
the run's own programs).
"""

from __future__ import annotations

import argparse
import functools
import json
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import numpyro  # noqa: E402
import numpyro.distributions as dist  # noqa: E402

import ebm_ppl as ep  # noqa: E402

EVENTS = {"/jax/core/compile/jaxpr_trace_duration": "trace",
          "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower",
          "/jax/core/compile/backend_compile_duration": "compile"}
_acc = {"trace": 0.0, "lower": 0.0, "compile": 0.0, "n": 0}


def _listener(event, duration, **_):
    kind = EVENTS.get(event)
    if kind is not None:
        _acc[kind] += duration
        _acc["n"] += kind == "compile"


jax.monitoring.register_event_duration_secs_listener(_listener)


def regression(x, y=None):
    a = numpyro.sample("a", dist.Normal(0.0, 1.0))
    b = numpyro.sample("b", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    numpyro.sample("y", dist.Normal(a + x @ b, sigma), obs=y)


def data(seed, n=50):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    y = 0.5 + x @ np.array([1.0, -0.7]) + 0.3 * rng.normal(size=n)
    return jnp.asarray(x), jnp.asarray(y)


def timed(fn):
    before = dict(_acc)
    t0 = time.perf_counter()
    res = fn()
    wall = time.perf_counter() - t0
    spent = {k: _acc[k] - before[k] for k in _acc}
    comp = spent["trace"] + spent["lower"] + spent["compile"]
    return res, dict(wall=round(wall, 3), compile=round(comp, 3), trace=round(spent["trace"], 3),
                     lower=round(spent["lower"], 3), backend=round(spent["compile"], 3),
                     num_compiles=int(spent["n"]), run=round(wall - comp, 3))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--label", default="")
    p.add_argument("--walkers", type=int, default=4096)
    p.add_argument("--no-bias-check", action="store_true",
                   help="bias_check=False (default: the option's default)")
    args = p.parse_args()
    x, y = data(0)
    x2, y2 = data(1)
    calls = [("first", (x, y), 0), ("second (new key)", (x, y), 1),
             ("third (new key, new data)", (x2, y2), 2)]
    rows = []
    for name, (xs, ys), seed in calls:
        res, row = timed(functools.partial(
            ep.log_evidence, regression, xs, y=ys, key=jax.random.key(seed),
            num_walkers=args.walkers, progress_bar=False,
            **(dict(bias_check=False) if args.no_bias_check else {})))
        row.update(call=name, log_z=round(float(res.log_z), 4))
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(json.dumps(dict(label=args.label, bias_check=not args.no_bias_check,
                          first_compile=rows[0]["compile"],
                          first_num_compiles=rows[0]["num_compiles"],
                          second_wall_over_run=round(rows[1]["wall"] / max(rows[1]["run"], 1e-9),
                                                     2))))


if __name__ == "__main__":
    main()
