"""Part 2 of the demo: Bayesian model comparison by evidence on built-in data.

Three NumPyro polynomial regressions (degrees 1, 2 and 3, Gaussian prior on the weights,
known noise) of one dataset drawn from a quadratic: the evidence prefers degree 2 over the
underfitting line and over the cubic that fits as well but spreads its prior wider (Occam).
All three are conjugate, so the exact evidence
p(y) = N(y; 0, sigma^2 I + alpha^{-1} Phi Phi^T) is printed beside each estimate.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

ALPHA, SIGMA = 1.0, 0.3


def polynomial_regression(x, y=None, degree: int = 1):
    """y = sum_k w_k x^k + N(0, SIGMA^2) noise, w ~ N(0, ALPHA^{-1} I)."""
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    design = jnp.stack([x**k for k in range(degree + 1)], axis=-1)
    w = numpyro.sample("w", dist.Normal(0.0, ALPHA**-0.5).expand([degree + 1]).to_event(1))
    numpyro.sample("y", dist.Normal(design @ w, SIGMA), obs=y)


def demo_data(seed: int = 0, n: int = 40):
    """A quadratic trend with noise: the degree-2 model should win."""
    rng = np.random.default_rng(seed)
    x = np.linspace(-1.0, 1.0, n)
    y = 0.3 + 0.8 * x - 1.2 * x**2 + SIGMA * rng.standard_normal(n)
    return x, y


def exact_log_evidence(x, y, degree: int) -> float:
    """log N(y; 0, sigma^2 I + alpha^{-1} Phi Phi^T)."""
    design = np.stack([x**k for k in range(degree + 1)], axis=-1)
    cov = SIGMA**2 * np.eye(len(y)) + design @ design.T / ALPHA
    _, logdet = np.linalg.slogdet(cov)
    return float(-0.5 * (y @ np.linalg.solve(cov, y) + logdet + len(y) * np.log(2 * np.pi)))


def evidence_comparison(outdir: Path, *, quick: bool = False, seed: int = 0) -> dict:
    """Estimate both evidences, print the Bayes factor and save a comparison figure."""
    import arviz as az
    import jax
    import jax.numpy as jnp
    from numpyro.infer import MCMC, NUTS

    from . import log_evidence

    x, y = demo_data(seed)
    walkers = 512 if quick else 4096
    print("\n== Model comparison by evidence: polynomial regressions of one dataset "
          f"(n = {len(y)}, known noise {SIGMA})")
    results = {}
    for degree in (1, 2, 3):
        res = log_evidence(polynomial_regression, jnp.asarray(x), jnp.asarray(y), degree=degree,
                           key=jax.random.key(seed + degree), num_walkers=walkers,
                           progress_bar=not quick)
        exact = exact_log_evidence(x, y, degree)
        results[degree] = (res, exact)
        print(f"\n-- degree {degree}\n{res}")
        print(f"   exact log p(y) = {exact:.4f}   (error {float(res.log_z) - exact:+.4f}, "
              f"{abs(float(res.log_z) - exact) / max(float(res.log_z_se), 1e-12):.1f} se)")
    best = max(results, key=lambda d: float(results[d][0].log_z))
    rb, eb = results[best]
    print(f"\n   preferred model: degree {best}")
    for degree, (res, exact) in results.items():
        if degree == best:
            continue
        log_bf = float(rb.log_z - res.log_z)
        se_bf = float(np.hypot(rb.log_z_se, res.log_z_se))
        print(f"   log Bayes factor (degree {best} vs {degree}) = {log_bf:7.3f} +- {se_bf:.3f}"
              f"   (exact {eb - exact:7.3f})")

    print("\n-- sampler diagnostics: NUTS on the degree-2 posterior")
    mcmc = MCMC(NUTS(polynomial_regression), num_warmup=300 if quick else 1000,
                num_samples=300 if quick else 1000, num_chains=2, chain_method="vectorized",
                progress_bar=False)
    mcmc.run(jax.random.key(seed), jnp.asarray(x), jnp.asarray(y), degree=2)
    print(az.summary(az.from_numpyro(mcmc)).to_string())

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    fig = _comparison_figure(x, y, results)
    path = outdir / "evidence_model_comparison.png"
    fig.savefig(path, dpi=120)
    print(f"\n   wrote {path}")
    return results


def _comparison_figure(x, y, results):
    import matplotlib.pyplot as plt

    fig, (ax_data, ax_ev) = plt.subplots(1, 2, figsize=(10, 4))
    ax_data.plot(x, y, "k.", label="data")
    for degree, (res, _) in results.items():
        samples = np.asarray(res.samples["w"] if isinstance(res.samples, dict) else res.samples)
        design = np.stack([x**k for k in range(degree + 1)], axis=-1)
        weights = np.exp(np.asarray(res.log_weights) - np.max(res.log_weights))
        weights = weights / weights.sum()
        ax_data.plot(x, design @ (weights @ samples), label=f"degree {degree}: posterior mean")
    ax_data.set(xlabel="x", ylabel="y", title="Data and posterior mean fits")
    ax_data.legend()
    degrees = list(results)
    est = [float(results[d][0].log_z) for d in degrees]
    se = [float(results[d][0].log_z_se) for d in degrees]
    exact = [results[d][1] for d in degrees]
    ax_ev.errorbar(degrees, est, yerr=2 * np.asarray(se), fmt="o", capsize=5,
                   label="estimate +- 2 se")
    ax_ev.plot(degrees, exact, "rx", ms=10, label="exact")
    ax_ev.set(xlabel="polynomial degree", ylabel="log evidence log p(y)",
              title="Evidence of each model", xticks=degrees)
    ax_ev.legend()
    fig.tight_layout()
    return fig
