"""The one serialization layer: results and training checkpoints to netCDF (through ArviZ /
xarray ``DataTree``) and back exactly, written atomically.

Used by [`ebm_ppl.EvidenceResult.save`][ebm_ppl.evidence.EvidenceResult.save] / ``load`` (and so
by ``ebm-ppl evidence --netcdf``),
[`ebm_ppl.TrainResult.save`][ebm_ppl.training.TrainResult.save] / ``load``,
``BridgeResult.save`` / ``load`` and the checkpoints of ``ebm_ppl.training.checkpoint``;
[`load`][ebm_ppl.persist.load] reads any of them. A file is an ordinary netCDF4 (HDF5)
``DataTree``:

* the result's own ArviZ groups (``posterior`` and ``sample_stats`` with the weights for an
  evidence result, ``training`` with the history for a training run), for ArviZ and xarray;
* group ``ebm_ppl_arrays``: every array of the result, one variable each, bit for bit;
* root attribute ``ebm_ppl_spec``: JSON describing every field (numbers are written with
  ``repr``, which round-trips float64 exactly; nested dicts, lists, tuples and NamedTuples
  such as optax states keep their structure), ``ebm_ppl_format``, the class and version, and
  ``ebm_ppl_sha256``, a checksum of the format, spec and arrays that loading verifies (HDF5
  does not).

Nothing is pickled, so loading a file cannot run code. What cannot be written as data (an
evidence result's ``reference`` distribution object) is stored as its description string.
Every file is written to a temporary name in its directory, fsync-ed and moved into place
([`atomic_replace`][ebm_ppl.persist.atomic_replace]): a crash leaves the previous file whole.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Callable

import jax
import numpy as np

__all__ = ["load", "save_result", "load_result", "register", "atomic_replace", "encode", "decode",
           "storable", "is_key"]

FORMAT_VERSION = 1
_IMPORTABLE = ("optax", "ebm_ppl", "numpyro", "jax", "collections")
_ARRAYS = "ebm_ppl_arrays"


def is_key(x) -> bool:
    """Whether ``x`` is a typed JAX PRNG key array (stored as its ``key_data``)."""
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def storable(x) -> np.ndarray:
    """A NumPy array to write for ``x`` (a key becomes its raw ``key_data``)."""
    return np.asarray(jax.random.key_data(x) if is_key(x) else x)


def atomic_replace(path, write: Callable[[Path], None]) -> Path:
    """Write a file by ``write(tmp)`` to a temporary name in the same directory, fsync it, and
    move it over ``path`` with ``os.replace``: a crash at any moment leaves either the previous
    file or the new one, never a torn one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _add(arrays: dict, name: str, arr) -> str:
    name = name if name not in arrays else f"{name}.{len(arrays)}"
    arrays[name] = arr
    return name


def encode(obj, arrays: dict, name: str = "value") -> object:
    """A JSON-able description of ``obj``; its arrays go into ``arrays`` under names built
    from their path in ``obj`` (``name``, then ``.key`` / ``.index`` below it)."""
    if is_key(obj):
        return {"array": _add(arrays, name, np.asarray(jax.random.key_data(obj))),
                "key": str(jax.random.key_impl(obj))}
    if isinstance(obj, (np.ndarray, np.generic, jax.Array)):
        arr = np.asarray(obj)
        if arr.dtype.kind not in "biufc":
            raise TypeError(f"cannot save an array of dtype {arr.dtype}")
        stored = arr.astype(np.uint8) if arr.dtype == bool else arr
        return {"array": _add(arrays, name, stored), "dtype": str(arr.dtype),
                "kind": "jax" if isinstance(obj, jax.Array) else (
                    "scalar" if isinstance(obj, np.generic) else "numpy")}
    if obj is None or isinstance(obj, (bool, str, int)):  # numpy scalars were handled above
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else {"float": repr(obj)}
    if isinstance(obj, dict):
        if not all(isinstance(k, str) for k in obj):
            raise TypeError("cannot save a dict with non-string keys")
        return {"dict": {k: encode(v, arrays, f"{name}.{k}") for k, v in obj.items()}}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        cls = type(obj)
        return {"namedtuple": f"{cls.__module__}:{cls.__qualname__}",
                "fields": {f: encode(getattr(obj, f), arrays, f"{name}.{f}")
                           for f in obj._fields}}
    if isinstance(obj, (list, tuple)):
        return {type(obj).__name__: [encode(v, arrays, f"{name}.{i}") for i, v in enumerate(obj)]}
    raise TypeError(f"cannot save an object of type {type(obj).__name__}")


