"""Bugs found while reading the code side by side with BlackJAX, optax and NumPyro (issue 13),
each pinned by a test that failed before its fix."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

import ebm_ppl as ep
from ebm_ppl.evidence import moves

LOG_2PI = float(np.log(2 * np.pi))


def _gauss(x):
    return 0.5 * jnp.sum(x**2)  # log Z = (d/2) log 2 pi


# -- method="ti" / "is" with an array schedule ---------------------------------------------------

def test_ti_with_an_array_schedule_runs_that_schedule():
    """Was: "The truth value of an array with more than one element is ambiguous"."""
    betas = np.array([0.0, 0.1, 0.3, 0.6, 1.0])
    res = ep.log_partition(_gauss, key=jax.random.key(0), dim=2, method="ti", num_walkers=128,
                           schedule=betas, reference=dist.Normal(0.0, 1.5).expand([2]).to_event(1),
                           progress_bar=False)
    np.testing.assert_array_equal(res.schedule, betas)
    # TI with 4 trapezoid stages: quadrature error ~0.1 here, far above its MCSE, so only a
    # loose check that the right integral was done (log Z_0 alone would be off by ~0.8)
    assert abs(res.log_z - LOG_2PI) < 0.3, res.log_z


def test_is_with_an_array_schedule_ignores_it():
    """Importance sampling has no schedule: an array is accepted (as a name is) and changes nothing."""
    kw = dict(key=jax.random.key(1), dim=2, method="is", num_walkers=256, progress_bar=False)
    plain = ep.log_partition(_gauss, **kw)
    with_array = ep.log_partition(_gauss, schedule=np.linspace(0.0, 1.0, 4), **kw)
    assert with_array.log_z == plain.log_z and with_array.log_z_se == plain.log_z_se


# -- log_partition(U, reference=dist) without dim= ------------------------------------------------

def test_reference_event_shape_gives_the_dimension():
    """Was: "dim is required when potential_fn is a plain function"."""
    ref = dist.MultivariateNormal(jnp.zeros(3), 2.0 * jnp.eye(3))
    kw = dict(key=jax.random.key(2), reference=ref, num_walkers=128, schedule="linear",
              num_stages=3, progress_bar=False)
    res = ep.log_partition(_gauss, **kw)
    assert res.samples.shape == (128, 3)
    assert res.log_z == ep.log_partition(_gauss, dim=3, **kw).log_z  # the same run
    assert abs(res.log_z - 1.5 * LOG_2PI) < 0.1  # a loose check that it is this integral
    with pytest.raises(ValueError, match=r"event_shape \(2,\)"):  # an explicit dim still wins
        ep.log_partition(_gauss, dim=2, **kw)


# -- the CLI's --netcdf file is the one EvidenceResult.load reads: see tests/test_cli.py ----------

def test_cli_writes_results_through_save():
    """The CLI's --netcdf goes through EvidenceResult.save (its own format), not a bare
    ArviZ tree that EvidenceResult.load rejects (the end-to-end check is in test_cli.py)."""
    from ebm_ppl import cli_evidence

    src = inspect.getsource(cli_evidence)
    assert ".save(args.netcdf)" in src and "to_netcdf(" not in src


# -- lazy imports that cannot succeed (the demo's plots.figure1) ---------------------------------

def _relative_imports(module):
    """(line, target module, names) of every ``from .x import y`` in ``module``'s source,
    including those inside functions (which only run, or silently fall back, later)."""
    tree = ast.parse(inspect.getsource(module))
    pkg = module.__name__ if hasattr(module, "__path__") else module.__name__.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = pkg.split(".")
            base = base[: len(base) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
            yield node.lineno, target, [a.name for a in node.names]


def test_every_relative_import_in_the_package_resolves():
    """Was: ``ebm_ppl.demo`` imported ``plots.figure1`` (there is none) inside a try/except, so
    the demo always drew its fallback figure. Every ``from .x import y``, at any depth, must
    name something that exists."""
    broken = []
    for info in pkgutil.walk_packages(ep.__path__, "ebm_ppl."):
        if info.name.endswith("__main__"):
            continue  # importing it runs the CLI
        module = importlib.import_module(info.name)
        for line, target, names in _relative_imports(module):
            mod = importlib.import_module(target)
            for name in names:
                if name != "*" and not hasattr(mod, name):
                    try:
                        importlib.import_module(f"{target}.{name}")
                    except ImportError:
                        broken.append(f"{info.name}:{line} from {target} import {name}")
    assert not broken, broken


def test_the_demo_figure1_is_the_shared_plot_with_one_histogram_per_sampler():
    from ebm_ppl.demo import _figure1

    target = ep.targets.figure1_mixture()
    rng = np.random.default_rng(0)
    draws = {"A": rng.normal(0.0, 1.0, (2, 50)), "B": rng.normal(5.0, 0.5, (2, 50))}
    fig = _figure1(target, draws)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any(lbl.startswith("A (n=100)") for lbl in labels), labels
    assert any(lbl.startswith("B (n=100)") for lbl in labels), labels
    assert fig.axes[1].get_ylabel() == "U(x)"  # the energy panel of plots.plot_figure1


# -- docstrings that said something false ---------------------------------------------------------

def test_moves_docstring_says_the_whitening_is_recomputed_every_move():
    doc = " ".join(moves.__doc__.split())
    assert "fixed linear change of variables leaves" not in doc
    assert "recomputed from the current walkers before every move" in doc
    # and it is: the scale follows the walkers
    x = jax.random.normal(jax.random.key(3), (256, 2))
    np.testing.assert_allclose(moves.walker_scale(3.0 * x) / moves.walker_scale(x), 3.0,
                               rtol=1e-12)


def test_result_log_z_docstring_covers_ti():
    """For method="ti" log_z is the TI integral, not log_mean_exp(log_weights) as the
    docstring claimed; the SMC estimate of the same run is in the messages."""
    doc = " ".join(ep.EvidenceResult.__doc__.split())
    assert re.search(r'method="ti"``: thermodynamic integration', doc), doc[:600]
    res = ep.log_partition(_gauss, key=jax.random.key(4), dim=2, method="ti", num_walkers=128,
                           schedule="linear", num_stages=4,
                           reference=dist.Normal(0.0, 1.5).expand([2]).to_event(1),
                           progress_bar=False)
    lw = np.asarray(res.log_weights)
    smc = float(np.log(np.mean(np.exp(lw - lw.max()))) + lw.max())
    msg = next(m for m in res.messages if m.startswith("TI:"))
    assert f"{smc:.4f}" in msg or abs(float(msg.rsplit(" ", 1)[1]) - smc) < 5e-4, (msg, smc)
    assert abs(res.log_z - smc) > 1e-6  # a different estimator


# -- one tempering module, one MoveInfo -----------------------------------------------------------

def test_tempering_all_names_exist_and_no_private_driver_module():
    """Was: three names of ``tempering.__all__`` lived in a private module reached through a
    module ``__getattr__`` (``from ebm_ppl.tempering import *`` failed on them)."""
    namespace = {}
    exec("from ebm_ppl.tempering import *", namespace)
    assert {"parallel_tempering", "PTResult", "ParallelTempering"} <= set(namespace)
    with pytest.raises(ImportError):
        importlib.import_module("ebm_ppl._tempering_driver")


def test_one_exported_move_info():
    from ebm_ppl import evidence, kernels

    assert "MoveInfo" not in kernels.__all__ and "StepInfo" in kernels.__all__
    with pytest.warns(DeprecationWarning, match="StepInfo"):
        old = kernels.MoveInfo
    assert old is kernels.StepInfo and old is not evidence.MoveInfo
