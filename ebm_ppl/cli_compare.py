"""``ebm-ppl compare FILE.py:MODEL_A FILE.py:MODEL_B ... --data DATA``: models of one dataset
compared by their evidence ([`ebm_ppl.compare_evidence`][ebm_ppl.compare_evidence]).

Each model is loaded as in ``ebm-ppl evidence`` and called with the data columns its signature
names (all of them when it takes ``**kwargs``). By default its evidence comes from NUTS draws by
bridge sampling ([`ebm_ppl.bridge_sampling`][ebm_ppl.bridge_sampling]); ``--method anneal`` uses
[`ebm_ppl.log_evidence`][ebm_ppl.log_evidence] instead.
"""

from __future__ import annotations

import inspect

from .cli_evidence import load_data, load_model
from .errors import CLIError

METHODS = ("bridge", "anneal")


def _model_data(spec, model, data) -> dict:
    params = inspect.signature(model).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return dict(data)
    return {k: v for k, v in data.items() if k in params}


def _evidence(spec, model, data, args, key):
    import jax
    from numpyro.infer import MCMC, NUTS

    from . import bridge_sampling, log_evidence

    key_run, key_ev = jax.random.split(key)
    if args.method == "anneal":
        return log_evidence(model, key=key_ev, num_walkers=args.walkers,
                            progress_bar=not args.no_progress, **data)
    mcmc = MCMC(NUTS(model), num_warmup=args.warmup, num_samples=args.draws,
                num_chains=args.chains, chain_method="vectorized",
                progress_bar=not args.no_progress)
    mcmc.run(key_run, **data)
    return bridge_sampling(mcmc, model, key=key_ev, **data)


def run_compare(args) -> None:
    import jax
    import pandas as pd

    from . import compare_evidence

    if args.method not in METHODS:
        raise CLIError(f"--method must be one of {METHODS}, got {args.method!r}")
    for name in ("chains", "draws", "warmup", "walkers"):
        if getattr(args, name) < 1:
            raise CLIError(f"--{name} must be >= 1, got {getattr(args, name)}")
    if len(args.targets) < 2:
        raise CLIError("compare needs at least two FILE.py:MODEL targets")
    models = {spec: load_model(spec) for spec in args.targets}
    data = load_data(args.data)
    per_model = {spec: _model_data(spec, m, data) for spec, m in models.items()}
    unused = [k for k in data if not any(k in d for d in per_model.values())]
    if unused:
        raise CLIError(f"data column(s) {unused} are arguments of none of the models")
    results = {}
    for i, (spec, model) in enumerate(models.items()):
        label = spec.rpartition(":")[2] if sum(
            s.rpartition(":")[2] == spec.rpartition(":")[2] for s in models) == 1 else spec
        try:
            results[label] = _evidence(spec, model, per_model[spec], args,
                                       jax.random.key(args.seed + i))
        except (TypeError, KeyError, IndexError) as err:
            raise CLIError(f"{spec} does not fit the data: {type(err).__name__}: {err}") from None
    table = compare_evidence(results)
    with pd.option_context("display.width", 160, "display.max_columns", 20,
                           "display.float_format", "{:.4g}".format):
        print(table.drop(columns=["prior"]).to_string())
    for label, res in results.items():
        for m in res.messages:
            print(f"note ({label}): {m}")