def _namedtuple_class(path: str):
    module, _, qualname = path.partition(":")
    mod = sys.modules.get(module)
    if mod is None and module.split(".")[0] in _IMPORTABLE:
        try:
            mod = importlib.import_module(module)
        except ImportError:
            mod = None
    cls = mod
    for part in qualname.split("."):
        cls = getattr(cls, part, None)
    return cls if isinstance(cls, type) and issubclass(cls, tuple) else None


def decode(spec, arrays: dict):
    """Inverse of [`encode`][ebm_ppl.persist.encode]."""
    if not isinstance(spec, dict):
        return spec
    if "float" in spec:
        return float(spec["float"])
    if "array" in spec:
        arr = arrays[spec["array"]]
        if "key" in spec:
            return jax.random.wrap_key_data(arr, impl=spec["key"])
        arr = arr.astype(spec["dtype"])
        if spec["kind"] == "jax":
            return jax.numpy.asarray(arr)
        return arr[()] if spec["kind"] == "scalar" else arr
    if "dict" in spec:
        return {k: decode(v, arrays) for k, v in spec["dict"].items()}
    if "namedtuple" in spec:
        values = {k: decode(v, arrays) for k, v in spec["fields"].items()}
        cls = _namedtuple_class(spec["namedtuple"])
        return cls(**values) if cls is not None else tuple(values.values())
    if "list" in spec:
        return [decode(v, arrays) for v in spec["list"]]
    if "tuple" in spec:
        return tuple(decode(v, arrays) for v in spec["tuple"])
    raise ValueError(f"unknown entry in a saved result: {sorted(spec)}")


def _describe(obj) -> str:
    """E.g. ``Independent(Normal) batch_shape=() event_shape=(2,)`` for a distribution."""
    if isinstance(obj, str):
        return obj
    names: list[str] = []
    base = obj
    while base is not None and len(names) < 8:
        names.append(type(base).__name__)
        base = getattr(base, "base_dist", None)
    text = "(".join(names) + ")" * (len(names) - 1)
    if hasattr(obj, "event_shape"):
        text += f" batch_shape={tuple(obj.batch_shape)} event_shape={tuple(obj.event_shape)}"
    return text


_FORMATS: dict[str, type] = {}


def register(cls: type) -> type:
    """Class decorator: files of ``cls`` (written by [`save_result`][ebm_ppl.persist.save_result])
    can be read back by [`load`][ebm_ppl.persist.load] without naming the class."""
    _FORMATS[cls.__name__] = cls
    return cls


