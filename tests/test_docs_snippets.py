"""Every fenced Python block of ``docs/**/*.md`` and ``README.md`` runs as written (issue 17).

The blocks of one page run in order in one fresh Python process (a page reads like a
notebook: a later block may use the names of an earlier one), in a temporary folder, with
the working tree's ``ebm_ppl`` first on the path. Any exception fails the test, which names
the page and the Markdown line of the block.

- ```` ```python ```` blocks are executed; ```` ```pycon ```` blocks (``>>>`` transcripts)
  are run by :mod:`doctest` and their printed output, errors included, must match.
- A ```` ```text ```` block right after a python block is that block's printed output: it must
  match what the block prints (doctest rules: ``...`` matches anything, e.g. a wall time, and
  runs of whitespace compare equal).
- **Quick settings.** An HTML comment right before a block,
  ``<!-- snippet-quick: num_iterations=1500 -> num_iterations=40; num_walkers=2000 -> 256 -->``,
  replaces text in the block before running it; each left side must occur in the block, so a
  stale substitution fails instead of silently running the full settings.
- **Illustrative blocks** (rare: the test allows at most ``MAX_ILLUSTRATIVE`` in all) start
  with the visible line ``# illustrative, not run: <why>``.

Pages that take long even in quick settings are marked ``slow``; the others run by default.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs").rglob("*.md")) + [ROOT / "README.md"]
ILLUSTRATIVE = "# illustrative, not run:"
MAX_ILLUSTRATIVE = 3
# Pages whose blocks take more than ~15 s of CPU here even in quick settings.
SLOW_PAGES = {
    "docs/tutorials/jarzynski-vs-cd-pcd.md", "docs/tutorials/sampler-mixing.md",
    "docs/tutorials/score-matching-nce.md", "docs/tutorials/ising-tempering.md",
    "docs/tutorials/model-comparison.md", "docs/tutorials/hopfield-boltzmann.md",
    "docs/tutorials/ula-bias.md", "docs/tutorials/kl-vs-fisher.md",
    "docs/scaling.md", "docs/reliability.md", "docs/evidence.md", "README.md",
    "docs/tutorials/figure1-mixture.md", "docs/tutorials/evidence-from-draws.md",
    # the same calls as their examples, which the default run checks (tests/test_examples.py)
    "docs/tutorials/tempering-mixture.md", "docs/tutorials/cross-entropy-tracking.md",
    "docs/tutorials/free-energy-maxent.md",
}

FENCE = re.compile(r"^(?P<indent>[ ]*)```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ ]*$",
                   re.M | re.S)
QUICK = re.compile(r"<!--\s*snippet-quick:(?P<subs>.*?)-->\s*$", re.S)


def blocks_of(page: Path) -> list[dict]:
    """The page's python/pycon blocks: language, first line number, code (quick settings
    applied) and whether the block is illustrative."""
    text = page.read_text(encoding="utf-8")
    out = []
    fences = list(FENCE.finditer(text))
    for i, m in enumerate(fences):
        lang = m["lang"].lower()
        if lang not in ("python", "py", "pycon"):
            continue
        indent = len(m["indent"])
        code = "\n".join(line[indent:] for line in m["body"].splitlines()) + "\n"
        line = text.count("\n", 0, m.start()) + 2
        before = text[:m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        quick = QUICK.search(before)
        if quick:
            for sub in quick["subs"].split(";"):
                old, new = (s.strip() for s in sub.split("->"))
                if old not in code:
                    raise AssertionError(f"{page.name}:{line}: snippet-quick text {old!r} is "
                                         "not in the block (stale substitution)")
                code = code.replace(old, new)
        expect = None  # a ```text block right after a python block: its printed output
        nxt = fences[i + 1] if i + 1 < len(fences) else None
        if lang != "pycon" and nxt is not None and nxt["lang"].lower() == "text" \
                and not text[m.end():nxt.start()].strip():
            expect = nxt["body"]
        out.append({"lang": lang, "line": line, "code": code, "expect": expect,
                    "illustrative": code.lstrip().startswith(ILLUSTRATIVE)})
    return out


RUNNER = r'''
import contextlib, doctest, io, json, sys, traceback
import matplotlib
matplotlib.use("Agg")
page, blocks = sys.argv[1], json.load(open(sys.argv[2]))
ns = {"__name__": "__snippets__"}
for b in blocks:
    where = f"{page}:{b['line']}"
    if b["illustrative"]:
        continue
    if b["lang"] == "pycon":
        test = doctest.DocTestParser().get_doctest(b["code"], ns, where, page, b["line"] - 1)
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS
                                       | doctest.NORMALIZE_WHITESPACE)
        runner.run(test, out=sys.stderr.write, clear_globs=False)
        ns.update(test.globs)  # DocTest ran on a copy: later blocks see its names
        if runner.failures:
            sys.exit(f"doctest failures in the block at {where}")
        continue
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            exec(compile(b["code"], where, "exec"), ns)
    except BaseException:
        print(buf.getvalue())
        traceback.print_exc()
        sys.exit(f"the block at {where} raised")
    got = buf.getvalue()
    print(got, end="")
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    if b["expect"] is not None and not doctest.OutputChecker().check_output(b["expect"], got,
                                                                            flags):
        sys.exit(f"the output of the block at {where} differs from the text block after it;\n"
                 f"printed:\n{got}\nexpected:\n{b['expect']}")
print(f"ran {sum(not b['illustrative'] for b in blocks)} blocks of {page}")
'''


def _rel(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def _params():
    out = []
    for page in PAGES:
        if not any(not b["illustrative"] for b in blocks_of(page)):
            continue
        marks = [pytest.mark.integration] + ([pytest.mark.slow] if _rel(page) in SLOW_PAGES
                                             else [])
        out.append(pytest.param(page, marks=marks, id=_rel(page)))
    return out


def test_illustrative_blocks_are_rare_and_say_why():
    marked = [(_rel(p), b["line"]) for p in PAGES for b in blocks_of(p) if b["illustrative"]]
    assert len(marked) <= MAX_ILLUSTRATIVE, f"too many illustrative-only blocks: {marked}"
    for page in PAGES:
        for b in blocks_of(page):
            if b["illustrative"]:
                why = b["code"].lstrip().splitlines()[0][len(ILLUSTRATIVE):].strip()
                assert len(why) > 10, f"{_rel(page)}:{b['line']}: say why it is not run"


def test_the_extractor_sees_quick_settings_and_stale_ones(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("text\n<!-- snippet-quick: n=1000 -> n=10 -->\n```python\nn=1000\n```\n"
                    "```bash\nmake\n```\n```pycon\n>>> 1 + 1\n2\n```\n")
    found = blocks_of(page)
    assert [b["lang"] for b in found] == ["python", "pycon"]
    assert found[0]["code"] == "n=10\n" and found[0]["line"] == 4
    assert found[0]["expect"] is None
    page.write_text("```python\nprint(1)\n```\n\n```text\n1\n```\n")
    assert blocks_of(page)[0]["expect"] == "1\n"
    page.write_text("<!-- snippet-quick: n=5 -> n=1 -->\n```python\nn=1000\n```\n")
    with pytest.raises(AssertionError, match="stale"):
        blocks_of(page)


@pytest.mark.parametrize("page", _params())
def test_page_snippets_run(page, tmp_path):
    blocks = tmp_path / "blocks.json"
    blocks.write_text(json.dumps(blocks_of(page)))
    env = {**os.environ, "MPLBACKEND": "Agg", "TQDM_DISABLE": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", RUNNER, _rel(page), str(blocks)],
                          cwd=tmp_path, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, (proc.stdout[-3000:] + proc.stderr[-6000:])


@pytest.mark.integration
def test_a_wrong_printed_output_fails(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("```python\nprint('a', 1)\n```\n\n```text\na 2\n```\n")
    blocks = tmp_path / "blocks.json"
    blocks.write_text(json.dumps(blocks_of(page)))
    proc = subprocess.run([sys.executable, "-c", RUNNER, "p.md", str(blocks)], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "differs" in proc.stderr, proc.stderr[-2000:]
