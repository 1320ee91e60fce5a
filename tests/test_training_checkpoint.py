"""Checkpoints: an interrupted run resumed equals the uninterrupted run bit for bit (CPU);
corrupt or foreign checkpoints are clear errors; files are written atomically, no pickle."""

import hashlib
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import xarray as xr

import ebm_ppl as ep
from ebm_ppl.training import CheckpointError
from ebm_ppl.training import checkpoint as ckpt_mod

DATA = np.random.default_rng(5).normal(1.0, 0.5, size=(300, 1))
KEY = jax.random.key(7)


def energy(p, x):
    return 0.5 * jnp.exp(p["s"]) * jnp.sum((x - p["m"]) ** 2)


P0 = {"m": jnp.asarray(0.0), "s": jnp.asarray(0.0)}
OPT = optax.adam(0.05)  # one object: repeated runs reuse the compiled programs
WALKERS0 = np.random.default_rng(6).normal(size=(64, 1))
OPTIONS = {
    # step 0.3 degrades the weights fast: the resampling branch runs inside the checkpointed span
    "jarzynski": dict(init_walkers=WALKERS0, log_z0=0.5 * np.log(2 * np.pi), step_size=0.3),
    "cd": dict(reinit_every=3, step_size=0.1),
    "nce": dict(batch_size=50),
}


def _run(method, num_iterations, **kw):
    return ep.train(energy, P0, DATA, key=KEY, method=method, optimizer=OPT,
                    num_walkers=64, num_iterations=num_iterations, chunk_size=7,
                    progress_bar=False, **OPTIONS[method], **kw)


def _assert_identical(a, b):
    leaves = [jax.tree.leaves((r.params, r.opt_state)) for r in (a, b)]
    for x, y in zip(*leaves, strict=True):
        assert np.array_equal(np.asarray(x), np.asarray(y))
    assert a.history.keys() == b.history.keys()
    for k in a.history:
        assert np.array_equal(a.history[k], b.history[k]), k
    for x, y in [(a.walkers, b.walkers), (a.log_weights, b.log_weights)]:
        assert (x is None and y is None) or np.array_equal(x, y)
    assert a.log_z == b.log_z


def _interrupt_at(iteration):
    def callback(it, params):
        if it >= iteration:
            raise KeyboardInterrupt
    return callback


@pytest.mark.parametrize("method", ["jarzynski", "cd", "nce"])
def test_interrupted_and_resumed_run_is_bit_for_bit(method, tmp_path):
    reference = _run(method, 45)
    if method == "jarzynski":
        assert reference.history["resampled"].any()
    with pytest.raises(KeyboardInterrupt):
        _run(method, 45, checkpoint_dir=tmp_path, checkpoint_every=14, callback=_interrupt_at(21))
    assert ep.persist.load(tmp_path / "checkpoint.nc").iteration == 21  # Ctrl-C saved the
    # last completed chunk
    resumed = _run(method, 45, checkpoint_dir=tmp_path, checkpoint_every=14, resume=True)
    assert resumed.info["resumed_from"] == 21
    _assert_identical(reference, resumed)


def test_a_finished_run_extended_equals_the_longer_run(tmp_path):
    _run("jarzynski", 30, checkpoint_dir=tmp_path)  # ends off the chunk grid (30 = 4*7 + 2)
    extended = _run("jarzynski", 45, checkpoint_dir=tmp_path, resume=True)
    _assert_identical(_run("jarzynski", 45), extended)


def test_files_are_atomic_and_pickle_free(tmp_path):
    _run("cd", 20, checkpoint_dir=tmp_path, checkpoint_every=7)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["checkpoint.nc"]  # no temporaries; one file, in the format of results
    with xr.open_datatree(tmp_path / "checkpoint.nc", engine="h5netcdf") as tree:
        assert tree.attrs["ebm_ppl_format"] == "ebm_ppl.Checkpoint/1"
        assert all(v.dtype != object for v in tree["ebm_ppl_arrays"].data_vars.values())
    state = ep.persist.load(tmp_path / "checkpoint.nc")
    assert state.iteration == 20 and {"path", "shape", "dtype"} <= set(state.structure[0])


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    _run("cd", 14, checkpoint_dir=tmp_path)
    path = tmp_path / "checkpoint.nc"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="corrupt"):
        _run("cd", 20, checkpoint_dir=tmp_path, resume=True)
    path.write_text("{not netCDF")
    with pytest.raises(ValueError, match="corrupt"):
        _run("cd", 20, checkpoint_dir=tmp_path, resume=True)


# -- the file layer itself (no training) ----------------------------------------------------

def _carry():
    p = {"m": jnp.arange(3.0), "s": jnp.asarray(0.5, jnp.float32)}
    return (p, optax.adam(0.1).init(p), jax.random.key(3), jnp.asarray([True, False]),
            jnp.asarray(7, jnp.int32))


HISTORY = {"loss": np.array([0.25, -np.inf, np.nan]), "resampled": np.array([True, False, True])}
FINGERPRINT = {"method": "cd", "key": [0, 3], "step_size": 0.1, "params": [{"path": "['m']"}]}


