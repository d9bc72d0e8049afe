"""ELF headers, the platform check and manifest entries, on synthetic files (no engine)."""

from __future__ import annotations

import hashlib
import struct
import zipfile
from pathlib import Path

import pytest

from rpibuild.export import elf
from rpibuild.export.artifacts import describe_file, elf_check
from rpibuild.platforms import get_platform

ARMV7, ARM64 = get_platform("linux/arm/v7"), get_platform("linux/arm64")


def elf_bytes(elf_class: int, machine: int, flags: int = 0, little: bool = True, file_type: int = 3) -> bytes:
    """A minimal ELF header (the fields rpibuild reads), padded like a real file."""
    order = "<" if little else ">"
    ident = b"\x7fELF" + bytes([elf_class, 1 if little else 2, 1]) + bytes(9)
    header = bytearray(ident + bytes(64 - 16))
    struct.pack_into(order + "HH", header, 16, file_type, machine)
    struct.pack_into(order + "I", header, 36 if elf_class == 1 else 48, flags)
    return bytes(header) + b"\0" * 200


ARM_HF = elf_bytes(1, 40, 0x05000400)
ARM_SOFT = elf_bytes(1, 40, 0x05000200)
AARCH64 = elf_bytes(2, 183)
X86_64 = elf_bytes(2, 62)


def test_parse_header() -> None:
    header = elf.parse_header(ARM_HF)
    assert header is not None
    assert (header.machine, header.bits, header.float_abi, header.machine_name) == (40, 32, "hard", "ARM")
    assert header.describe() == "ARM (40) 32-bit hard-float"
    assert elf.parse_header(AARCH64).describe() == "AArch64 (183) 64-bit"  # type: ignore[union-attr]
    assert elf.parse_header(b"#!/bin/sh\n" + bytes(100)) is None
    assert elf.parse_header(b"\x7fELF") is None
    assert elf.ElfHeader.from_dict(header.as_dict()) == header


def test_real_host_binary_is_x86_64() -> None:
    header = elf.read_header(Path("/bin/sh").resolve())
    assert header is not None and header.machine == 62 and header.bits == 64


@pytest.mark.parametrize(
    ("data", "platform", "problem"),
    [
        (ARM_HF, ARMV7, None),
        (AARCH64, ARM64, None),
        (ARM_SOFT, ARMV7, "is ARM soft, not hard-float (armhf)"),
        (X86_64, ARMV7, "is x86-64 (62) 64-bit, not ARM (40) 32-bit hard-float"),
        (ARM_HF, ARM64, "is ARM (40) 32-bit hard-float, not AArch64 (183) 64-bit"),
        (AARCH64, ARMV7, "is AArch64 (183) 64-bit, not ARM (40) 32-bit hard-float"),
        (elf_bytes(1, 40, 0x05000400, little=False), ARMV7, "is big-endian"),
    ],
)
def test_mismatch(data: bytes, platform: object, problem: str | None) -> None:
    header = elf.parse_header(data)
    assert header is not None
    assert elf.mismatch(header, platform) == problem  # type: ignore[arg-type]


def test_describe_file_and_wheel(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "libqpu.so.1").write_bytes(ARM_HF)
    (tmp_path / "lib" / "libqpu.so").symlink_to("libqpu.so.1")
    wheel = tmp_path / "wheels" / "torch_qpu-0.1.0-cp311-cp311-linux_armv7l.whl"
    wheel.parent.mkdir()
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("torch_qpu/_C.cpython-311-arm-linux-gnueabihf.so", ARM_HF)
        archive.writestr("torch_qpu/lib/libx.so.2.1", X86_64)
        archive.writestr("torch_qpu/__init__.py", "")
        archive.writestr("torch_qpu/notes.so.txt", "not a library")
    lib = describe_file(tmp_path / "lib" / "libqpu.so.1", tmp_path)
    assert lib["sha256"] == hashlib.sha256(ARM_HF).hexdigest()
    assert lib["size"] == len(ARM_HF) and lib["kind"] == "library"
    assert lib["elf"]["float_abi"] == "hard"  # type: ignore[index]
    link = describe_file(tmp_path / "lib" / "libqpu.so", tmp_path)
    assert link == {"path": "lib/libqpu.so", "kind": "library", "symlink": "libqpu.so.1"}
    entry = describe_file(wheel, tmp_path)
    inner = entry["shared_objects"]
    assert [o["path"] for o in inner] == [  # type: ignore[attr-defined]
        "torch_qpu/_C.cpython-311-arm-linux-gnueabihf.so",
        "torch_qpu/lib/libx.so.2.1",
    ]
    assert inner[1]["sha256"] == hashlib.sha256(X86_64).hexdigest()  # type: ignore[index]
    check = elf_check([lib, link, entry], ARMV7)
    assert check["checked"] == 3
    assert check["mismatches"] == [
        "wheels/torch_qpu-0.1.0-cp311-cp311-linux_armv7l.whl!torch_qpu/lib/libx.so.2.1 "
        "is x86-64 (62) 64-bit, not ARM (40) 32-bit hard-float"
    ]
    assert check["expected"] == "ARM (40) 32-bit hard-float"
    assert elf_check([lib], ARM64)["mismatches"] == [
        "lib/libqpu.so.1 is ARM (40) 32-bit hard-float, not AArch64 (183) 64-bit"
    ]


def test_expected_per_platform() -> None:
    assert elf.expected(ARMV7) == "ARM (40) 32-bit hard-float"
    assert elf.expected(get_platform("linux/arm/v6")) == "ARM (40) 32-bit hard-float"
    assert elf.expected(ARM64) == "AArch64 (183) 64-bit"
