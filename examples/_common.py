"""Shared command line of the example scripts: ``--quick``, ``--outdir``, ``--seed``.

Importing it selects matplotlib's file backend and float64 in JAX. Every example defines
``make_figures(quick=False, seed=0) -> {name: Figure}`` (printing what it measured) and ends
with ``main(make_figures, "<topic>", __doc__)``, which saves each
figure as ``<outdir>/<name>.png`` (default ``figures/<topic>``).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")  # never open a window; figures go to files

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)  # float64: small divergences, log Z, variances


def parse_args(topic: str, description: str | None, argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(description or "").strip().split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="small sizes (used by the tests): 30-90 s here, much of it compilation")
    parser.add_argument("--outdir", default=f"figures/{topic}",
                        help=f"folder for the figures (default figures/{topic})")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    return parser.parse_args(argv)


def save_figures(figures: dict, outdir, dpi: int = 110) -> list[Path]:
    import matplotlib.pyplot as plt

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, fig in figures.items():
        path = outdir / f"{name}.png"
        fig.savefig(path, dpi=dpi)
        plt.close(fig)
        paths.append(path)
        print(f"wrote {path}")
    return paths


def main(make_figures, topic: str, description: str | None = None, argv=None) -> list[Path]:
    """Parse the command line, run ``make_figures`` and save what it returns."""
    args = parse_args(topic, description, argv)
    start = time.perf_counter()
    figures = make_figures(quick=args.quick, seed=args.seed)
    paths = save_figures(figures, args.outdir)
    print(f"done in {time.perf_counter() - start:.1f} s")
    return paths
