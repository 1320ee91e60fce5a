"""Walker-steps per second of gradient kernels, side by side, as a ratio to a bare loop.

Every variant moves the same ``--walkers`` walkers for ``--steps`` steps on the same energy
(a 10-D two-mode mixture, float32 unless ``--x64``), compiled once, then timed ``--repeats``
times; the table shows the median and its ratio to the bare loop:

* bare loop     -- ``lax.scan`` of the ULA update and one ``vmap(value_and_grad(U))``: the
                   floor for any gradient sampler (one normal draw for all walkers per step).
* ep ULA/MALA/Jarzynski -- the pure kernels ``ula_step`` / ``mala_step`` / ``jarzynski_step``
                   (ULA + the eq. 102-103 log weight) vmapped over walkers (one
                   key per walker, as in ``chain_method="vectorized"``) inside ``lax.scan``.
* ep.ULA/ep.MALA (MCMC) -- the ``numpyro.infer.MCMC`` kernels: ``kernel.init`` with a batch
                   of keys (what MCMC does with vectorized chains) and ``lax.scan`` of
                   ``kernel.sample``, i.e. exactly the step MCMC runs, without NumPyro's
                   per-draw collection (``fori_collect`` writes every state into the sample
                   buffer each step, even with thinning). ``--with-collection`` also times
                   ``MCMC.run`` itself (compile excluded by differencing two run lengths).
* blackjax.mala -- ``blackjax.mala(logdensity, step)`` vmapped the same way.
* NumPyro HMC(num_steps=1) -- NumPyro's own kernel, vectorized init and scanned ``sample``.

Usage: ``python benchmarks/kernel_throughput.py [--walkers 4096] [--steps 200] [--repeats 5]``
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import time


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--walkers", type=int, default=4096)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--dim", type=int, default=10)
    p.add_argument("--step-size", type=float, default=0.05)
    p.add_argument("--x64", action="store_true", help="float64 instead of float32")
    p.add_argument("--with-collection", action="store_true",
                   help="also time MCMC.run including NumPyro's per-draw collection")
    p.add_argument("--only", default="", help="comma-separated subset of variant names")
    args = p.parse_args(argv)
    for name in ("walkers", "steps", "repeats", "dim"):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be positive")
    if args.step_size <= 0:
        p.error("--step-size must be positive")
    return args


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown CPU"


def build_variants(args):
    """name -> (init_fn(key) -> carry, run_fn(carry) -> carry), all jit-compiled."""
    import jax
    import jax.numpy as jnp
    from numpyro.infer import HMC

    import ebm_ppl as ep
    from ebm_ppl.kernels import jarzynski_init, jarzynski_step, langevin_init, mala_step, ula_step

    target = ep.targets.two_mode_mixture(d=args.dim)
    potential = target.potential
    n, steps, h = args.walkers, args.steps, args.step_size
    dtype = jnp.float64 if args.x64 else jnp.float32
    vg = jax.vmap(jax.value_and_grad(potential))

    def start(key):
        return (target.sample(key, n) * 0.5).astype(dtype)

    # -- bare loop: the floor -----------------------------------------------------------
    def bare_init(key):
        x = start(key)
        u, g = vg(x)
        return key, x, u, g

    def bare_run(carry):
        def body(c, _):
            key, x, u, g = c
            key, sub = jax.random.split(key)
            x = x - h * g + jnp.sqrt(2.0 * h) * jax.random.normal(sub, x.shape, x.dtype)
            u, g = vg(x)
            return (key, x, u, g), None
        return jax.lax.scan(body, carry, None, length=steps)[0]

    # -- pure kernels, vmapped over walkers ---------------------------------------------
    def pure(step, init_fn=langevin_init):
        def init(key):
            return key, jax.vmap(lambda x: init_fn(x, potential))(start(key))

        def run(carry):
            one = jax.vmap(lambda k, s: step(k, s, potential, h))

            def body(c, _):
                key, state = c
                key, sub = jax.random.split(key)
                state, _ = one(jax.random.split(sub, n), state)
                return (key, state), None
            return jax.lax.scan(body, carry, None, length=steps)[0]
        return init, run

    # -- NumPyro MCMCKernels: MCMC's vectorized init, then its sample step in a scan --------
    def numpyro_kernel(make):
        kernel = make()

        def init(key):
            keys = jax.random.split(key, n)
            return kernel.init(keys, 0, start(key), (), {})

        def run(state):
            def body(s, _):
                return kernel.sample(s, (), {}), None
            return jax.lax.scan(body, state, None, length=steps)[0]
        return init, run

    # -- blackjax.mala ------------------------------------------------------------------
    def blackjax_mala():
        import blackjax

        mala = blackjax.mala(lambda x: -potential(x), h)

        def init(key):
            return key, jax.vmap(mala.init)(start(key))

        def run(carry):
            def body(c, _):
                key, state = c
                key, sub = jax.random.split(key)
                state, _ = jax.vmap(mala.step)(jax.random.split(sub, n), state)
                return (key, state), None
            return jax.lax.scan(body, carry, None, length=steps)[0]
        return init, run

    variants = {
        "bare loop": (bare_init, bare_run),
        "ep ULA (pure kernel)": pure(ula_step),
        "ep Jarzynski (pure kernel)": pure(jarzynski_step, jarzynski_init),
        "ep MALA (pure kernel)": pure(mala_step),
        "ep.ULA (MCMC kernel)": numpyro_kernel(
            lambda: ep.ULA(potential_fn=potential, step_size=h)),
        "ep.MALA (MCMC kernel)": numpyro_kernel(
            lambda: ep.MALA(potential_fn=potential, step_size=h, adapt_step_size=False)),
        "ep.MALA (MCMC kernel, adapt on)": numpyro_kernel(
            lambda: ep.MALA(potential_fn=potential, step_size=h)),
        "blackjax.mala": blackjax_mala(),
        "numpyro HMC(num_steps=1)": numpyro_kernel(
            lambda: HMC(potential_fn=potential, step_size=h, num_steps=1,
                        adapt_step_size=False, adapt_mass_matrix=False)),
    }
    return {k: (init, jax.jit(run)) for k, (init, run) in variants.items()}


def time_variants(variants, repeats, key):
    """Compile every variant, then time them round-robin (a load spike on a shared host then
    hits all variants alike); returns name -> (median wall, median process CPU time)."""
    import jax

    carries = {}
    for name, (init, run) in variants.items():
        carries[name] = init(key)
        jax.block_until_ready(run(carries[name]))  # compile
        print(f"  compiled {name}", flush=True)
    wall = {name: [] for name in variants}
    cpu = {name: [] for name in variants}
    for _ in range(repeats):
        for name, (_, run) in variants.items():
            t0, c0 = time.perf_counter(), time.process_time()
            jax.block_until_ready(run(carries[name]))
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    return {name: (statistics.median(wall[name]), statistics.median(cpu[name]))
            for name in variants}


def time_mcmc_run(args, key):
    """MCMC.run with vectorized chains, collection included. Every ``run`` call compiles
    again (about a second here), so time runs of S and 3S draws and divide the difference
    by 2: what remains is S steps with NumPyro's per-draw collection."""
    import jax
    from numpyro.infer import MCMC

    import ebm_ppl as ep

    target = ep.targets.two_mode_mixture(d=args.dim)
    init = (target.sample(key, args.walkers) * 0.5).astype(
        "float64" if args.x64 else "float32")
    out = {}
    for name, cls in (("ep.ULA (MCMC.run, with collection)", ep.ULA),
                      ("ep.MALA (MCMC.run, with collection)", ep.MALA)):
        times = {}
        for length in (args.steps, 3 * args.steps):
            kw = {} if cls is ep.ULA else {"adapt_step_size": False}
            mcmc = MCMC(cls(potential_fn=target.potential, step_size=args.step_size, **kw),
                        num_warmup=0, num_samples=length, num_chains=args.walkers,
                        chain_method="vectorized", progress_bar=False)
            runs = []
            for _ in range(max(3, args.repeats // 2)):
                t0, c0 = time.perf_counter(), time.process_time()
                mcmc.run(key, init_params=init)
                jax.block_until_ready(mcmc.get_samples())
                runs.append((time.perf_counter() - t0, time.process_time() - c0))
            times[length] = (min(r[0] for r in runs), min(r[1] for r in runs))
        out[name] = tuple((b - a) / 2 for a, b in zip(times[args.steps], times[3 * args.steps]))
    return out


def main(argv=None):
    args = parse_args(argv)
    import jax

    if args.x64:
        jax.config.update("jax_enable_x64", True)
    key = jax.random.key(0)
    variants = build_variants(args)
    if args.only:
        keep = [s.strip() for s in args.only.split(",")]
        variants = {k: v for k, v in variants.items() if k == "bare loop" or k in keep}
    results = time_variants(variants, args.repeats, key)
    if args.with_collection:
        results.update(time_mcmc_run(args, key))

    walker_steps = args.walkers * args.steps
    bare_wall, bare_cpu = results["bare loop"]
    device = jax.devices()[0]
    where = cpu_model() if device.platform == "cpu" else getattr(device, "device_kind", "?")
    print(f"\n{args.dim}-D two-mode mixture, {args.walkers} walkers x {args.steps} steps, "
          f"{'float64' if args.x64 else 'float32'}, median of {args.repeats}; "
          f"{device.platform}: {where}; jax {jax.__version__}")
    print("wall = elapsed time; cpu = process CPU time (all threads), steadier on a busy host")
    print(f"{'variant':40s} {'wall [s]':>9s} {'walker-steps/s':>15s} {'x bare':>7s} "
          f"{'cpu [s]':>9s} {'x bare':>7s}")
    for name, (wall, cpu) in results.items():
        print(f"{name:40s} {wall:9.4f} {walker_steps / wall:15.3e} {wall / bare_wall:7.2f} "
              f"{cpu:9.4f} {cpu / bare_cpu:7.2f}")


if __name__ == "__main__":
    main()
