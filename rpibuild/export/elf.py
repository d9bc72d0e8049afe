"""Just enough ELF to say which machine a binary is for, and whether that is the profile's.

A wrong-architecture library in a CI artifact is the kind of mistake that only shows on the
Pi ("cannot open shared object file: wrong ELF class" or a SIGILL), so artifacts are checked
here against the platform table (``rpibuild.platforms``) before anything is uploaded.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from rpibuild.platforms import Platform

MAGIC = b"\x7fELF"
HEADER_SIZE = 64  # enough for both classes
MACHINE_NAMES = {3: "x86", 8: "MIPS", 40: "ARM", 62: "x86-64", 183: "AArch64", 243: "RISC-V"}
ELFCLASS32, ELFCLASS64 = 1, 2
# ARM e_flags: EABI version in the top byte; the float ABI bits only mean something for EABI5.
EF_ARM_EABIMASK = 0xFF000000
EF_ARM_ABI_FLOAT_SOFT = 0x200
EF_ARM_ABI_FLOAT_HARD = 0x400


@dataclass(frozen=True)
class ElfHeader:
    """The identifying fields of an ELF file header."""

    elf_class: int  # 1: 32-bit, 2: 64-bit
    little_endian: bool
    type: int  # 2 executable, 3 shared object (or PIE)
    machine: int
    flags: int

    @property
    def bits(self) -> int:
        return 32 if self.elf_class == ELFCLASS32 else 64

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
    if len(data) < 52 or data[:4] != MAGIC or data[4] not in (ELFCLASS32, ELFCLASS64):
        return None
    elf_class, little = data[4], data[5] == 1
    order = "<" if little else ">"
    file_type, machine = struct.unpack_from(order + "HH", data, 16)
    flags_offset = 36 if elf_class == ELFCLASS32 else 48
    if len(data) < flags_offset + 4:
        return None
    (flags,) = struct.unpack_from(order + "I", data, flags_offset)
    return ElfHeader(elf_class, little, file_type, machine, flags)


def read_header(path: Path) -> ElfHeader | None:
    with path.open("rb") as handle:
        return parse_header(handle.read(HEADER_SIZE))


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
