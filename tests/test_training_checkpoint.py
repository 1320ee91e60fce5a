"""Checkpoints: an interrupted run resumed equals the uninterrupted run bit for bit (CPU);
corrupt or foreign checkpoints are clear errors; files are written atomically, no pickle."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ebm_ppl as ep
from ebm_ppl.training import CheckpointError

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
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["iteration"] == 21  # Ctrl-C saved the last completed chunk
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
    assert names == ["manifest.json", "state-20.npz"]  # no temporaries, old states removed
    with np.load(tmp_path / "state-20.npz", allow_pickle=False) as npz:
        assert all(npz[k].dtype != object for k in npz.files)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert {"path", "shape", "dtype"} <= set(manifest["structure"][0])


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    _run("cd", 14, checkpoint_dir=tmp_path)
    path = tmp_path / "state-14.npz"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="corrupt"):
        _run("cd", 20, checkpoint_dir=tmp_path, resume=True)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match="corrupt"):
        _run("cd", 20, checkpoint_dir=tmp_path, resume=True)


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
