"""The CLI end to end: the demo writes its figures; `evidence` on a user's model file; bad
input gives one line on stderr and a non-zero exit code, never a traceback."""

import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, child_env

import ebm_ppl as ep

pytestmark = pytest.mark.integration  # every test runs the CLI in a subprocess


MODEL_FILE = '''
import numpyro
import numpyro.distributions as dist


def regression(x, y=None):
    w = numpyro.sample("w", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    numpyro.sample("y", dist.Normal(w[0] + w[1] * x, 0.5), obs=y)
'''


def _cli(*args, timeout=900):
    env = child_env(JAX_ENABLE_X64="1")
    return subprocess.run([sys.executable, "-m", "ebm_ppl.cli", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def model_and_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("user")
    (folder / "my_models.py").write_text(MODEL_FILE)
    rng = np.random.default_rng(1)
    x = np.linspace(-1, 1, 25)
    y = 0.5 - x + 0.5 * rng.standard_normal(x.size)
    np.savetxt(folder / "data.csv", np.column_stack([x, y]), delimiter=",", header="x,y",
               comments="")
    np.savez(folder / "data.npz", x=x, y=y)
    design = np.column_stack([np.ones_like(x), x])
    cov = 0.25 * np.eye(x.size) + design @ design.T
    exact = -0.5 * (y @ np.linalg.solve(cov, y) + np.linalg.slogdet(cov)[1]
                    + x.size * np.log(2 * np.pi))
    return folder, exact


def test_demo_quick_writes_figures(tmp_path):
    proc = _cli("demo", "--quick", "--outdir", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr[-3000:]
    pngs = sorted(p.name for p in (tmp_path / "out").glob("*.png"))
    assert "figure1_mixture_samplers.png" in pngs
    assert "evidence_model_comparison.png" in pngs
    assert "log Bayes factor" in proc.stdout and "r_hat" in proc.stdout


@pytest.mark.parametrize("data_name", ["data.csv", pytest.param("data.npz", marks=pytest.mark.slow)])
def test_evidence_command_matches_closed_form(model_and_data, data_name, tmp_path):
    folder, exact = model_and_data
    out = tmp_path / "result.nc"
    proc = _cli("evidence", f"{folder / 'my_models.py'}:regression", "--data", folder / data_name,
                "--walkers", 512, "--seed", 3, "--no-progress", "--netcdf", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if "log Z" in ln)
    # "log Z = est +- total error   (se ..., bias ... from ... walkers)"
    est, se = (float(v) for v in line.split("=")[1].split("(")[0].split("+-"))
    assert abs(est - exact) < max(4 * se, 0.05), (est, se, exact)
    loaded = ep.EvidenceResult.load(out)  # was: a bare ArviZ tree that load rejected
    assert isinstance(ep.persist.load(out), ep.EvidenceResult)  # the loader of all our files
    assert f"{loaded.log_z:.5f}" == f"{est:.5f}" and loaded.method == "hmc"


def test_evidence_command_keep_modes(model_and_data):
    """--keep-modes reaches log_evidence: the regression has one mode, found and reported."""
    folder, exact = model_and_data
    proc = _cli("evidence", f"{folder / 'my_models.py'}:regression", "--data",
                folder / "data.csv", "--walkers", 512, "--method", "mala", "--keep-modes",
                "--no-progress")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "found 1 mode(s)" in proc.stdout
    line = next(ln for ln in proc.stdout.splitlines() if "log Z" in ln)
    est, se = (float(v) for v in line.split("=")[1].split("(")[0].split("+-"))
    assert abs(est - exact) < max(4 * se, 0.05), (est, se, exact)


@pytest.mark.parametrize("case, expected", [
    ("missing_file", "model file not found"),
    ("no_model", "no model named"),
    ("missing_data", "data file not found"),
    ("bad_columns", "not arguments of"),
    ("bad_target", "expected FILE.py:MODEL"),
])
def test_evidence_bad_input_is_one_line(model_and_data, tmp_path, case, expected):
    folder, _ = model_and_data
    model = f"{folder / 'my_models.py'}:regression"
    data = folder / "data.csv"
    if case == "missing_file":
        model = f"{tmp_path / 'nope.py'}:regression"
    elif case == "no_model":
        model = f"{folder / 'my_models.py'}:nonexistent"
    elif case == "missing_data":
        data = tmp_path / "nope.csv"
    elif case == "bad_columns":
        data = tmp_path / "other.csv"
        data.write_text("a,b\n1,2\n3,4\n")
    elif case == "bad_target":
        model = "my_models.py"
    proc = _cli("evidence", model, "--data", data, "--no-progress")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and expected in lines[0], proc.stderr


def test_evidence_data_that_do_not_fit_the_model(model_and_data, tmp_path):
    folder, _ = model_and_data
    data = tmp_path / "short.csv"
    data.write_text("x,y\n1,2\n3,4\n5\n")  # ragged: the y column has a missing value
    proc = _cli("evidence", f"{folder / 'my_models.py'}:regression", "--data", data)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error:")


def test_evidence_shapes_that_do_not_fit_the_model(model_and_data, tmp_path):
    folder, _ = model_and_data
    data = tmp_path / "mismatch.npz"
    np.savez(data, x=np.linspace(0, 1, 25), y=np.zeros(10))  # 25 inputs, 10 observations
    proc = _cli("evidence", f"{folder / 'my_models.py'}:regression", "--data", data,
                "--no-progress")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr


def test_figures_command_writes_the_seed_figures(tmp_path):
    proc = _cli("figures", tmp_path / "figs", "--quick")
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = sorted(p.name for p in (tmp_path / "figs").glob("*.png"))
    assert names == sorted(["figure1_mixture.png", "figure4_kl_vs_fisher.png",
                            "example41_ula_covariance.png"]), names
    blocked = tmp_path / "a_file"
    blocked.write_text("not a folder")
    proc = _cli("figures", blocked, "--quick")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: outdir"), proc.stderr
