"""Wall and CPU time per gradient, ours vs BlackJAX, timed interleaved in one process (issue 15,
acceptance 0: "at no more wall time per gradient").

The hard 10-D mixture of ``evidence_vs_peers.py`` with its shared N(0, 25 I) reference:
BlackJAX's adaptive tempered SMC (MALA, 4096 particles, 10 steps a stage, its best step 0.5 in
that benchmark) and ``ep.log_partition(method="mala")`` with the given options, each compiled
first, then run round-robin ``--reps`` times; medians of the per-run ratios seconds / gradients.

    python benchmarks/per_gradient_time.py --reps 7
"""

from __future__ import annotations

import argparse

import numpy as np

import evidence_vs_peers as ev

VARIANTS = {
    "ours mala keep_modes, 8192 walkers": dict(num_walkers=8192, keep_modes=True),
    "ours mala keep_modes, 4096 walkers, 10 moves": dict(num_walkers=4096, keep_modes=True,
                                                         num_moves=10),
    "ours mala, 8192 walkers": dict(num_walkers=8192, bias_check=False, precondition=False),
}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--step", type=float, default=0.5, help="BlackJAX's MALA step")
    args = p.parse_args(argv)
    target = ev.targets(True)["mixture10_hard"]
    runners = {f"blackjax mala h={args.step:g}": ev.blackjax_runner(target, args.step)}
    for name, kw in VARIANTS.items():
        kw = dict(kw)
        runners[name] = ev.ours_runner(target, "mala", False, kw.pop("num_walkers"), **kw)
    for run in runners.values():
        run(100)  # compile
    times: dict[str, list] = {name: [] for name in runners}
    for rep in range(args.reps):
        for name, run in runners.items():
            out = run(rep)
            times[name].append((out["wall"] / out["grads"], out["cpu"] / out["grads"]))
    base = np.median(np.asarray(next(iter(times.values()))), axis=0)
    print("| run | wall us / gradient | CPU us / gradient | wall ratio to BlackJAX |")
    print("|---|---|---|---|")
    for name, rows in times.items():
        wall, cpu = np.median(np.asarray(rows), axis=0)
        print(f"| {name} | {1e6 * wall:.3f} | {1e6 * cpu:.3f} | {wall / base[0]:.2f} |")


if __name__ == "__main__":
    main()
