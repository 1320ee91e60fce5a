"""Test configuration: float64 and 4 fake CPU devices, set before JAX initialises; and the
helpers several test files share (import them with ``from conftest import ...``).

Four host devices let the tests exercise ``chain_method="parallel"`` and walker sharding
on a CPU-only machine; they are set here, for the test process only.
"""

import dataclasses
import gc
import os
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")
flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in flags:
    os.environ["XLA_FLAGS"] = (flags + " --xla_force_host_platform_device_count=4").strip()

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

@pytest.fixture(autouse=True, scope="module")
def _free_compiled_programs():
    """Drop JAX's compiled programs after each test module.

    Every XLA CPU executable kept alive holds a few memory mappings; one process that keeps
    every test's programs reaches Linux's ``vm.max_map_count`` (65530) after ~260 tests and
    XLA's compiler then segfaults (measured: 9624 mappings after three modules, 1456 with this
    fixture). Tests that count compilations do so within one module, so they are unaffected.
    """
    yield
    jax.clear_caches()
    gc.collect()


ROOT = Path(__file__).resolve().parents[1]
"""The repository root (examples, docs, mkdocs.yml)."""


def child_env(**extra) -> dict:
    """Environment for a subprocess test (CLI, example, docs build): this process's
    environment (same XLA flags), the file backend of matplotlib, and ``extra``."""
    return {**os.environ, "MPLBACKEND": "Agg", **extra}


def assert_same(a, b, path="result"):
    """Exact equality of two results' values (arrays bit for bit, NaN == NaN), recursively
    through dataclasses, dicts, lists and tuples."""
    if dataclasses.is_dataclass(a):
        assert type(a) is type(b), path
        for f in dataclasses.fields(a):
            assert_same(getattr(a, f.name), getattr(b, f.name), f"{path}.{f.name}")
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), (path, a.keys(), b)
        for k in a:
            assert_same(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), (path, type(a), type(b))
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, (np.ndarray, np.generic, jax.Array)):
        x, y = np.asarray(a), np.asarray(b)
        assert x.dtype == y.dtype and x.shape == y.shape, (path, x.dtype, y.dtype, x.shape, y.shape)
        assert np.array_equal(x, y, equal_nan=x.dtype.kind in "fc"), path
    elif isinstance(a, float) and np.isnan(a):
        assert isinstance(b, float) and np.isnan(b), path
    else:
        assert a == b and type(a) is type(b), (path, a, b)
