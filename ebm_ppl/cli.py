"""The ``ebm-ppl`` command line: ``demo``, ``evidence``, ``compare`` and ``figures``.

User mistakes (a missing file, no such model, data that do not fit) end with a one-line
``error: ...`` on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


from .errors import CLIError


def _cmd_demo(args) -> None:
    from .demo import run_demo

    run_demo(Path(args.outdir), quick=args.quick, seed=args.seed)


def _cmd_evidence(args) -> None:
    from .cli_evidence import run_evidence

    run_evidence(args)


def _cmd_compare(args) -> None:
    from .cli_compare import run_compare

    run_compare(args)


def _cmd_figures(args) -> None:
    from .demo import regenerate_figures

    regenerate_figures(Path(args.outdir), quick=args.quick, seed=args.seed)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ebm-ppl",
        description="Energy-based models on NumPyro: samplers, log Z / evidence, diagnostics.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser(
        "demo", help="the main job on built-in data: samplers on the seed's Figure 1 mixture "
        "and a Bayesian model comparison by evidence",
        description="Sample the seed's eq. 4 mixture with ULA, MALA and NUTS (ArviZ summaries, "
        "Figure 1), then compare two NumPyro models of one dataset by their evidence.")
    demo.add_argument("--outdir", default="ebm_ppl_demo_output", help="folder for figures and tables")
    demo.add_argument("--quick", action="store_true", help="small sizes (seconds, for tests)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.set_defaults(func=_cmd_demo)

    ev = sub.add_parser(
        "evidence", help="log evidence of a NumPyro model in a Python file",
        description="Estimate log p(data) of MODEL defined in FILE.py, called as "
        "model(**data) with the arrays of DATA (.csv with a header row, or .npz) as keywords.")
    ev.add_argument("target", metavar="FILE.py:MODEL", help="python file and model function name")
    ev.add_argument("--data", required=True, help="data file: .csv (header = argument names) or .npz")
    ev.add_argument("--method", default=None, help="evidence method (default: the library default)")
    ev.add_argument("--walkers", type=int, default=2048, help="number of walkers (default 2048)")
    ev.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    ev.add_argument("--keep-modes", action="store_true",
                    help="find the posterior's modes first and resample so that each keeps its "
                    "walkers (for separated modes; error bar from 8 groups, no bias probe)")
    ev.add_argument("--netcdf", default=None, help="also write the result to this .nc file")
    ev.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    ev.set_defaults(func=_cmd_evidence)

    cmp = sub.add_parser(
        "compare", help="compare NumPyro models of one dataset by their evidence",
        description="Estimate the evidence of each FILE.py:MODEL on DATA (by default bridge "
        "sampling from NUTS draws) and print log Z, log Bayes factors against the best model "
        "and posterior model probabilities, each with its error bar.")
    cmp.add_argument("targets", nargs="+", metavar="FILE.py:MODEL",
                     help="two or more python files and model function names")
    cmp.add_argument("--data", required=True,
                     help="data file: .csv (header = argument names) or .npz")
    cmp.add_argument("--method", default="bridge", help="bridge (NUTS + bridge sampling, "
                     "default) or anneal (ep.log_evidence)")
    cmp.add_argument("--chains", type=int, default=4, help="NUTS chains (default 4)")
    cmp.add_argument("--draws", type=int, default=1000, help="NUTS draws per chain (default 1000)")
    cmp.add_argument("--warmup", type=int, default=1000, help="NUTS warmup per chain (default 1000)")
    cmp.add_argument("--walkers", type=int, default=2048, help="walkers for --method anneal")
    cmp.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    cmp.add_argument("--no-progress", action="store_true", help="hide progress bars")
    cmp.set_defaults(func=_cmd_compare)

    fig = sub.add_parser("figures", help="regenerate the seed's figures into OUTDIR",
                         description="Regenerate the seed's figures (Figure 1, Figure 4, Example 4.1).")
    fig.add_argument("outdir", help="folder to write the figures to")
    fig.add_argument("--quick", action="store_true", help="small sizes (seconds, for tests)")
    fig.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    fig.set_defaults(func=_cmd_figures)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (CLIError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
