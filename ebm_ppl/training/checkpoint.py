"""Atomic, pickle-free training checkpoints.

A checkpoint directory holds ``state-<iteration>.npz`` (the leaves of the training carry and
the history so far, loaded with ``allow_pickle=False``, so loading cannot run code) and
``manifest.json`` (iteration, the pytree structure as leaf paths with shapes and dtypes, a
fingerprint of the run configuration and the SHA-256 of the npz). Each file is written to a
temporary name, fsync-ed, then moved into place with ``os.replace``
([`ebm_ppl.persist.atomic_replace`][ebm_ppl.persist.atomic_replace], the serialization layer results use too);
the
manifest is replaced last, so a crash at any moment leaves the previous consistent pair.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ..persist import atomic_replace, is_key, storable

MANIFEST = "manifest.json"
FORMAT = "ebm_ppl.training.checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint is corrupt or does not belong to this run."""


def describe(tree) -> list[dict]:
    """Leaf paths, shapes and dtypes of a pytree (arrays or ShapeDtypeStructs)."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [{"path": jax.tree_util.keystr(p), "shape": list(np.shape(x)),
             "dtype": "key" if is_key(x) else str(np.dtype(x.dtype))} for p, x in leaves]


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
    arrays = {f"leaf_{i}": storable(x) for i, x in enumerate(jax.tree.leaves(carry))}
    arrays.update({f"history_{k}": np.asarray(v) for k, v in history.items()})
    name = f"state-{iteration}.npz"

    def write_npz(tmp: Path):
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]  # numpy's stub types allow_pickle

    atomic_replace(directory / name, write_npz)
    manifest = {"format": FORMAT, "iteration": int(iteration), "file": name,
                "sha256": _sha256(directory / name), "structure": describe(carry),
                "history_keys": sorted(history), "fingerprint": fingerprint, "extra": extra}
    def write_manifest(tmp: Path):
        with open(tmp, "w") as f:
            json.dump(manifest, f, indent=1)

    atomic_replace(directory / MANIFEST, write_manifest)
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
                        if is_key(t) else jnp.asarray(a, dtype=t.dtype))
    history = {k: arrays[f"history_{k}"] for k in manifest["history_keys"]}
    return manifest["iteration"], jax.tree.unflatten(treedef, restored), history, manifest["extra"]


def _first_difference(a: list, b: list) -> str:
    for x, y in zip(a, b):
        if x != y:
            return f"{x} vs {y}"
    return "different number of leaves"
