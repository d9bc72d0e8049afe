"""The verify stage's ABI check (images/verify/verify.py), run here on the host's own binaries."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "images" / "verify" / "verify.py"
spec = importlib.util.spec_from_file_location("rpibuild_verify", SCRIPT)
assert spec and spec.loader
verify = importlib.util.module_from_spec(spec)
spec.loader.exec_module(verify)


def test_reads_machine_class_and_glibc_versions_of_a_real_binary() -> None:
    with open(sys.executable, "rb") as stream:
        header = verify._elf_header(stream)
        assert header is not None
        elf_class, machine, _flags, shoff, shentsize, shnum, _ = header
        assert (elf_class, machine) == (2, 62)  # x86_64 host
        versions = verify._glibc_versions(stream, elf_class, shoff, shentsize, shnum)
    assert versions and all(v >= (2, 0) for v in versions)


def test_wrong_machine_and_newer_glibc_are_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    lib = tmp_path / "libfake.so"
    lib.write_bytes(Path(sys.executable).resolve().read_bytes())
    monkeypatch.setattr(verify, "ELF_GLOBS", (str(tmp_path / "*.so"),))
    assert verify.check_elf(62, 2, hard_float=False)["elf_files"] == 1
    with pytest.raises(SystemExit, match="expected 40 class 1"):
        verify.check_elf(40, 1, hard_float=True)
    monkeypatch.setattr(verify.os, "confstr", lambda name: "glibc 2.0")
    with pytest.raises(SystemExit, match="needs GLIBC_"):
        verify.check_elf(62, 2, hard_float=False)
