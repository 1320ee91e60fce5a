"""Atomic, pickle-free training checkpoints, in the format of every other ebm_ppl file.

A checkpoint directory holds one file, ``checkpoint.nc``: a
[`Checkpoint`][ebm_ppl.training.checkpoint.Checkpoint] (iteration, the leaves of the training
carry, its pytree structure as leaf paths with shapes and dtypes, the history so far, a
fingerprint of the run configuration and run metadata) written by
[`ebm_ppl.persist.save_result`][ebm_ppl.persist.save_result], the serialization layer of
results: netCDF with a SHA-256 of its contents, nothing pickled, written to a temporary name,
fsync-ed and moved into place, so a crash at any moment leaves the previous checkpoint whole,
and [`ebm_ppl.persist.load`][ebm_ppl.persist.load] reads it like any result file.

Directories written by earlier releases (``manifest.json`` and ``state-<iteration>.npz``) are
still read, with a DeprecationWarning; the next save replaces them with ``checkpoint.nc``.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..persist import is_key, load_result, register, save_result

__all__ = ["Checkpoint", "CheckpointError", "FILE", "save", "load", "exists", "read_extra",
           "resumed_chunk_size", "describe", "fingerprint", "run_metadata"]

FILE = "checkpoint.nc"
MANIFEST = "manifest.json"  # the npz + JSON format of earlier releases (read only)
FORMAT = "ebm_ppl.training.checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint is corrupt or does not belong to this run."""


@register
@dataclass(frozen=True)
class Checkpoint:
    """One saved state of a training run: ``leaves`` are the carry's leaves in
    ``jax.tree.leaves`` order (PRNG keys as typed keys), ``structure`` their paths, shapes and
    dtypes ([`describe`][ebm_ppl.training.checkpoint.describe]), ``history`` the per-iteration
    arrays so far, ``fingerprint`` what the run must match to resume, ``extra`` run metadata
    (e.g. its chunk size)."""

    iteration: int
    leaves: list
    structure: list
    history: dict
    fingerprint: dict
    extra: dict


def describe(tree) -> list[dict]:
    """Leaf paths, shapes and dtypes of a pytree (arrays or ShapeDtypeStructs)."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [{"path": jax.tree_util.keystr(p), "shape": list(np.shape(x)),
             "dtype": "key" if is_key(x) else str(np.dtype(x.dtype))} for p, x in leaves]


def fingerprint(config: dict, data, key, params) -> dict:
    """What a run must match to resume from a checkpoint: its scalar options (``config``),
    the data (shape and SHA-256), the key and the parameters' structure."""
    fp: dict[str, Any] = {k: v for k, v in config.items()
                          if isinstance(v, (int, float, str, bool, type(None)))}
    fp["data_shape"] = list(data.shape)
    fp["data_sha256"] = hashlib.sha256(np.ascontiguousarray(data).tobytes()).hexdigest()
    fp["key"] = np.asarray(jax.random.key_data(key)).tolist()
    fp["params"] = describe(params)
    return fp


def run_metadata(chunk_size: int, info: dict) -> dict:
    """The ``extra`` of a checkpoint: the chunk size a resumed run must keep and the scalar
    entries of the run's ``info``."""
    return {"chunk_size": chunk_size,
            "info": {k: v for k, v in info.items() if isinstance(v, (int, float, str, bool))}}


def save(directory, iteration: int, carry, history: dict, fingerprint: dict, extra: dict):
    """Write ``carry`` (any pytree of arrays), ``history`` and metadata atomically."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = Checkpoint(iteration=int(iteration), leaves=list(jax.tree.leaves(carry)),
                       structure=describe(carry),
                       history={k: np.asarray(v) for k, v in history.items()},
                       fingerprint=fingerprint, extra=extra)
    save_result(state, directory / FILE)
    # only once the new file is in place: an earlier release's checkpoint is superseded
    (directory / MANIFEST).unlink(missing_ok=True)
    for old in directory.glob("state-*.npz"):
        old.unlink(missing_ok=True)


def exists(directory) -> bool:
    return directory is not None and ((Path(directory) / FILE).exists()
                                      or (Path(directory) / MANIFEST).exists())


def _read(directory) -> Checkpoint:
    directory = Path(directory)
    if (directory / FILE).exists() or not (directory / MANIFEST).exists():
        try:
            return load_result(directory / FILE, Checkpoint)
        except ValueError as err:
            raise CheckpointError(f"checkpoint in {directory} is corrupt or unreadable: "
                                  f"{err}") from None
    warnings.warn(f"checkpoint in {directory} is in the npz + JSON format of earlier releases; "
                  f"it is read, and the next save replaces it with {FILE} (the format of all "
                  "ebm_ppl files); this format will not be read in a later release",
                  DeprecationWarning, stacklevel=3)
    return _read_legacy(directory)


def read_extra(directory) -> dict:
    """The run metadata of a checkpoint (e.g. its chunk size), or {} if unreadable."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # load() warns once
            return dict(_read(directory).extra)
    except (CheckpointError, AttributeError):
        return {}


