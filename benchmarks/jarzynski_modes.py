"""Where ``method="jarzynski"`` loses mass: ULA's weights (seed eq. 102-103) on targets whose
local scale varies, from a broad reference, against MALA on the same path (the caution every
Jarzynski evidence result carries).

For each case and seed: the error of log Z against the exact value, in units of the run's
``log_z_err``, the verdict, and the smallest per-stage ESS.

    python benchmarks/jarzynski_modes.py [--seeds 3] [--walkers 1024]
    python benchmarks/jarzynski_modes.py --variants   # Jarzynski's settings on the 4-D case
"""

from __future__ import annotations

import argparse

import jax
import numpy as np
from calibration import normal

import ebm_ppl as ep


def cases():
    """name -> (target with exact log_z, log_partition options)."""
    t = ep.targets

    def mixture(d, weights, scales=(1.0, 0.5)):
        return t.two_mode_mixture(d, separation=3, weights=weights, scales=scales,
                                  along_diagonal=False)

    return {
        "10-D Gaussian, kappa 100, ref N(0, I)": (t.ill_conditioned_gaussian(10, 100.0, seed=0),
                                                 dict(reference=normal(10, 1.0))),
        "10-D two-mode mixture, ref N(0, 9 I)": (t.two_mode_mixture(10),
                                                dict(reference=normal(10, 3.0))),
        "4-D, widths 1 / 0.5, masses 0.2 / 0.8, ref N(0, 25 I)": (
            mixture(4, (0.2, 0.8)), dict(reference=normal(4, 5.0))),
        "10-D, widths 1 / 0.5, masses 0.2 / 0.8, ref N(0, 25 I)": (
            mixture(10, (0.2, 0.8)), dict(reference=normal(10, 5.0))),
        "4-D, one mode of width 0.5, ref N(0, 25 I)": (
            mixture(4, (1e-4, 1 - 1e-4)), dict(reference=normal(4, 5.0))),
        "4-D, widths 1 / 0.5, masses 0.2 / 0.8, automatic reference": (mixture(4, (0.2, 0.8)),
                                                                       dict()),
    }


VARIANTS = {"target_accept=0.98": dict(target_accept=0.98),
            "target_accept=0.995": dict(target_accept=0.995),
            "target_accept=0.98, 20 moves": dict(target_accept=0.98, num_moves=20),
            "target_ess=0.95": dict(target_ess=0.95),
            "keep_modes": dict(keep_modes=True)}


def variants(seeds, walkers):
    """Jarzynski's own settings on the 4-D two-mode target (exact log Z = 0)."""
    name = "4-D, widths 1 / 0.5, masses 0.2 / 0.8, ref N(0, 25 I)"
    target, options = cases()[name]
    print(f"{name}, jarzynski, {walkers} walkers\n")
    print("| setting | log Z by seed | reliable |")
    print("|---|---|---|")
    for label, extra in VARIANTS.items():
        runs = [ep.log_partition(target, key=jax.random.key(s), method="jarzynski",
                                 num_walkers=walkers, progress_bar=False, **options, **extra)
                for s in range(seeds)]
        print(f"| {label} | {', '.join(f'{r.log_z:+.2f}' for r in runs)} | "
              f"{sum(bool(r.reliable) for r in runs)} of {seeds} |", flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--walkers", type=int, default=1024)
    p.add_argument("--variants", action="store_true",
                   help="Jarzynski's step, schedule and keep_modes settings on the 4-D case")
    args = p.parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    if args.variants:
        variants(args.seeds, args.walkers)
        return
    print("| target | method | error / log_z_err by seed | verdict: reliable | min stage ESS |")
    print("|---|---|---|---|---|")
    for name, (target, options) in cases().items():
        for method in ("jarzynski", "mala"):
            z, rel, ess = [], [], []
            for s in range(args.seeds):
                r = ep.log_partition(target, key=jax.random.key(s), method=method,
                                     num_walkers=args.walkers, progress_bar=False, **options)
                z.append((r.log_z - target.log_z) / r.log_z_err)
                rel.append(bool(r.reliable))
                ess.append(float(np.min(r.ess)))
            print(f"| {name} | {method} | {', '.join(f'{v:+.1f}' for v in z)} | "
                  f"{sum(rel)} of {len(rel)} | {min(ess):.3f} |", flush=True)


if __name__ == "__main__":
    main()
