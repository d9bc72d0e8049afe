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
import struct
import sys
import zipfile
from collections.abc import Iterator
from typing import BinaryIO

from verify import EF_ARM_ABI_FLOAT_HARD, _elf_header, _glibc_versions

DT_NEEDED, DT_STRTAB, PT_DYNAMIC, PT_LOAD = 1, 5, 2, 1


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


def needed_libraries(stream: BinaryIO, elf_class: int) -> list[str]:
    """DT_NEEDED entries, read through the program headers (no section table needed)."""
    stream.seek(0)
    head = stream.read(64)
    if elf_class == 1:
        phoff, phentsize, phnum = struct.unpack_from("<I", head, 28)[0], *struct.unpack_from("<HH", head, 42)
        ph_fmt, dyn_fmt = "<IIIIIIII", "<iI"
    else:
        phoff, phentsize, phnum = struct.unpack_from("<Q", head, 32)[0], *struct.unpack_from("<HH", head, 54)
        ph_fmt, dyn_fmt = "<IIQQQQQQ", "<qQ"
    loads, dynamic = [], None
    for index in range(phnum):
        stream.seek(phoff + index * phentsize)
        fields = struct.unpack(ph_fmt, stream.read(struct.calcsize(ph_fmt)))
        if elf_class == 1:
            kind, offset, vaddr, filesz = fields[0], fields[1], fields[2], fields[4]
        else:
            kind, offset, vaddr, filesz = fields[0], fields[2], fields[3], fields[5]
        if kind == PT_LOAD:
            loads.append((vaddr, offset, filesz))
        elif kind == PT_DYNAMIC:
            dynamic = (offset, filesz)
    if dynamic is None:
        return []
    size = struct.calcsize(dyn_fmt)
    stream.seek(dynamic[0])
    raw = stream.read(dynamic[1])
    entries = [struct.unpack_from(dyn_fmt, raw, at) for at in range(0, len(raw) - size + 1, size)]
    strtab = next((value for tag, value in entries if tag == DT_STRTAB), None)
    if strtab is None:
        return []
    # DT_STRTAB is an address: map it to a file offset through the loadable segments.
    base = next((off + strtab - va for va, off, sz in loads if va <= strtab < va + sz), None)
    if base is None:
        return []
    names = []
    for tag, value in entries:
        if tag == DT_NEEDED:
            stream.seek(base + value)
            names.append(stream.read(256).split(b"\0", 1)[0].decode("ascii", "replace"))
    return names


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--elf", required=True, metavar="MACHINE:CLASS[:hf]", help="the target's ABI")
    parser.add_argument("--needed", action="store_true", help="print the external libraries needed")
    parser.add_argument(
        "--allow-none", action="store_true", help="no ELF file at all is fine (a pure-Python wheel)"
    )
    parser.add_argument("paths", nargs="+", help="wheels, folders or files")
    args = parser.parse_args()
    machine, elf_class, *rest = args.elf.split(":")
    want = (int(machine), int(elf_class))
    hard_float = rest == ["hf"]
    libc = os.confstr("CS_GNU_LIBC_VERSION") or "glibc 0"
    have = tuple(int(p) for p in libc.split()[-1].split("."))
    problems, checked, own, needed = [], 0, set(), set()
    for path in args.paths:
        for name, stream in elf_members(path):
            header = _elf_header(stream)
            if header is None:
                problems.append(f"{name}: not a little-endian ELF file")
                continue
            got_class, got_machine, flags, shoff, shentsize, shnum, _ = header
            checked += 1
            own.add(os.path.basename(name.split(":")[-1]))
            if (got_machine, got_class) != want:
                problems.append(
                    f"{name}: ELF machine {got_machine} class {got_class}, expected {want[0]} class {want[1]}"
                )
                continue
            if hard_float and not flags & EF_ARM_ABI_FLOAT_HARD:
                problems.append(f"{name}: not hard-float (armhf needs EF_ARM_ABI_FLOAT_HARD)")
            versions = _glibc_versions(stream, got_class, shoff, shentsize, shnum)
            if versions and max(versions) > have:
                newest = ".".join(map(str, max(versions)))
                problems.append(f"{name}: needs GLIBC_{newest}, the target has {libc}")
            needed.update(needed_libraries(stream, got_class))
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
