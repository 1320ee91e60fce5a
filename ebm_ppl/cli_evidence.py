"""``ebm-ppl evidence FILE.py:MODEL --data DATA``: the log evidence of a user's NumPyro model.

The model is called as ``model(**data)``: each column of a CSV file (header row = argument
names) or each array of an ``.npz`` file becomes a keyword argument of the model.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
from pathlib import Path

import numpy as np

from .errors import CLIError


def load_model(spec: str):
    """``path/to/file.py:model_name`` -> the model function."""
    path_str, sep, name = spec.rpartition(":")
    if not sep or not path_str or not name:
        raise CLIError(f"expected FILE.py:MODEL, got {spec!r}")
    path = Path(path_str)
    if not path.is_file():
        raise CLIError(f"model file not found: {path}")
    module_spec = importlib.util.spec_from_file_location(f"_ebm_ppl_user_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    sys.path.insert(0, str(path.parent.resolve()))
    try:
        module_spec.loader.exec_module(module)
    except Exception as err:  # noqa: BLE001 -- the user's file failed to import
        raise CLIError(f"could not import {path}: {type(err).__name__}: {err}") from None
    finally:
        sys.path.pop(0)
    model = getattr(module, name, None)
    if model is None or not callable(model):
        available = [n for n, v in vars(module).items()
                     if inspect.isfunction(v) and v.__module__ == module.__name__]
        raise CLIError(f"no model named {name!r} in {path}; functions there: {available}")
    return model


def load_data(path_str: str) -> dict:
    """Read a ``.csv`` (header row of names) or ``.npz`` file into a dict of float arrays."""
    path = Path(path_str)
    if not path.is_file():
        raise CLIError(f"data file not found: {path}")
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as npz:
                return {k: np.asarray(npz[k]) for k in npz.files}
        except (OSError, ValueError) as err:
            raise CLIError(f"could not read {path} as .npz: {err}") from None
    if path.suffix == ".csv":
        try:
            table = np.genfromtxt(path, delimiter=",", names=True, dtype=float, encoding="utf-8")
        except (OSError, ValueError) as err:
            raise CLIError(f"could not read {path} as CSV: {err}") from None
        if table.dtype.names is None:
            raise CLIError(f"{path} needs a header row naming the model's arguments")
        data = {n: np.atleast_1d(table[n]) for n in table.dtype.names}
        bad = [n for n, v in data.items() if not np.all(np.isfinite(v))]
        if bad:
            raise CLIError(f"{path}: column(s) {bad} contain missing or non-numeric values")
        return data
    raise CLIError(f"data must be a .csv or .npz file, got {path.suffix or 'no extension'!r}")


def run_evidence(args) -> None:
    import jax

    from . import log_evidence

    model = load_model(args.target)
    data = load_data(args.data)
    params = inspect.signature(model).parameters
    accepts_kwargs = any(p.kind is p.VAR_KEYWORD for p in params.values())
    unknown = [k for k in data if k not in params and not accepts_kwargs]
    if unknown:
        raise CLIError(f"data column(s) {unknown} are not arguments of {args.target} "
                       f"(its arguments: {list(params)})")
    options = {"key": jax.random.key(args.seed), "num_walkers": args.walkers,
               "progress_bar": not args.no_progress}
    if args.method is not None:
        options["method"] = args.method
    if args.keep_modes:
        options["keep_modes"] = True
    try:
        result = log_evidence(model, **options, **data)
    except (TypeError, KeyError, IndexError) as err:
        raise CLIError(f"the model does not fit the data: {type(err).__name__}: {err}") from None
    print(result)
    if args.netcdf:
        result.save(args.netcdf)  # the format EvidenceResult.load reads (and ArviZ opens)
        print(f"wrote {args.netcdf}")
