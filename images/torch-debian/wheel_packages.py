"""The Debian packages a torch wheel's libraries need, carried inside the wheel itself.

``embed WHEEL LIST``: on the build platform, after the wheel is built: the list (one package
per line, from runtime_packages.py) goes into the wheel's .dist-info as
``rpibuild-debian-packages.txt``; ``wheel pack`` rewrites RECORD, so the wheel stays valid.
``extract WHEEL OUT``: in the target's torch stage, for any wheel (stored, given by URL or
path): writes the list, or an empty file for wheels that carry none. So a wheel built once
and reused elsewhere (``torch.source: wheel``) brings its runtime packages along.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

NAME = "rpibuild-debian-packages.txt"
PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]+")


def embed(wheel: Path, listing: Path) -> None:
    packages = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
    bad = [p for p in packages if not PACKAGE.fullmatch(p)]
    if bad:
        raise SystemExit(f"wheel_packages: not Debian package names: {bad}")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "wheel", "unpack", "-d", tmp, str(wheel)], check=True)
        (unpacked,) = Path(tmp).iterdir()
        (info,) = unpacked.glob("*.dist-info")
        (info / NAME).write_text("".join(f"{p}\n" for p in packages))
        out = Path(tmp, "out")
        out.mkdir()
        subprocess.run([sys.executable, "-m", "wheel", "pack", "-d", str(out), str(unpacked)], check=True)
        (packed,) = out.glob("*.whl")
        shutil.move(packed, wheel)


def extract(wheel: Path, out: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = [n for n in archive.namelist() if n.endswith(f".dist-info/{NAME}")]
        text = archive.read(names[0]).decode() if names else ""
    packages = [line.strip() for line in text.splitlines() if line.strip()]
    bad = [p for p in packages if not PACKAGE.fullmatch(p)]
    if bad:
        raise SystemExit(f"wheel_packages: {wheel.name} lists names that are not Debian packages: {bad}")
    out.write_text("".join(f"{p}\n" for p in packages))


def main() -> int:
    if len(sys.argv) != 4 or sys.argv[1] not in ("embed", "extract"):
        raise SystemExit("usage: wheel_packages.py embed WHEEL LIST | extract WHEEL OUT")
    command, wheel, other = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    (embed if command == "embed" else extract)(wheel, other)
    return 0


if __name__ == "__main__":
    sys.exit(main())
