"""Refresh the tutorial images: run every example in quick mode and store small copies of its
PNGs under ``docs/img/<script>/`` (at most 1000 px wide, 256 colours).

Run ``python examples/_docs_images.py [SCRIPT ...]`` from the repository root (default: all
examples). Not a test and not part of the library: a maintenance helper for ``docs/``.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
MAX_WIDTH = 1000


def shrink(src: Path, dst: Path) -> None:
    img = Image.open(src).convert("RGB")
    if img.width > MAX_WIDTH:
        img = img.resize((MAX_WIDTH, round(img.height * MAX_WIDTH / img.width)), Image.LANCZOS)
    dst.parent.mkdir(parents=True, exist_ok=True)
    img.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(dst, optimize=True)


def main(names: list[str]) -> None:
    scripts = sorted(p for p in (ROOT / "examples").glob("*.py") if not p.name.startswith("_"))
    if names:
        scripts = [p for p in scripts if p.stem in names]
    for script in scripts:
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, str(script), "--quick", "--outdir", tmp], check=True,
                           cwd=ROOT)
            for png in sorted(Path(tmp).glob("*.png")):
                dst = ROOT / "docs" / "img" / script.stem / png.name
                shrink(png, dst)
                print(f"{dst.relative_to(ROOT)}: {dst.stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main(sys.argv[1:])