def _same_carry(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        if ep.persist.is_key(x):
            assert np.array_equal(jax.random.key_data(x), jax.random.key_data(y))
        else:
            assert x.dtype == y.dtype and np.array_equal(x, y)


def test_save_load_round_trip_is_exact(tmp_path):
    carry = _carry()
    ckpt_mod.save(tmp_path, 12, carry, HISTORY, FINGERPRINT, {"chunk_size": 7})
    it, back, history, extra = ckpt_mod.load(tmp_path, jax.eval_shape(_carry), FINGERPRINT)
    assert (it, extra) == (12, {"chunk_size": 7})
    _same_carry(carry, back)
    for k in HISTORY:
        np.testing.assert_array_equal(history[k], HISTORY[k])
        assert history[k].dtype == HISTORY[k].dtype


def test_an_interrupted_save_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    carry = _carry()
    ckpt_mod.save(tmp_path, 5, carry, HISTORY, FINGERPRINT, {})
    before = (tmp_path / "checkpoint.nc").read_bytes()
    real = xr.DataTree.to_netcdf

    def torn(self, path, *args, **kw):  # half the file is on disk when the process dies
        real(self, path, *args, **kw)
        data = open(path, "rb").read()
        open(path, "wb").write(data[: len(data) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(xr.DataTree, "to_netcdf", torn)
    later = jax.tree.map(lambda x: x if ep.persist.is_key(x) else x + 1, carry)
    with pytest.raises(KeyboardInterrupt):
        ckpt_mod.save(tmp_path, 9, later, HISTORY, FINGERPRINT, {})
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.nc"]  # no temporaries
    assert (tmp_path / "checkpoint.nc").read_bytes() == before
    it, back, _, _ = ckpt_mod.load(tmp_path, jax.eval_shape(_carry), FINGERPRINT)
    assert it == 5
    _same_carry(carry, back)


def test_a_changed_number_in_the_field_spec_is_caught(tmp_path):
    """The JSON spec (iteration, fingerprint, ...) is covered by the checksum too: a flipped
    digit there would otherwise load as another, valid-looking checkpoint."""
    ckpt_mod.save(tmp_path, 20, _carry(), HISTORY, FINGERPRINT, {})
    path = tmp_path / "checkpoint.nc"
    raw = path.read_bytes()
    at = raw.find(b'"iteration": 20')
    assert at > 0
    path.write_bytes(raw.replace(b'"iteration": 20', b'"iteration": 21', 1))
    with pytest.raises(CheckpointError, match="do not match the SHA-256"):
        ckpt_mod.load(tmp_path, jax.eval_shape(_carry), FINGERPRINT)


def _write_npz_checkpoint(directory, iteration, carry, history, fingerprint, extra):
    """The npz + JSON layout of earlier releases, as their ``checkpoint.save`` wrote it."""
    leaves = jax.tree.leaves(carry)
    arrays = {f"leaf_{i}": ep.persist.storable(x) for i, x in enumerate(leaves)}
    arrays.update({f"history_{k}": np.asarray(v) for k, v in history.items()})
    name = f"state-{iteration}.npz"
    np.savez(directory / name, **arrays)
    manifest = {"format": "ebm_ppl.training.checkpoint/1", "iteration": iteration, "file": name,
                "sha256": hashlib.sha256((directory / name).read_bytes()).hexdigest(),
                "structure": ckpt_mod.describe(carry), "history_keys": sorted(history),
                "fingerprint": fingerprint, "extra": extra}
    (directory / "manifest.json").write_text(json.dumps(manifest))


def test_npz_checkpoints_of_earlier_releases_still_load_with_a_warning(tmp_path):
    carry = _carry()
    _write_npz_checkpoint(tmp_path, 8, carry, HISTORY, FINGERPRINT, {"chunk_size": 4})
    assert ckpt_mod.exists(tmp_path) and ckpt_mod.read_extra(tmp_path) == {"chunk_size": 4}
    with pytest.warns(DeprecationWarning, match="npz"):
        it, back, history, _ = ckpt_mod.load(tmp_path, jax.eval_shape(_carry), FINGERPRINT)
    assert it == 8
    _same_carry(carry, back)
    np.testing.assert_array_equal(history["resampled"], HISTORY["resampled"])
    ckpt_mod.save(tmp_path, 9, back, history, FINGERPRINT, {})  # the next save migrates
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.nc"]


def test_checkpoint_of_another_run_is_a_clear_error(tmp_path):
    _run("cd", 14, checkpoint_dir=tmp_path)
    with pytest.raises(CheckpointError, match="step_size: checkpoint 0.1 vs now 0.2"):
        ep.train(energy, P0, DATA, key=KEY, method="cd", num_walkers=64, step_size=0.2,
                 reinit_every=3, num_iterations=20, chunk_size=7, progress_bar=False,
                 checkpoint_dir=tmp_path, resume=True)
    with pytest.raises(CheckpointError, match="params"):
        ep.train(energy, {**P0, "extra": jnp.zeros(2)}, DATA, key=KEY, method="cd",
                 num_walkers=64, step_size=0.1, reinit_every=3, num_iterations=20,
                 chunk_size=7, progress_bar=False, checkpoint_dir=tmp_path, resume=True)
    with pytest.raises(CheckpointError, match="data_sha256"):
        ep.train(energy, P0, DATA + 1.0, key=KEY, method="cd", num_walkers=64, step_size=0.1,
                 reinit_every=3, num_iterations=20, chunk_size=7, progress_bar=False,
                 checkpoint_dir=tmp_path, resume=True)
    with pytest.raises(CheckpointError, match="optimizer structure"):
        ep.train(energy, P0, DATA, key=KEY, method="cd", optimizer=optax.sgd(0.1),
                 num_walkers=64, step_size=0.1, reinit_every=3, num_iterations=20,
                 chunk_size=7, progress_bar=False, checkpoint_dir=tmp_path, resume=True)
