"""Check cross-compiled ELF files before they go into a target image (rpibuild's cross stages).

Runs on the build platform with its python (stdlib only), on wheels, folders or files: every
ELF file must be for the target's machine and class, hard-float on armhf, and need no glibc
symbol version newer than the target's. The build platform is bootstrapped from the same
Debian suite as the target, so its glibc is the target's. ``--needed`` prints the shared
libraries the files link that are not among them (for the runtime packages).
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import zipfile
from collections.abc import Iterator
from typing import BinaryIO

import elf  # rpibuild/export/elf.py, copied beside this file (/opt/rpibuild/elf.py)


def elf_members(path: str) -> Iterator[tuple[str, BinaryIO]]:
    """(name, stream) of every ELF file in a wheel, a folder or a single file."""
    if path.endswith(".whl"):
        with zipfile.ZipFile(path) as wheel:
            for name in wheel.namelist():
                data = wheel.read(name) if not name.endswith("/") else b""
                if data[:4] == b"\x7fELF":
                    yield f"{os.path.basename(path)}:{name}", io.BytesIO(data)
        return
    files = [path]
    if os.path.isdir(path):
        files = sorted(os.path.join(d, f) for d, _, names in os.walk(path) for f in names)
    for name in files:
        if os.path.islink(name) or not os.path.isfile(name):
            continue
        with open(name, "rb") as stream:
            if stream.read(4) == b"\x7fELF":
                stream.seek(0)
                yield name, io.BytesIO(stream.read())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--elf", required=True, metavar="MACHINE:CLASS[:hf]", help="the target's ABI")
    parser.add_argument("--needed", action="store_true", help="print the external libraries needed")
    parser.add_argument(
        "--allow-none", action="store_true", help="no ELF file at all is fine (a pure-Python wheel)"
    )
    parser.add_argument("paths", nargs="+", help="wheels, folders or files")
    args = parser.parse_args()
    libc = os.confstr("CS_GNU_LIBC_VERSION") or "glibc 0"
    have = tuple(int(p) for p in libc.split()[-1].split("."))
    problems, checked, own, needed = [], 0, set(), set()
    for path in args.paths:
        for name, stream in elf_members(path):
            header = elf.stream_header(stream)
            if header is None:
                problems.append(f"{name}: not an ELF file this reader knows")
                continue
            checked += 1
            own.add(os.path.basename(name.split(":")[-1]))
            problem = elf.spec_mismatch(header, args.elf)
            if problem:
                problems.append(f"{name}: {problem}")
                continue
            versions = elf.glibc_versions(stream, header)
            if versions and max(versions) > have:
                newest = ".".join(map(str, max(versions)))
                problems.append(f"{name}: needs GLIBC_{newest}, the target has {libc}")
            needed.update(elf.needed_libraries(stream, header))
    for problem in problems:
        print(f"elf_gate: {problem}", file=sys.stderr)
    if problems:
        return 1
    if checked == 0 and args.allow_none:
        print("elf_gate: no ELF files (pure Python)")
        return 0
    if checked == 0:
        print("elf_gate: no ELF files in " + " ".join(args.paths), file=sys.stderr)
        return 1
    if args.needed:
        for library in sorted(needed - own):
            print(library)
    else:
        print(f"elf_gate: {checked} ELF files OK ({args.elf}, glibc <= {libc.split()[-1]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
