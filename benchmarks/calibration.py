"""Calibration of ``log_z_se`` (issue 8): how often does ``log_z +- 2 se`` cover the exact log Z?

For each target with exact log Z, ``ep.log_partition`` runs with ``--seeds`` different keys
(everything else fixed) and we record z = (log_z - exact) / log_z_se. Honest error bars give
coverage of |z| < 2 near 95.4%, mean z near 0 (no bias) and std z near 1; a coverage well below
that with a negative mean z is the bias low that annealing can only have (Jensen).

    python benchmarks/calibration.py                      # 100 seeds, 5 targets, ~15 min
    python benchmarks/calibration.py --seeds 10 --walkers 512 --results benchmarks/RESULTS.md

Writes ``--json`` (all z-scores) and, with ``--results``, replaces its own section of that
markdown file.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import re
import sys
import time
from datetime import date
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

SECTION = "## Calibration of log_z_se (`benchmarks/calibration.py`, issue 8)"


def normal(d, scale):
    return dist.Normal(jnp.zeros(d), scale).to_event(1)


def problems():
    """name -> (target, options for ep.log_partition, description)."""
    import ebm_ppl as ep

    t = ep.targets
    return {
        "gauss10": (t.ill_conditioned_gaussian(10, 100.0, seed=0),
                    dict(reference=normal(10, 1.0)),
                    "10-D Gaussian, kappa = 100, rotated; reference N(0, I); defaults (hmc)"),
        "funnel10": (t.funnel(10),
                     dict(reference=normal(10, 5.0), precondition=False, num_moves=5),
                     "Neal's funnel, d = 10; reference N(0, 25 I); hmc, 5 moves, no "
                     "preconditioner"),
        "funnel10_auto": (t.funnel(10), dict(),
                          "Neal's funnel, d = 10; defaults (hmc; automatic reference: no "
                          "Laplace mode, so a mixture fitted to a 256-walker pilot)"),
        "funnel10_slow": (t.funnel(10),
                          dict(reference=normal(10, 5.0), precondition=False, num_moves=10,
                               target_ess=0.95),
                          "the same funnel annealed slowly: target ESS 0.95, 10 moves"),
        "mixture10": (t.two_mode_mixture(10),
                      dict(reference=normal(10, 3.0)),
                      "10-D two-mode mixture (masses 0.2 / 0.8, modes 10 apart); reference "
                      "N(0, 9 I); defaults (hmc)"),
    }


def wilson(k, n, z=1.96):
    """95% Wilson interval of a binomial proportion k / n."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def student_t_coverage(dof: int, k: float = 2.0) -> float:
    """P(|T| < k) for Student's t with ``dof`` degrees of freedom."""
    from scipy import stats

    return float(stats.t.cdf(k, dof) - stats.t.cdf(-k, dof))


def run(names, seeds, walkers, progress):
    import ebm_ppl as ep
    from tqdm.auto import tqdm

    out = {}
    for name in names:
        target, options, text = problems()[name]
        rows = []
        for s in tqdm(range(seeds), desc=name, disable=not progress):
            t0 = time.perf_counter()
            r = ep.log_partition(target, key=jax.random.key(10_000 + s), num_walkers=walkers,
                                 progress_bar=False, **options)
            rows.append(dict(seed=s, log_z=r.log_z, se=r.log_z_se, stages=r.num_stages,
                             grads=r.num_gradient_evals, dead=r.num_dead,
                             seconds=time.perf_counter() - t0))
        z = np.array([(r["log_z"] - target.log_z) / r["se"] for r in rows])
        err = np.array([r["log_z"] - target.log_z for r in rows])
        k = int(np.sum(np.abs(z) < 2.0))
        out[name] = dict(description=text, exact=float(target.log_z), runs=rows,
                         coverage=k / seeds, coverage_ci=wilson(k, seeds),
                         mean_z=float(z.mean()), std_z=float(z.std(ddof=1)),
                         rmse=float(np.sqrt(np.mean(err ** 2))),
                         mean_se=float(np.mean([r["se"] for r in rows])),
                         sd_log_z=float(np.std([r["log_z"] for r in rows], ddof=1)),
                         mean_stages=float(np.mean([r["stages"] for r in rows])),
                         mean_grads=float(np.mean([r["grads"] for r in rows])),
                         seconds=float(np.mean([r["seconds"] for r in rows])))
    return out


def markdown(out, args, wall):
    lines = [
        SECTION, "",
        f"{date.today().isoformat()}, {platform.machine()}, jax {jax.__version__}, "
        f"{'float64' if jax.config.jax_enable_x64 else 'float32'}; the shared 2-core host "
        f"(load average about 10 during the run); {wall / 60:.1f} min in all.",
        f"Command: `python benchmarks/calibration.py --seeds {args.seeds} --walkers "
        f"{args.walkers}`. Each run: `ep.log_partition(target, key=jax.random.key(10000 + s), "
        f"num_walkers={args.walkers}, ...)`, adaptive schedule (target ESS 0.7 unless stated), "
        f"resampling every stage, {min(16, max(1, args.walkers // 64))} walker groups for "
        "`log_z_se`. z = (log_z - exact) / log_z_se.",
        "",
        "| target | coverage of log_z +- 2 se (95% CI) | mean z | std z | sd of log_z over "
        "seeds | mean log_z_se | RMSE | stages | gradients / run | s / run |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in out.items():
        lo, hi = r["coverage_ci"]
        lines.append(
            f"| {name}: {r['description']} | {100 * r['coverage']:.0f}% ({100 * lo:.0f}-"
            f"{100 * hi:.0f}%) | {r['mean_z']:+.2f} | {r['std_z']:.2f} | {r['sd_log_z']:.4f} | "
            f"{r['mean_se']:.4f} | {r['rmse']:.4f} | {r['mean_stages']:.0f} | "
            f"{r['mean_grads']:.2g} | {r['seconds']:.1f} |")
    groups = min(16, max(1, args.walkers // 64))
    t_cover = student_t_coverage(groups - 1)
    lines += ["", f"Nominal coverage: 95.4% for a known standard error; {100 * t_cover:.1f}% "
              f"here, as log_z_se is itself estimated from {groups} groups (Student t with "
              f"{groups - 1} degrees of freedom).", ""]
    return "\n".join(lines)


def replace_section(path: Path, text: str):
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    pattern = re.compile(re.escape(SECTION) + r".*?(?=^## |\Z)", re.S | re.M)
    new = pattern.sub(lambda _: text + "\n", old) if pattern.search(old) else (
        old.rstrip("\n") + "\n\n" + text + "\n")
    path.write_text(new)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=100)
    p.add_argument("--walkers", type=int, default=1024)
    p.add_argument("--targets", default="gauss10,funnel10,funnel10_auto,funnel10_slow,mixture10")
    p.add_argument("--json", default="calibration.json")
    p.add_argument("--results", default=None, help="markdown file whose section to replace")
    p.add_argument("--x64", action="store_true", help="float64 (default float32)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if args.x64:
        jax.config.update("jax_enable_x64", True)
    names = [n for n in args.targets.split(",") if n]
    unknown = set(names) - set(problems())
    if unknown or args.seeds < 2 or args.walkers < 2:
        p.error(f"unknown targets {sorted(unknown)}" if unknown else "need >= 2 seeds, walkers")
    t0 = time.perf_counter()
    out = run(names, args.seeds, args.walkers, not args.no_progress)
    wall = time.perf_counter() - t0
    Path(args.json).write_text(json.dumps(out, indent=1))
    text = markdown(out, args, wall)
    print(text)
    if args.results:
        replace_section(Path(args.results), text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
