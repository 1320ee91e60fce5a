"""log Z at equal gradient budget: ebm_ppl's annealing vs BlackJAX adaptive tempered SMC.

Targets share one reference N(0, 5^2 I) (BlackJAX's prior; its likelihood is U's remainder):
an ill-conditioned rotated Gaussian (d = 10, kappa = 100), Neal's funnel (d = 10), the hard
10-D two-mode mixture of issue 3 (modes at -3 and +3 on every axis, scales 1 and 0.5, weights
0.2 and 0.8, log Z = 0) and, without ``--quick``, the ill-conditioned Gaussian in d = 100.

Peers: dynesty with ``--dynesty SEEDS`` (static nested sampling, 500 live points, same prior;
its cost is counted in likelihood calls, not gradients; d <= 10; not a dependency), and
``blackjax.adaptive_tempered_smc`` with a MALA inner kernel (4096 particles, 10 MALA
steps per stage, target ESS 0.5, systematic resampling), its step tuned over a grid as a user
would; the best step per target is the one compared. Ours: ``ep.log_partition`` with methods
"hmc" (default), "mala" and "jarzynski" on the same reference, and "hmc" with the automatic
reference (``reference=None``; its optimization is counted in the gradients). For equal budget
our walker count is scaled per target and method from a pilot run so that our mean gradient
count matches the best BlackJAX configuration's.

Reported per target and method: RMSE of log Z over seeds, mean reported standard error,
fraction of runs with |error| < 2 se, mean gradient evaluations, median wall and process-CPU
time per run (compilation excluded by the median; on a shared host CPU time is the steadier
figure) and CPU microseconds per gradient.

    python benchmarks/evidence_vs_peers.py --quick          # ~10 min on 2 CPU cores
    python benchmarks/evidence_vs_peers.py --seeds 16       # the full table
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import numpyro.distributions as dist  # noqa: E402

import ebm_ppl as ep  # noqa: E402

REF_SCALE = 5.0


def targets(quick: bool):
    out = {
        "gauss10_k100": ep.targets.ill_conditioned_gaussian(10, 100.0, seed=0),
        "funnel10": ep.targets.funnel(10),
        "mixture10_hard": ep.targets.two_mode_mixture(
            10, separation=3, weights=(0.2, 0.8), scales=(1, 0.5), along_diagonal=False),
    }
    if not quick:
        out["gauss100_k100"] = ep.targets.ill_conditioned_gaussian(100, 100.0, seed=0)
    return out


def reference(d):
    return dist.Normal(jnp.zeros(d), REF_SCALE).to_event(1)


# -- BlackJAX ---------------------------------------------------------------------------------

def blackjax_log_densities(target):
    """BlackJAX's tempering split of the target: the shared N(0, REF_SCALE^2 I) reference as
    log prior, and the rest as log likelihood."""
    d = target.dim

    def logprior(x):
        return -0.5 * jnp.sum(x**2) / REF_SCALE**2 - 0.5 * d * math.log(2 * math.pi * REF_SCALE**2)

    def loglik(x):
        return -target.potential(x) - logprior(x)

    return logprior, loglik


def blackjax_runner(target, step, n=4096, num_mcmc_steps=10, target_ess=0.5):
    import blackjax
    from blackjax.smc import resampling

    d = target.dim
    logprior, loglik = blackjax_log_densities(target)
    smc = blackjax.adaptive_tempered_smc(
        logprior, loglik, blackjax.mala.build_kernel(), blackjax.mala.init,
        {"step_size": jnp.array([step])}, resampling.systematic, target_ess,
        num_mcmc_steps=num_mcmc_steps)
    step_fn = jax.jit(smc.step)

    def run(seed):
        key = jax.random.key(seed)
        k0, key = jax.random.split(key)
        state = smc.init(REF_SCALE * jax.random.normal(k0, (n, d)))
        log_z, stages, t0, c0 = 0.0, 0, time.perf_counter(), time.process_time()
        while float(state.tempering_param) < 1.0 and stages < 2000:
            key, sk = jax.random.split(key)
            state, info = step_fn(sk, state)
            log_z += float(info.log_likelihood_increment)
            stages += 1
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        # each stage: one gradient per particle to init MALA states + num_mcmc_steps steps
        return dict(log_z=log_z if np.isfinite(log_z) else -1e9, se=float("nan"),
                    grads=stages * (num_mcmc_steps + 1) * n, wall=wall, cpu=cpu, stages=stages)

    return run


# -- dynesty (optional) --------------------------------------------------------------------------

def dynesty_runner(target, nlive=500):
    """Nested sampling with the same reference as prior; no gradients, so its 'grads' column
    counts likelihood calls."""
    import dynesty
    from scipy.stats import norm

    d = target.dim
    loglik = jax.jit(lambda x: -target.potential(x) + 0.5 * jnp.sum(x**2) / REF_SCALE**2
                     + 0.5 * d * math.log(2 * math.pi * REF_SCALE**2))

    def run(seed):
        t0, c0 = time.perf_counter(), time.process_time()
        sampler = dynesty.NestedSampler(lambda x: float(loglik(x)),
                                        lambda u: REF_SCALE * norm.ppf(u), d, nlive=nlive,
                                        rstate=np.random.default_rng(seed))
        sampler.run_nested(print_progress=False)
        res = sampler.results
        return dict(log_z=float(res.logz[-1]), se=float(res.logzerr[-1]),
                    grads=int(np.sum(res.ncall)), wall=time.perf_counter() - t0,
                    cpu=time.process_time() - c0, stages=int(res.niter))

    return run


# -- ours ----------------------------------------------------------------------------------------

def ours_runner(target, method, auto, n, **options):
    ref = None if auto else reference(target.dim)

    def run(seed):
        t0, c0 = time.perf_counter(), time.process_time()
        r = ep.log_partition(target, key=jax.random.key(seed), reference=ref, method=method,
                             num_walkers=n, progress_bar=False, init_scale=REF_SCALE, **options)
        return dict(log_z=r.log_z, se=r.total_error, grads=r.num_gradient_evals,
                    wall=time.perf_counter() - t0, cpu=time.process_time() - c0,
                    stages=r.num_stages)

    return run


def summarize(runs, exact):
    err = np.array([r["log_z"] - exact for r in runs])
    se = np.array([r["se"] for r in runs])
    grads = np.mean([r["grads"] for r in runs])
    wall = float(np.median([r["wall"] for r in runs]))
    cpu = float(np.median([r["cpu"] for r in runs]))
    return dict(rmse=float(np.sqrt(np.mean(err**2))), bias=float(np.mean(err)),
                mean_se=float(np.nanmean(se)) if np.any(np.isfinite(se)) else float("nan"),
                cover2=float(np.mean(np.abs(err) < 2 * se)) if np.all(np.isfinite(se)) else
                float("nan"), grads=float(grads), wall=wall,
                cpu=cpu, us_per_grad=1e6 * cpu / grads,
                stages=float(np.mean([r["stages"] for r in runs])),
                n=len(runs))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="3 targets, 3 seeds, 3 BlackJAX steps")
    p.add_argument("--seeds", type=int, default=None)
    p.add_argument("--targets", nargs="*", default=None)
    p.add_argument("--out", default=None, help="write the table as JSON here")
    p.add_argument("--dynesty", type=int, default=0, metavar="SEEDS",
                   help="also run dynesty (d <= 10) on this many seeds (slow: ~1 CPU-min a run)")
    p.add_argument("--walkers", type=int, default=None,
                   help="ours at this many walkers only: no BlackJAX grid, no equal-budget pilot "
                        "(benchmarks/gpu_check.sh)")
    p.add_argument("--methods", nargs="*", default=None, choices=["hmc", "mala", "jarzynski"],
                   help="subset of our methods")
    p.add_argument("--groups", action="store_true",
                   help="also run ours (hmc) with 16 independent groups and with systematic "
                        "resampling, to show where pooled multinomial resampling wins")
    p.add_argument("--design", action="store_true",
                   help="also run the design variants of issue 15's hard-mixture diagnosis: hmc "
                        "with 2 moves a stage (4x the walkers at equal budget) and mala with "
                        "systematic resampling")
    p.add_argument("--keep-modes", action="store_true",
                   help="also run ours (mala and hmc, and mala with 10 moves a stage as "
                        "BlackJAX's) with keep_modes=True (mode-guarded resampling, issue 15 "
                        "acceptance 0)")
    p.add_argument("--steps", type=float, nargs="*", default=None,
                   help="BlackJAX MALA step grid (default 0.01 0.03 0.1 0.2 0.3)")
    args = p.parse_args(argv)
    if args.walkers is not None and args.walkers <= 0:
        p.error("--walkers must be positive")
    seeds = args.seeds or (3 if args.quick else 16)
    steps = args.steps or ([0.03, 0.1, 0.3] if args.quick else [0.01, 0.03, 0.1, 0.2, 0.3])
    table = {}
    for name, target in targets(args.quick).items():
        if args.targets and name not in args.targets:
            continue
        exact = float(target.log_z)
        rows = {}
        best = None
        for step in ([] if args.walkers else steps):
            run = blackjax_runner(target, step)
            runs = [run(s) for s in range(seeds)]
            row = summarize(runs, exact)
            rows[f"blackjax-mala h={step:g}"] = row
            print(f"{name:15s} blackjax h={step:<5g} rmse {row['rmse']:.3f} grads "
                  f"{row['grads'] / 1e6:.2f}M wall {row['wall']:.2f}s", flush=True)
            if best is None or row["rmse"] < rows[best]["rmse"]:
                best = f"blackjax-mala h={step:g}"
        budget = rows[best]["grads"] if best else None
        if target.dim <= 10 and args.dynesty:
            try:
                runs = [dynesty_runner(target)(s) for s in range(args.dynesty)]
            except ImportError:
                print("dynesty is not installed: skipped", flush=True)
            else:
                row = summarize(runs, exact)
                rows["dynesty (likelihood calls)"] = row
                print(f"{name:15s} dynesty            rmse {row['rmse']:.3f} se "
                      f"{row['mean_se']:.3f} calls {row['grads'] / 1e6:.2f}M", flush=True)
        variants = [(m, a, {}, "") for m, a in (("hmc", True), ("hmc", False), ("mala", False),
                                                 ("jarzynski", False))]
        if args.groups:
            variants += [("hmc", False, dict(num_groups=16), " 16 groups"),
                         ("hmc", False, dict(resampling="systematic"), " systematic")]
        if args.design:
            variants += [("hmc", False, dict(num_moves=2), " 2 moves"),
                         ("mala", False, dict(resampling="systematic"), " systematic")]
        if args.keep_modes:
            variants += [(m, False, dict(keep_modes=True), " keep_modes") for m in ("mala", "hmc")]
            variants += [("mala", False, dict(keep_modes=True, num_moves=10),
                          " keep_modes, 10 moves")]
        for method, auto, options, suffix in variants:
            if args.methods and method not in args.methods:
                continue
            label = f"ours-{method}" + (" (auto ref)" if auto else "") + suffix
            if args.walkers:
                n = args.walkers
            else:
                pilot = ours_runner(target, method, auto, 4096, **options)(10_000)
                ratio = budget / pilot["grads"]
                # rescale the walkers (grads ~ walkers) unless already within 25% of the budget
                n = 4096 if 0.8 < ratio < 1.25 else int(max(256, round(4096 * ratio / 256) * 256))
            run = ours_runner(target, method, auto, n, **options)
            runs = [run(s) for s in range(seeds)]
            row = summarize(runs, exact)
            row["walkers"] = n
            rows[label] = row
            print(f"{name:15s} {label:22s} N={n:<6d} rmse {row['rmse']:.3f} se "
                  f"{row['mean_se']:.3f} grads {row['grads'] / 1e6:.2f}M wall {row['wall']:.2f}s",
                  flush=True)
        table[name] = dict(exact=exact, best_blackjax=best, rows=rows)
    print_table(table)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(dict(table=table, seeds=seeds, machine=platform.platform(),
                           python=sys.version.split()[0], jax=jax.__version__), fh, indent=1)
    return table


def print_table(table):
    print("\n| target | method | walkers | RMSE | bias | mean se | |err|<2se | grads (M) | "
          "wall/run (s) | CPU/run (s) | CPU us/grad | RMSE / best BlackJAX | "
          "FoM / best BlackJAX's |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, t in table.items():
        best = t["rows"][t["best_blackjax"]] if t["best_blackjax"] else None
        ref = best["rmse"] if best else float("nan")
        fom_ref = best["rmse"] ** 2 * best["grads"] if best else float("nan")
        for label, r in t["rows"].items():
            star = " (best)" if label == t["best_blackjax"] else ""
            print(f"| {name} | {label}{star} | {r.get('walkers', 4096)} | {r['rmse']:.3f} | "
                  f"{r['bias']:+.3f} | {r['mean_se']:.3f} | {r['cover2']:.2f} | "
                  f"{r['grads'] / 1e6:.2f} | {r['wall']:.2f} | {r['cpu']:.2f} | "
                  f"{r['us_per_grad']:.2f} | "
                  f"{r['rmse'] / ref:.2f} | {r['rmse'] ** 2 * r['grads'] / fom_ref:.2f} |")


if __name__ == "__main__":
    main()
