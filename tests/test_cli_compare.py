"""Issue 16: ``ebm-ppl compare FILE.py:A FILE.py:B --data DATA.csv`` prints the comparison
table; user mistakes end with ``error:`` and exit code 2 (run in-process: no subprocess)."""

import numpy as np
import pytest

from ebm_ppl.cli import main
from ebm_ppl.demo_evidence import demo_data, exact_log_evidence

MODELS = '''
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

def _poly(x, y, degree):
    phi = jnp.stack([x**k for k in range(degree + 1)], axis=-1)
    w = numpyro.sample("w", dist.Normal(0.0, 1.0).expand([degree + 1]).to_event(1))
    numpyro.sample("y", dist.Normal(phi @ w, 0.3), obs=y)

def linear(x, y=None):
    _poly(x, y, 1)

def quadratic(x, y=None):
    _poly(x, y, 2)
'''


@pytest.fixture
def files(tmp_path):
    x, y = demo_data()
    (tmp_path / "models.py").write_text(MODELS)
    np.savetxt(tmp_path / "data.csv", np.column_stack([x, y]), delimiter=",", header="x,y",
               comments="")
    return tmp_path, x, y


def test_compare_prints_the_table(files, capsys):
    d, x, y = files
    code = main(["compare", f"{d}/models.py:linear", f"{d}/models.py:quadratic", "--data",
                 f"{d}/data.csv", "--chains", "2", "--draws", "200", "--warmup", "200",
                 "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0, out
    rows = [line.split() for line in out.splitlines() if line.split()[:1] in (["linear"],
                                                                            ["quadratic"])]
    assert [r[0] for r in rows] == ["quadratic", "linear"] and "prob_lower" in out
    log_bf = float(rows[1][4])  # rank, log_z, se, log_bf
    exact = exact_log_evidence(x, y, 1) - exact_log_evidence(x, y, 2)
    assert abs(log_bf - exact) < 0.1, (log_bf, exact)


@pytest.mark.parametrize("argv, match", [
    (["{d}/models.py:linear", "--data", "{d}/data.csv"], "at least two"),
    (["{d}/models.py:linear", "{d}/models.py:cubic", "--data", "{d}/data.csv"], "no model named"),
    (["{d}/models.py:linear", "{d}/models.py:quadratic", "--data", "{d}/data.csv",
      "--method", "magic"], "--method"),
    (["{d}/models.py:linear", "{d}/models.py:quadratic", "--data", "{d}/extra.csv"],
     r"\['z'\] are arguments of none"),
])
def test_mistakes_are_one_line_errors(files, capsys, argv, match):
    d, x, y = files
    np.savetxt(d / "extra.csv", np.column_stack([x, y, y]), delimiter=",", header="x,y,z",
               comments="")
    assert main(["compare", *[a.format(d=d) for a in argv]]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1
    import re
    assert re.search(match, err), err
