"""The documentation site works offline (issue 17).

The default run checks the configuration cheaply (no script or font from another host, the
MathJax hook in place). The slow test builds the site and opens every page in headless
Chromium with the network off (``scripts/docs_check.py``, also ``make docs-check``).
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _config():
    return yaml.safe_load((ROOT / "mkdocs.yml").read_text())


def test_site_config_loads_nothing_from_other_hosts():
    cfg = _config()
    assets = list(cfg.get("extra_javascript", [])) + list(cfg.get("extra_css", []))
    remote = [a for a in assets if "://" in str(a) or str(a).startswith("//")]
    assert not remote, f"scripts/styles from the network break offline viewing: {remote}"
    assert cfg["theme"].get("font") is False, "Material's default font comes from Google Fonts"
    assert "javascripts/mathjax/tex-mml-chtml.js" in assets
    assert "scripts/docs_hooks.py" in cfg.get("hooks", [])
    js = (ROOT / "docs" / "javascripts" / "mathjax.js").read_text()
    assert "typeof mj.typesetPromise" in js, "the MathJax calls must be guarded"


SPHINX_ROLE = re.compile(r":(?:class|func|mod|meth|attr|data|obj|exc):`")


def test_docstrings_use_mkdocstrings_cross_references():
    """The API pages render with mkdocstrings (Google style): a Sphinx role such as
    :func:`x` shows up literally there. Write [`x`][ebm_ppl.module.x] or plain ``x``."""
    found = [f"{p.relative_to(ROOT)}:{i}" for p in sorted((ROOT / "ebm_ppl").rglob("*.py"))
             for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
             if SPHINX_ROLE.search(line)]
    assert not found, f"Sphinx roles in docstrings: {found}"
    assert SPHINX_ROLE.search("see :class:`~ebm_ppl.energy.Energy`")


def test_api_pages_list_entry_points_first():
    """Issue 17: the diagnostics and spins API pages render in ``__all__`` order, which starts
    with the public entry points (not internals such as sweeps or result classes)."""
    from ebm_ppl import diagnostics, spins
    assert diagnostics.__all__[:2] == ["summary", "convergence"]
    assert spins.__all__[0] == "Ising" and spins.__all__.index("ising_exact") < \
        spins.__all__.index("gibbs_sweep")
    for page in ("diagnostics", "spins"):
        assert "members_order: __all__" in (ROOT / "docs" / "api" / f"{page}.md").read_text()


def test_mathjax_hook_copies_the_bundle(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import docs_hooks
    finally:
        sys.path.pop(0)
    docs_hooks.on_post_build({"site_dir": str(tmp_path)})
    mj = tmp_path / "javascripts" / "mathjax"
    assert (mj / "tex-mml-chtml.js").stat().st_size > 500_000
    assert list((mj / "output" / "chtml" / "fonts" / "woff-v2").glob("*.woff")), "fonts missing"
    assert (mj / "input" / "tex" / "extensions").is_dir()  # lazily loaded TeX packages


@pytest.mark.slow
@pytest.mark.integration
def test_built_site_in_headless_chromium(tmp_path):
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.skip("needs Debian's chromium and chromium-driver")
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    build = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                            str(site)], cwd=ROOT, capture_output=True, text=True, env=env)
    assert build.returncode == 0, build.stderr[-3000:]
    check = subprocess.run([sys.executable, str(ROOT / "scripts" / "docs_check.py"), str(site)],
                           capture_output=True, text=True, timeout=900)
    assert check.returncode == 0, check.stdout[-5000:] + check.stderr[-2000:]
