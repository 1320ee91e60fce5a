"""Atomic, pickle-free training checkpoints.

A checkpoint directory holds ``state-<iteration>.npz`` (the leaves of the training carry and
the history so far, loaded with ``allow_pickle=False``, so loading cannot run code) and
``manifest.json`` (iteration, the pytree structure as leaf paths with shapes and dtypes, a
fingerprint of the run configuration and the SHA-256 of the npz). Each file is written to a
temporary name, fsync-ed, then moved into place with ``os.replace``; the manifest is replaced
last, so a crash at any moment leaves the previous consistent pair.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

MANIFEST = "manifest.json"
FORMAT = "ebm_ppl.training.checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint is corrupt or does not belong to this run."""


def _is_key(x) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def describe(tree) -> list[dict]:
    """Leaf paths, shapes and dtypes of a pytree (arrays or ShapeDtypeStructs)."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [{"path": jax.tree_util.keystr(p), "shape": list(np.shape(x)),
             "dtype": "key" if _is_key(x) else str(np.dtype(x.dtype))} for p, x in leaves]


def _fsync_replace(tmp: str, final: Path):
    with open(tmp, "rb+") as f:
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save(directory, iteration: int, carry, history: dict, fingerprint: dict, extra: dict):
    """Write ``carry`` (any pytree of arrays), ``history`` and metadata atomically."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    leaves = jax.tree.leaves(carry)
    arrays = {f"leaf_{i}": np.asarray(jax.random.key_data(x) if _is_key(x) else x)
              for i, x in enumerate(leaves)}
    arrays.update({f"history_{k}": np.asarray(v) for k, v in history.items()})
    name = f"state-{iteration}.npz"
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".npz.tmp")
    with os.fdopen(fd, "wb") as f:
        np.savez(f, **arrays)
    _fsync_replace(tmp, directory / name)
    manifest = {"format": FORMAT, "iteration": int(iteration), "file": name,
                "sha256": _sha256(directory / name), "structure": describe(carry),
                "history_keys": sorted(history), "fingerprint": fingerprint, "extra": extra}
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".json.tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(manifest, f, indent=1)
    _fsync_replace(tmp, directory / MANIFEST)
    for old in directory.glob("state-*.npz"):  # only after the new manifest is in place
        if old.name != name:
            old.unlink(missing_ok=True)


def exists(directory) -> bool:
    return directory is not None and (Path(directory) / MANIFEST).exists()


def read_extra(directory) -> dict:
    """The run metadata of a checkpoint (e.g. its chunk size), or {} if unreadable."""
    try:
        return json.loads((Path(directory) / MANIFEST).read_text()).get("extra", {})
    except (OSError, ValueError, AttributeError):
        return {}


def load(directory, template, fingerprint: dict):
    """Read the checkpoint in ``directory`` into the structure of ``template``.

    ``template`` is the carry (or its ``jax.eval_shape``); raises :class:`CheckpointError`
    naming what differs when the checkpoint is corrupt, or was written by a different run.
    Returns ``(iteration, carry, history, extra)``.
    """
    directory = Path(directory)
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
        if manifest.get("format") != FORMAT:
            raise CheckpointError(f"unknown checkpoint format {manifest.get('format')!r}")
        path = directory / manifest["file"]
        if _sha256(path) != manifest["sha256"]:
            raise CheckpointError(f"{path} does not match its SHA-256 in the manifest")
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except CheckpointError as err:
        raise CheckpointError(f"checkpoint in {directory} is corrupt: {err}") from None
    except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"checkpoint in {directory} is corrupt or unreadable: "
                              f"{type(err).__name__}: {err}") from None
    saved = manifest["fingerprint"]
    diff = sorted(k for k in set(saved) | set(fingerprint) if saved.get(k) != fingerprint.get(k))
    if diff:
        details = "; ".join(f"{k}: checkpoint {saved.get(k)!r} vs now {fingerprint.get(k)!r}"
                            for k in diff)
        raise CheckpointError(f"checkpoint in {directory} belongs to a different run ({details}); "
                              "use another checkpoint_dir or resume=False")
    expected = describe(template)
    if manifest["structure"] != expected:
        raise CheckpointError(
            f"checkpoint in {directory} has a different parameter/optimizer structure than this "
            f"run: {len(manifest['structure'])} saved leaves vs {len(expected)} now (first "
            f"difference: {_first_difference(manifest['structure'], expected)})")
    leaves, treedef = jax.tree.flatten(template)
    restored = []
    for i, t in enumerate(leaves):
        a = arrays[f"leaf_{i}"]
        restored.append(jax.random.wrap_key_data(a)
                        if _is_key(t) else jnp.asarray(a, dtype=t.dtype))
    history = {k: arrays[f"history_{k}"] for k in manifest["history_keys"]}
    return manifest["iteration"], jax.tree.unflatten(treedef, restored), history, manifest["extra"]


def _first_difference(a: list, b: list) -> str:
    for x, y in zip(a, b):
        if x != y:
            return f"{x} vs {y}"
    return "different number of leaves"
