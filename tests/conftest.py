"""Test configuration: float64 and 4 fake CPU devices, set before JAX initialises.

Four host devices let the tests exercise ``chain_method="parallel"`` and walker sharding
on a CPU-only machine; they are set here, for the test process only.
"""

import os

os.environ.setdefault("MPLBACKEND", "Agg")
flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in flags:
    os.environ["XLA_FLAGS"] = (flags + " --xla_force_host_platform_device_count=4").strip()

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
