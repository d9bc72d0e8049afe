"""The one ELF reader: which machine a binary is for, its float ABI, the glibc versions and
shared libraries it needs.

Used on the host (artifacts are checked against the platform table before anything is
uploaded: a wrong-architecture library only shows on the Pi, as "wrong ELF class" or a SIGILL)
and copied into the images as ``/opt/rpibuild/elf.py``, where the ABI gate of the cross
stages (elf_gate.py), the verify stage (verify.py) and the torch wheel's runtime package list
(runtime_packages.py) read binaries with the image's own python. So: standard library only.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from rpibuild.platforms import Platform

MAGIC = b"\x7fELF"
HEADER_SIZE = 64  # enough for both classes
MACHINE_NAMES = {3: "x86", 8: "MIPS", 40: "ARM", 62: "x86-64", 183: "AArch64", 243: "RISC-V"}
ELFCLASS32, ELFCLASS64 = 1, 2
# ARM e_flags: EABI version in the top byte; the float ABI bits only mean something for EABI5.
EF_ARM_EABIMASK = 0xFF000000
EF_ARM_ABI_FLOAT_SOFT = 0x200
EF_ARM_ABI_FLOAT_HARD = 0x400
SHT_GNU_VERNEED = 0x6FFFFFFE
PT_LOAD, PT_DYNAMIC = 1, 2
DT_NEEDED, DT_STRTAB = 1, 5
_GLIBC = re.compile(r"GLIBC_(\d+(?:\.\d+)*)")


@dataclass(frozen=True)
class ElfHeader:
    """The fields of an ELF file header that say what it is and where its tables are."""

    elf_class: int  # 1: 32-bit, 2: 64-bit
    little_endian: bool
    type: int  # 2 executable, 3 shared object (or PIE)
    machine: int
    flags: int
    phoff: int = 0
    phentsize: int = 0
    phnum: int = 0
    shoff: int = 0
    shentsize: int = 0
    shnum: int = 0

    @property
    def bits(self) -> int:
        return 32 if self.elf_class == ELFCLASS32 else 64

    @property
    def order(self) -> str:
        """The ``struct`` byte order of the file."""
        return "<" if self.little_endian else ">"

    @property
    def machine_name(self) -> str:
        return MACHINE_NAMES.get(self.machine, f"machine {self.machine}")

    @property
    def float_abi(self) -> str | None:
        """``hard`` or ``soft`` for 32-bit ARM EABI5 files; None where it does not apply."""
        if self.machine != 40 or (self.flags & EF_ARM_EABIMASK) >> 24 < 5:
            return None
        if self.flags & EF_ARM_ABI_FLOAT_HARD:
            return "hard"
        if self.flags & EF_ARM_ABI_FLOAT_SOFT:
            return "soft"
        return None

    def describe(self) -> str:
        text = f"{self.machine_name} ({self.machine}) {self.bits}-bit"
        return text + (f" {self.float_abi}-float" if self.float_abi else "")

    def as_dict(self) -> dict[str, object]:
        return {
            "machine": self.machine,
            "machine_name": self.machine_name,
            "class": self.bits,
            "float_abi": self.float_abi,
            "endian": "little" if self.little_endian else "big",
            "type": self.type,
            "flags": self.flags,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> ElfHeader:
        """The inverse of ``as_dict`` (manifest entries are checked from what they record)."""
        return cls(
            elf_class=ELFCLASS32 if data["class"] == 32 else ELFCLASS64,
            little_endian=data.get("endian", "little") == "little",
            type=int(data.get("type", 0)),  # type: ignore[call-overload]
            machine=int(data["machine"]),  # type: ignore[call-overload]
            flags=int(data.get("flags", 0)),  # type: ignore[call-overload]
        )


def parse_header(data: bytes) -> ElfHeader | None:
    """The header of ELF bytes, or None when ``data`` is not ELF (headers, scripts, ...)."""
    if (
        len(data) < 52
        or data[:4] != MAGIC
        or data[4] not in (ELFCLASS32, ELFCLASS64)
        or data[5] not in (1, 2)
    ):
        return None
    elf_class, little = data[4], data[5] == 1
    order = "<" if little else ">"
    if elf_class == ELFCLASS32:
        layout, size = order + "HHIIIIIHHHHHH", 36
    else:
        layout, size = order + "HHIQQQIHHHHHH", 48
    if len(data) < 16 + size:
        return None
    fields = struct.unpack_from(layout, data, 16)
    file_type, machine, phoff, shoff, flags = fields[0], fields[1], fields[4], fields[5], fields[6]
    phentsize, phnum, shentsize, shnum = fields[8], fields[9], fields[10], fields[11]
    return ElfHeader(
        elf_class, little, file_type, machine, flags, phoff, phentsize, phnum, shoff, shentsize, shnum
    )


def read_header(path: Path | str) -> ElfHeader | None:
    with open(path, "rb") as handle:
        return parse_header(handle.read(HEADER_SIZE))


def stream_header(stream: BinaryIO) -> ElfHeader | None:
    """The header of an open ELF file (read from its start)."""
    stream.seek(0)
    return parse_header(stream.read(HEADER_SIZE))


def glibc_versions(stream: BinaryIO, header: ElfHeader) -> list[tuple[int, ...]]:
    """The GLIBC_x.y versions the file needs (its .gnu.version_r section)."""
    order, wide = header.order, header.elf_class == ELFCLASS64
    section = order + ("IIQQQQIIQQ" if wide else "IIIIIIIIII")
    sections = []
    for index in range(header.shnum):
        stream.seek(header.shoff + index * header.shentsize)
        raw = stream.read(struct.calcsize(section))
        _, kind, _, _, offset, size, link, info, _, _ = struct.unpack(section, raw)
        sections.append((kind, offset, size, link, info))
    versions = []
    for kind, offset, _size, link, count in sections:
        if kind != SHT_GNU_VERNEED or link >= len(sections):
            continue
        strings = sections[link][1]
        entry = offset
        for _ in range(count):
            stream.seek(entry)
            _, aux_count, _, aux, next_entry = struct.unpack(order + "HHIII", stream.read(16))
            at = entry + aux
            for _ in range(aux_count):
                stream.seek(at)
                _, _, _, name, next_aux = struct.unpack(order + "IHHII", stream.read(16))
                stream.seek(strings + name)
                text = stream.read(64).split(b"\0", 1)[0].decode("ascii", "replace")
                if match := _GLIBC.fullmatch(text):
                    versions.append(tuple(int(p) for p in match[1].split(".")))
                if not next_aux:
                    break
                at += next_aux
            if not next_entry:
                break
            entry += next_entry
    return versions


def needed_libraries(stream: BinaryIO, header: ElfHeader) -> list[str]:
    """DT_NEEDED entries, read through the program headers (no section table needed)."""
    order, wide = header.order, header.elf_class == ELFCLASS64
    program = order + ("IIQQQQQQ" if wide else "IIIIIIII")
    dyn = order + ("qQ" if wide else "iI")
    loads, dynamic = [], None
    for index in range(header.phnum):
        stream.seek(header.phoff + index * header.phentsize)
        fields = struct.unpack(program, stream.read(struct.calcsize(program)))
        if wide:
            kind, offset, vaddr, filesz = fields[0], fields[2], fields[3], fields[5]
        else:
            kind, offset, vaddr, filesz = fields[0], fields[1], fields[2], fields[4]
        if kind == PT_LOAD:
            loads.append((vaddr, offset, filesz))
        elif kind == PT_DYNAMIC:
            dynamic = (offset, filesz)
    if dynamic is None:
        return []
    size = struct.calcsize(dyn)
    stream.seek(dynamic[0])
    raw = stream.read(dynamic[1])
    entries = [struct.unpack_from(dyn, raw, at) for at in range(0, len(raw) - size + 1, size)]
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


def parse_spec(spec: str) -> tuple[int, int, bool]:
    """``MACHINE:CLASS[:hf]`` (the platform table's ``elf_spec``) as (machine, class, hard-float)."""
    machine, elf_class, *rest = spec.split(":")
    return int(machine), int(elf_class), rest == ["hf"]


def spec_mismatch(header: ElfHeader, spec: str) -> str | None:
    """Why ``header`` does not fit ``MACHINE:CLASS[:hf]`` (None when it does)."""
    machine, elf_class, hard_float = parse_spec(spec)
    if (header.machine, header.elf_class) != (machine, elf_class):
        return f"ELF machine {header.machine} class {header.elf_class}, expected {machine} class {elf_class}"
    if not header.little_endian:
        return "is big-endian"
    if hard_float and header.float_abi != "hard":
        return "not hard-float (armhf needs EF_ARM_ABI_FLOAT_HARD)"
    return None


def expected(platform: Platform) -> str:
    """What every binary of ``platform`` must be, in words (for messages and the manifest)."""
    name = MACHINE_NAMES.get(platform.elf_machine, "machine")
    bits = 32 if platform.elf_class == ELFCLASS32 else 64
    hard = " hard-float" if platform.elf_machine == 40 and platform.elf_class == ELFCLASS32 else ""
    return f"{name} ({platform.elf_machine}) {bits}-bit{hard}"


def mismatch(header: ElfHeader, platform: Platform) -> str | None:
    """Why ``header`` cannot run on ``platform`` (None when it can).

    32-bit ARM Pi platforms here are Debian/Raspbian armhf: EABI5 with the hard-float ABI;
    a soft-float (armel) library would link but pass floats in the wrong registers.
    """
    if header.machine != platform.elf_machine or header.elf_class != platform.elf_class:
        return f"is {header.describe()}, not {expected(platform)}"
    if not header.little_endian:
        return "is big-endian"
    if platform.elf_machine == 40 and platform.elf_class == ELFCLASS32 and header.float_abi != "hard":
        return f"is ARM {header.float_abi or 'without a hard-float ABI flag'}, not hard-float (armhf)"
    return None