def _digest(arrays: dict, header: str = "") -> str:
    """SHA-256 of ``header`` (the format and the JSON field spec) and every array (name,
    dtype, shape and bytes, in name order): HDF5 does not checksum its data, so a flipped bit
    would otherwise load silently."""
    h = hashlib.sha256(header.encode())
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save_result(result, path, *, arviz_tree=None, as_text=("reference",)):
    """Write a result dataclass to ``path`` (netCDF); ``arviz_tree`` adds its ArviZ groups."""
    import xarray as xr  # here only: importing it costs a second that `import ebm_ppl` skips

    arrays: dict = {}
    fields = {}
    for f in dataclasses.fields(result):
        value = getattr(result, f.name)
        if f.name in as_text and value is not None and not isinstance(value, str):
            value = _describe(value)
        fields[f.name] = encode(value, arrays, f.name)
    fmt = f"ebm_ppl.{type(result).__name__}/{FORMAT_VERSION}"
    data = {k: (tuple(f"{k}_dim_{j}" for j in range(a.ndim)), a) for k, a in arrays.items()}
    groups = {} if arviz_tree is None else {
        node.path: node.to_dataset() for node in arviz_tree.subtree if node.path != "/"}
    root_attrs = {} if arviz_tree is None else dict(arviz_tree.attrs)
    spec = json.dumps(fields)
    root_attrs.update(ebm_ppl_format=fmt, ebm_ppl_spec=spec,
                      ebm_ppl_sha256=_digest(arrays, f"{fmt}\n{spec}"))
    groups["/"] = xr.Dataset(attrs=root_attrs)
    groups[f"/{_ARRAYS}"] = xr.Dataset(data)
    tree = xr.DataTree.from_dict(groups)
    encoding = {f"/{_ARRAYS}": {k: {"_FillValue": None} for k in data}}
    return atomic_replace(path, lambda tmp: tree.to_netcdf(tmp, engine="h5netcdf",
                                                            encoding=encoding))


def _read(path) -> tuple[str | None, dict | None, dict | None]:
    """The format, the field spec and the arrays of a file written by `save_result`, or
    ``ValueError`` naming ``path`` when it is missing, unreadable or corrupt."""
    import xarray as xr  # here only: importing it costs a second that `import ebm_ppl` skips

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path {str(path)!r} is not a file")
    try:
        with xr.open_datatree(path, engine="h5netcdf", mask_and_scale=False,
                              decode_times=False) as tree:
            fmt = tree.attrs.get("ebm_ppl_format")
            spec = tree.attrs.get("ebm_ppl_spec")
            digest = tree.attrs.get("ebm_ppl_sha256")
            ds = tree[_ARRAYS].to_dataset() if _ARRAYS in tree.children else None
            arrays = None if ds is None else {k: np.array(v.values)
                                              for k, v in ds.data_vars.items()}
        fields = None if spec is None else json.loads(spec)
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(f"path {str(path)!r} is not a readable netCDF file (corrupt or "
                         f"truncated?): {type(err).__name__}: {err}") from None
    # (files of the first release with a checksum hashed the arrays only)
    if digest is not None and arrays is not None and digest not in (
            _digest(arrays, f"{fmt}\n{spec}"), _digest(arrays)):
        raise ValueError(f"path {str(path)!r} is corrupt: its contents do not match the SHA-256 "
                         "written with them")
    return fmt, fields, arrays


def load_result(path, cls):
    """Read a file written by [`save_result`][ebm_ppl.persist.save_result] for class ``cls``;
    ``ValueError`` naming ``path`` when it is missing, unreadable, corrupt or holds something
    else."""
    return _build(path, cls, *_read(path))


def _build(path, cls, fmt, spec, arrays):
    want = f"ebm_ppl.{cls.__name__}/{FORMAT_VERSION}"
    if fmt != want or spec is None or arrays is None:
        raise ValueError(f"path {str(path)!r} does not hold an {cls.__name__} (format "
                         f"{fmt!r}, expected {want!r})")
    return cls(**{k: decode(v, arrays) for k, v in spec.items()})


def load(path):
    """Read any file ebm_ppl writes (an evidence, bridge-sampling or training result, a
    training checkpoint): the class is the one named in the file."""
    fmt, spec, arrays = _read(path)
    name, _, version = (fmt or "").removeprefix("ebm_ppl.").partition("/")
    cls = _FORMATS.get(name)
    if cls is None or version != str(FORMAT_VERSION):
        raise ValueError(f"path {str(path)!r} does not hold an ebm_ppl file this version "
                         f"reads (format {fmt!r}; known: {', '.join(sorted(_FORMATS))})")
    return _build(path, cls, fmt, spec, arrays)
