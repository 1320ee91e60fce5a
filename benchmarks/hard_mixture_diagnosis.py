"""Why ebm_ppl loses to BlackJAX on the hard 10-D mixture with a broad user reference (issue 15,
acceptance 0), in two measurements.

1. The tempered mass of the narrow mode (+3, scale 0.5, weight 0.8) along the geometric path
   from N(0, 25 I), in closed form (modes far apart: ``(w1 N1 + w2 N2)^beta ~ w_k^beta N_k^beta``
   near mode k). It falls to about 0.5% near beta = 0.1 before rising to 0.8: the walkers that
   will carry 80% of the final mass are a handful at the bottleneck (4 of 768, 20 of 4096).
2. Runs of ``ep.log_partition`` with design variants (no bias probe; ``--seeds`` keys each):
   RMSE of log Z, gradients, the figure of merit RMSE^2 x gradients (in M), and the final
   weighted share of walkers in the narrow mode per run (0.0: the mode was lost).

    python benchmarks/hard_mixture_diagnosis.py --seeds 6
"""

from __future__ import annotations

import argparse
import json
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import numpyro.distributions as dist  # noqa: E402

import ebm_ppl as ep  # noqa: E402

REF_SCALE, DIM = 5.0, 10
MODES = ((0.8, 3.0, 0.5), (0.2, -3.0, 1.0))   # (weight, centre on every axis, scale)

VARIANTS = {
    "hmc 768 (default moves)": dict(num_walkers=768),
    "hmc 768 systematic": dict(num_walkers=768, resampling="systematic"),
    "hmc 768 resample at ESS 0.5": dict(num_walkers=768, resample_threshold=0.5),
    "hmc 3072, 2 moves": dict(num_walkers=3072, num_moves=2),
    "mala 6144": dict(num_walkers=6144, method="mala"),
    "mala 6144 systematic": dict(num_walkers=6144, method="mala", resampling="systematic"),
}


def log_mass(weight, centre, scale, beta):
    """log of the mode's mass under ref^(1 - beta) (w N)^beta, per the module docstring."""
    p = beta / scale**2 + (1 - beta) / REF_SCALE**2
    per_axis = (-beta / 2 * np.log(2 * np.pi * scale**2)
                - (1 - beta) / 2 * np.log(2 * np.pi * REF_SCALE**2) + 0.5 * np.log(2 * np.pi / p)
                - 0.5 * (beta * centre**2 / scale**2 - (beta * centre / scale**2) ** 2 / p))
    return beta * np.log(weight) + DIM * per_axis


def narrow_share(beta):
    a, b = (log_mass(*m, beta) for m in MODES)
    return 1.0 / (1.0 + np.exp(b - a))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=6)
    p.add_argument("--variants", default=None, help="JSON dict name -> log_partition options")
    args = p.parse_args(argv)
    print("narrow mode's tempered share:", {b: round(float(narrow_share(b)), 4)
                                            for b in (0.01, 0.05, 0.1, 0.2, 0.5, 0.9, 1.0)})
    t = ep.targets.two_mode_mixture(DIM, separation=3, weights=(0.2, 0.8), scales=(1, 0.5),
                                    along_diagonal=False)
    ref = dist.Normal(jnp.zeros(DIM), REF_SCALE).to_event(1)
    variants = json.loads(args.variants) if args.variants else VARIANTS
    for name, kw in variants.items():
        rows, t0 = [], time.perf_counter()
        for s in range(args.seeds):
            r = ep.log_partition(t, key=jax.random.key(s), reference=ref, progress_bar=False,
                                 bias_check=False, **kw)
            x = np.asarray(r.walkers)
            w = np.exp(r.log_weights - np.max(r.log_weights))
            rows.append((r.log_z - float(t.log_z), r.log_z_se, r.num_gradient_evals,
                         float(np.sum(w * (x.mean(1) > 0)) / np.sum(w))))
        a = np.array(rows)
        mse, grads = float(np.mean(a[:, 0] ** 2)), float(a[:, 2].mean())
        print(f"{name:30s} rmse {np.sqrt(mse):.3f} bias {a[:, 0].mean():+.3f} se "
              f"{a[:, 1].mean():.3f} grads {grads / 1e6:.2f}M FoM {mse * grads / 1e6:.3f} "
              f"narrow share {np.round(a[:, 3], 2).tolist()} "
              f"({(time.perf_counter() - t0) / args.seeds:.1f} s/run)", flush=True)


if __name__ == "__main__":
    main()
