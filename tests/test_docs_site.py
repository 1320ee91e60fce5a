"""The documentation site works offline (issue 17).

The default run checks the configuration cheaply (no script or font from another host, the
MathJax hook in place). The slow test builds the site and opens every page in headless
Chromium with the network off (``scripts/docs_check.py``, also ``make docs-check``).
"""

import os
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
