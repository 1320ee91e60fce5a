"""MkDocs hooks: make the built site work offline.

``on_post_build`` copies MathJax 3 (from the PyPI package ``django-static-mathjax``, a copy of
the official MathJax 3.2.2 release; installed by the ``docs`` extra) into
``site/javascripts/mathjax/``, so that no page loads anything from the network at view time.
Only the parts the pages use are copied: the TeX-to-HTML bundle, its lazily loaded TeX
extensions, the CommonHTML fonts and the menu/accessibility components.
"""

from __future__ import annotations

import shutil
from pathlib import Path

MATHJAX_PARTS = ("tex-mml-chtml.js", "input", "output/chtml", "output/chtml.js", "ui", "a11y",
                 "adaptors")


def mathjax_source() -> Path:
    try:
        import mathjax  # the module of the django-static-mathjax distribution
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise SystemExit(
            "docs: MathJax is missing; install the docs extra (pip install -e '.[docs]'), "
            "which brings the PyPI package django-static-mathjax") from err
    es5 = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"
    if not (es5 / "tex-mml-chtml.js").exists():  # pragma: no cover
        raise SystemExit(f"docs: {es5} has no tex-mml-chtml.js; reinstall django-static-mathjax")
    return es5


def on_post_build(config, **kwargs) -> None:
    src = mathjax_source()
    dst = Path(config["site_dir"]) / "javascripts" / "mathjax"
    for part in MATHJAX_PARTS:
        s, d = src / part, dst / part
        if not s.exists():
            continue
        d.parent.mkdir(parents=True, exist_ok=True)
        if s.is_dir():
            shutil.copytree(s, d, dirs_exist_ok=True)
        else:
            shutil.copy2(s, d)
