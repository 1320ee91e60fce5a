"""Wall and CPU time per gradient, ours vs BlackJAX, timed interleaved in one process (issue 15,
acceptance 0: "at no more wall time per gradient").

The hard 10-D mixture of ``evidence_vs_peers.py`` with its shared N(0, 25 I) reference:
BlackJAX's adaptive tempered SMC (MALA, 4096 particles, 10 steps a stage, its best step 0.5 in
that benchmark) and ``ep.log_partition(method="mala")`` with the given options, each compiled
first, then run round-robin ``--reps`` times; medians of the per-run ratios seconds / gradients.

    python benchmarks/per_gradient_time.py --reps 7
    python benchmarks/per_gradient_time.py --kernel   # one MALA step alone, ours vs BlackJAX
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import evidence_vs_peers as ev

VARIANTS = {
    "ours mala keep_modes, 8192 walkers": dict(num_walkers=8192, keep_modes=True),
    "ours mala keep_modes, 4096 walkers, 10 moves": dict(num_walkers=4096, keep_modes=True,
                                                         num_moves=10),
    "ours mala, 8192 walkers": dict(num_walkers=8192, bias_check=False, precondition=False),
}


def kernel_times(target, n=8192, step=0.05, reps=60, rounds=3):
    """Microseconds per walker of ONE MALA step at beta = 1/2, compiled and timed alone on the
    same (n, dim) walkers: ours (`ebm_ppl.evidence.moves.mala_move` on the geometric path, with the
    engine's per-walker step jitter) and `blackjax.mala` under `vmap`; medians of ``reps``."""
    import blackjax
    import jax
    import jax.numpy as jnp

    from ebm_ppl.energy import energy_from_fn
    from ebm_ppl.evidence.moves import mala_move
    from ebm_ppl.evidence.paths import geometric_path

    d, beta = target.dim, 0.5
    path = geometric_path(energy_from_fn(target.potential, jnp.zeros(d)), ev.reference(d))
    x0 = 0.2 * ev.REF_SCALE * jax.random.normal(jax.random.key(1), (n, d))
    move, steps = mala_move(path, precondition=False), jnp.full((n,), step)

    def ours(key, state):
        k_jit, k_mv = jax.random.split(key)
        jitter = jnp.exp(2.0 * jax.random.uniform(k_jit, (n,)) - 1.0)
        return move(k_mv, state, jnp.asarray(beta), steps * jitter)[0]

    log_prior, log_likelihood = ev.blackjax_log_densities(target)

    def log_density(x):  # BlackJAX's tempered density
        return log_prior(x) + beta * log_likelihood(x)

    kernel = blackjax.mala.build_kernel()

    def theirs(key, state):
        return jax.vmap(lambda k, s: kernel(k, s, log_density, step)[0])(
            jax.random.split(key, n), state)

    states = {"ours": path.evaluate_batch(x0),
              "blackjax": jax.vmap(blackjax.mala.init, in_axes=(0, None))(x0, log_density)}
    fns = {"ours": jax.jit(ours), "blackjax": jax.jit(theirs)}
    for name, fn in fns.items():
        jax.block_until_ready(fn(jax.random.key(0), states[name]))
    times: dict[str, list] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            ts = []
            for i in range(reps):
                t0 = time.perf_counter()
                jax.block_until_ready(fn(jax.random.key(i), states[name]))
                ts.append(time.perf_counter() - t0)
            times[name].append(1e6 * float(np.median(ts)) / n)
    return times


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--step", type=float, default=0.5, help="BlackJAX's MALA step")
    p.add_argument("--kernel", action="store_true",
                   help="time one MALA step alone (ours vs BlackJAX), not whole runs")
    args = p.parse_args(argv)
    target = ev.targets(True)["mixture10_hard"]
    if args.kernel:
        for name, us in kernel_times(target).items():
            print(f"{name}: us per walker-step by round {', '.join(f'{u:.3f}' for u in us)}")
        return
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
