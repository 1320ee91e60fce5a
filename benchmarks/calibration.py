"""Calibration of the evidence error bars (issues 8 and 15): how often does ``log_z +- 2 err``
cover the exact log Z, with ``err`` the total error ``log_z_err`` (genealogy standard error and
the effort-trend bias) and, for comparison, ``log_z_se`` alone? And how often does the verdict
``result.reliable`` fire on runs that miss?

For each target with an exact log Z (closed form, quadrature, or importance sampling with 10^6
draws), ``ep.log_partition`` / ``ep.log_evidence`` run at default settings with ``--seeds``
different keys. Per target: coverage of |z| < 2 for z = error / log_z_err and error / log_z_se,
mean total error over mean se, the verdict's firing rate among runs with |error| > 3 total
errors (should be >= 90%) and among runs with |error| < 1 total error (should be <= 10%), and
the gradient cost against the same run without the bias probe.

    python benchmarks/calibration.py                      # 100 seeds, 5 targets
    python benchmarks/calibration.py --seeds 20 --results benchmarks/RESULTS.md

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

SECTION = "## Calibration of the evidence error bars (`benchmarks/calibration.py`, issues 8, 15)"


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


EIGHT_Y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
EIGHT_SIGMA = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])


def eight_schools(sigma, y=None):
    """Centered eight schools (the hierarchical funnel: theta ~ N(mu, tau), tau -> 0)."""
    import numpyro

    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("J", len(sigma)):
        theta = numpyro.sample("theta", dist.Normal(mu, tau))
        numpyro.sample("obs", dist.Normal(theta, sigma), obs=y)


def eight_schools_exact():
    """theta and mu integrate out: y | tau ~ N(0, diag(sigma^2 + tau^2) + 25); one quadrature
    over the HalfCauchy(5) prior of tau (as tests/test_evidence.py)."""
    from scipy import integrate, stats

    def log_lik(tau):
        cov = np.diag(EIGHT_SIGMA ** 2 + tau ** 2) + 25.0
        return stats.multivariate_normal(np.zeros(8), cov).logpdf(EIGHT_Y)

    top = log_lik(5.0)
    val, _ = integrate.quad(lambda t: np.exp(log_lik(t) - top) * 2 * stats.cauchy(0, 5).pdf(t),
                            0, np.inf, limit=200)
    return float(top + np.log(val))


def logistic_data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    x = np.column_stack([np.ones(n), rng.normal(size=(n, 2))])
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-x @ np.array([0.5, 1.5, -1.0])))).astype(float)
    return x, y


def logistic(x, y=None):
    """Bayesian logistic regression, w ~ N(0, I) (3 weights), 40 points."""
    import numpyro

    w = numpyro.sample("w", dist.Normal(0.0, 1.0).expand([x.shape[1]]).to_event(1))
    numpyro.sample("y", dist.Bernoulli(logits=x @ w), obs=y)


def logistic_exact(draws=1_000_000, seed=1):
    """log p(y) by importance sampling in float64: a Student-t (5 dof) proposal at the MAP
    with twice the Laplace covariance; returns (value, its standard error)."""
    from scipy import optimize, special, stats

    x, y = logistic_data()

    def log_joint(w):
        eta = w @ x.T
        return (np.sum(y * eta - np.logaddexp(0.0, eta), axis=-1)
                + np.sum(stats.norm.logpdf(w), axis=-1))

    w_map = optimize.minimize(lambda w: -log_joint(w[None])[0], np.zeros(3)).x
    p = special.expit(x @ w_map)
    cov = 2.0 * np.linalg.inv(x.T @ (x * (p * (1 - p))[:, None]) + np.eye(3))
    prop = stats.multivariate_t(w_map, cov, df=5, seed=seed)
    lw = np.concatenate([log_joint(w) - prop.logpdf(w)
                         for w in np.array_split(prop.rvs(draws), 20)])
    top = lw.max()
    r = np.exp(lw - top)
    return float(top + np.log(r.mean())), float(r.std() / np.sqrt(draws) / r.mean())


def models():
    """name -> (exact log evidence, model, args, kwargs, description) for ep.log_evidence."""
    x, y = logistic_data()
    return {
        "eight_schools": (eight_schools_exact, eight_schools, (jnp.asarray(EIGHT_SIGMA),),
                          dict(y=jnp.asarray(EIGHT_Y)),
                          "centered eight schools (10 parameters, a funnel in tau); exact by "
                          "quadrature over tau; defaults (prior reference)"),
        "logistic": (lambda: logistic_exact()[0], logistic, (jnp.asarray(x),),
                     dict(y=jnp.asarray(y)),
                     "logistic regression, 3 weights, 40 points, N(0, I) prior; exact by "
                     "importance sampling (10^6 t draws); defaults"),
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


def _runner(name, walkers):
    """(exact, run(key, **extra) -> EvidenceResult, description) for one target."""
    import ebm_ppl as ep

    if name in problems():
        target, options, text = problems()[name]
        return float(target.log_z), lambda key, **kw: ep.log_partition(
            target, key=key, num_walkers=walkers, progress_bar=False, **options, **kw), text
    exact, model, args, kwargs, text = models()[name]
    return exact(), lambda key, **kw: ep.log_evidence(
        model, *args, key=key, num_walkers=walkers, progress_bar=False, **kwargs, **kw), text


def run(names, seeds, walkers, progress):
    from tqdm.auto import tqdm

    out = {}
    for name in names:
        exact, go, text = _runner(name, walkers)
        base = go(jax.random.key(10_000), bias_check=False).num_gradient_evals
        rows = []
        for s in tqdm(range(seeds), desc=name, disable=not progress):
            t0 = time.perf_counter()
            r = go(jax.random.key(10_000 + s))
            rows.append(dict(seed=s, log_z=r.log_z, se=r.log_z_se, err=r.total_error,
                             bias=r.log_z_bias, bias_se=r.log_z_bias_se,
                             reliable=bool(r.reliable), reasons=list(r.messages),
                             stages=r.num_stages, grads=r.num_gradient_evals, dead=r.num_dead,
                             seconds=time.perf_counter() - t0))
        e = np.array([r["log_z"] - exact for r in rows])
        se = np.array([r["se"] for r in rows])
        te = np.array([r["err"] for r in rows])
        rel = np.array([r["reliable"] for r in rows])
        k = int(np.sum(np.abs(e) < 2.0 * te))
        bad, good = np.abs(e) > 3 * te, np.abs(e) < te
        out[name] = dict(description=text, exact=exact, runs=rows,
                         coverage=k / seeds, coverage_ci=wilson(k, seeds),
                         coverage_se=float(np.mean(np.abs(e) < 2.0 * se)),
                         mean_z=float(np.mean(e / te)), std_z=float(np.std(e / te, ddof=1)),
                         rmse=float(np.sqrt(np.mean(e ** 2))), mean_error=float(e.mean()),
                         mean_se=float(se.mean()), mean_err=float(te.mean()),
                         sd_log_z=float(np.std(e, ddof=1)),
                         n_bad=int(bad.sum()), fired_bad=int((~rel[bad]).sum()),
                         n_good=int(good.sum()), fired_good=int((~rel[good]).sum()),
                         fired=float(np.mean(~rel)),
                         mean_stages=float(np.mean([r["stages"] for r in rows])),
                         mean_grads=float(np.mean([r["grads"] for r in rows])),
                         base_grads=float(base),
                         seconds=float(np.mean([r["seconds"] for r in rows])))
    return out


def markdown(out, args, wall):
    lines = [
        SECTION, "",
        f"{date.today().isoformat()}, {platform.machine()}, jax {jax.__version__}, "
        f"{'float64' if jax.config.jax_enable_x64 else 'float32'}; the shared 2-core host "
        f"(loaded by other agents' jobs); {wall / 60:.1f} min in all.",
        f"Command: `python benchmarks/calibration.py --seeds {args.seeds} --walkers "
        f"{args.walkers} --targets {args.targets}`. Each run: defaults (pooled multinomial "
        f"resampling, genealogy `log_z_se`, bias probe: 4 pools of {args.walkers // 4} "
        "walkers at a quarter of the moves), key "
        "`jax.random.key(10000 + s)`. err = `log_z_err` (total error), se = `log_z_se`. "
        "Verdict: `result.reliable` is False.",
        "",
        "| target | seeds | coverage +-2 err (95% CI) | coverage +-2 se | mean error | sd of "
        "log_z | mean se | mean err | err / se | verdict fired: |error| > 3 err | verdict "
        "fired: |error| < 1 err | gradients (x without probe) | s / run |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in out.items():
        lo, hi = r["coverage_ci"]
        lines.append(
            f"| {name}: {r['description']} | {len(r['runs'])} | {100 * r['coverage']:.0f}% "
            f"({100 * lo:.0f}-{100 * hi:.0f}%) | {100 * r['coverage_se']:.0f}% | "
            f"{r['mean_error']:+.4f} | {r['sd_log_z']:.4f} | {r['mean_se']:.4f} | "
            f"{r['mean_err']:.4f} | {r['mean_err'] / r['mean_se']:.2f} | "
            f"{r['fired_bad']}/{r['n_bad']} | {r['fired_good']}/{r['n_good']} | "
            f"{r['mean_grads']:.2g} ({r['mean_grads'] / r['base_grads']:.2f}x) | "
            f"{r['seconds']:.1f} |")
    bad = sum(r["n_bad"] for r in out.values())
    good = sum(r["n_good"] for r in out.values())
    fb = sum(r["fired_bad"] for r in out.values())
    fg = sum(r["fired_good"] for r in out.values())
    tails = [f"{name} ({(x['log_z'] - r['exact']) / x['err']:+.2f} err; probe "
             f"{x['bias'] / x['bias_se']:+.2f} se of the difference; verdict "
             f"{'fired' if not x['reliable'] else 'silent'})"
             for name, r in out.items() for x in r["runs"]
             if abs(x["log_z"] - r["exact"]) > 3 * x["err"]]
    lines += ["", f"Verdict over all targets: fired in {fb} of {bad} runs with |error| > 3 err "
              f"and in {fg} of {good} runs with |error| < 1 err. Nominal coverage of +-2 err: "
              "95.4% for a known error. The runs beyond 3 err: "
              f"{'; '.join(tails) if tails else 'none'}.", ""]
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
    p.add_argument("--targets", default="gauss10,mixture10,funnel10_auto,eight_schools,logistic")
    p.add_argument("--json", default="calibration.json")
    p.add_argument("--results", default=None, help="markdown file whose section to replace")
    p.add_argument("--x64", action="store_true", help="float64 (default float32)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if args.x64:
        jax.config.update("jax_enable_x64", True)
    names = [n for n in args.targets.split(",") if n]
    unknown = set(names) - set(problems()) - set(models())
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
