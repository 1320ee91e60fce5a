"""The docs build with --strict and the CLI answers --help and bad input cleanly."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, child_env

pytestmark = pytest.mark.integration  # mkdocs and the CLI run as subprocesses

BIN = Path(sys.executable).parent


def _run(args, **kw):
    env = child_env(NO_MKDOCS_2_WARNING="1")
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env=env, timeout=600, **kw)


@pytest.mark.skipif(shutil.which("mkdocs", path=str(BIN)) is None, reason="docs extra not installed")
def test_docs_build_strict(tmp_path):
    proc = _run([str(BIN / "mkdocs"), "build", "--strict", "--site-dir", str(tmp_path / "site")])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "site" / "index.html").exists()


@pytest.mark.parametrize("command", [[], ["demo"], ["evidence"], ["compare"], ["figures"]])
def test_cli_help(command):
    proc = _run([sys.executable, "-m", "ebm_ppl.cli", *command, "--help"])
    assert proc.returncode == 0, proc.stderr
    assert "usage: ebm-ppl" in proc.stdout