def resumed_chunk_size(directory, chunk_size, default: int) -> int:
    """The chunk size a resumed run must keep (its checkpoint's), or CheckpointError when the
    caller asks for another one (the results would not be identical)."""
    extra = read_extra(directory)
    if chunk_size is not None and extra.get("chunk_size", chunk_size) != chunk_size:
        raise CheckpointError(f"chunk_size={chunk_size} differs from the checkpoint's "
                              f"{extra.get('chunk_size')}: results would not be identical")
    return extra.get("chunk_size", default)


def load(directory, template, fingerprint: dict):
    """Read the checkpoint in ``directory`` into the structure of ``template``.

    ``template`` is the carry (or its ``jax.eval_shape``); raises
    [`CheckpointError`][ebm_ppl.training.checkpoint.CheckpointError]
    naming what differs when the checkpoint is corrupt, or was written by a different run.
    Returns ``(iteration, carry, history, extra)``.
    """
    directory = Path(directory)
    state = _read(directory)
    saved = state.fingerprint
    diff = sorted(k for k in set(saved) | set(fingerprint) if saved.get(k) != fingerprint.get(k))
    if diff:
        details = "; ".join(f"{k}: checkpoint {saved.get(k)!r} vs now {fingerprint.get(k)!r}"
                            for k in diff)
        raise CheckpointError(f"checkpoint in {directory} belongs to a different run ({details}); "
                              "use another checkpoint_dir or resume=False")
    expected = describe(template)
    if state.structure != expected:
        raise CheckpointError(
            f"checkpoint in {directory} has a different parameter/optimizer structure than this "
            f"run: {len(state.structure)} saved leaves vs {len(expected)} now (first "
            f"difference: {_first_difference(state.structure, expected)})")
    leaves, treedef = jax.tree.flatten(template)
    restored = []
    for t, a in zip(leaves, state.leaves, strict=True):
        if is_key(t):
            restored.append(a if is_key(a) else jax.random.wrap_key_data(jnp.asarray(a)))
        else:
            restored.append(jnp.asarray(a, dtype=t.dtype))
    history = {k: np.asarray(v) for k, v in state.history.items()}
    return state.iteration, jax.tree.unflatten(treedef, restored), history, state.extra


def _read_legacy(directory: Path) -> Checkpoint:
    """A checkpoint of earlier releases: ``manifest.json`` naming ``state-<it>.npz`` and its
    SHA-256 (the leaves as ``leaf_<i>``, PRNG keys as key data, the history as
    ``history_<name>``)."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
        if manifest.get("format") != FORMAT:
            raise CheckpointError(f"unknown checkpoint format {manifest.get('format')!r}")
        path = directory / manifest["file"]
        if hashlib.sha256(path.read_bytes()).hexdigest() != manifest["sha256"]:
            raise CheckpointError(f"{path} does not match its SHA-256 in the manifest")
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        leaves = [arrays[f"leaf_{i}"] for i in range(len(manifest["structure"]))]
        history = {k: arrays[f"history_{k}"] for k in manifest["history_keys"]}
    except CheckpointError as err:
        raise CheckpointError(f"checkpoint in {directory} is corrupt: {err}") from None
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"checkpoint in {directory} is corrupt or unreadable: "
                              f"{type(err).__name__}: {err}") from None
    return Checkpoint(iteration=manifest["iteration"], leaves=leaves,
                      structure=manifest["structure"], history=history,
                      fingerprint=manifest["fingerprint"], extra=manifest["extra"])


def _first_difference(a: list, b: list) -> str:
    for x, y in zip(a, b):
        if x != y:
            return f"{x} vs {y}"
    return "different number of leaves"
