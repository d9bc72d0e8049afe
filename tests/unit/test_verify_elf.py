"""The verify stage's ABI check (images/verify/verify.py), run here on the host's own binaries."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from rpibuild.export import elf
from tests.unit.scripts import image_side


@pytest.fixture(scope="module")
def verify(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    """verify.py as the image runs it: beside the ELF reader in /opt/rpibuild."""
    opt = image_side(tmp_path_factory.mktemp("opt-rpibuild"))
    sys.path.insert(0, str(opt))
    try:
        spec = importlib.util.spec_from_file_location("rpibuild_verify", opt / "verify.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(opt))
    return module


def test_reads_machine_class_glibc_versions_and_needed_libraries_of_a_real_binary(tmp_path: Path) -> None:
    source = tmp_path / "tiny.c"
    source.write_text("#include <math.h>\ndouble tiny(double x) { return sqrt(x); }\n")
    library = tmp_path / "libtiny.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(library), str(source), "-lm"], check=True)
    with open(library, "rb") as stream:
        header = elf.stream_header(stream)
        assert header is not None
        assert (header.elf_class, header.machine) == (2, 62)  # x86_64 host
        assert "libm.so.6" in elf.needed_libraries(stream, header)
    with open(sys.executable, "rb") as stream:
        header = elf.stream_header(stream)
        assert header is not None
        versions = elf.glibc_versions(stream, header)
    assert versions and all(v >= (2, 0) for v in versions)


def test_wrong_machine_and_newer_glibc_are_refused(
    verify: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    lib = tmp_path / "libfake.so"
    lib.write_bytes(Path(sys.executable).resolve().read_bytes())
    monkeypatch.setattr(verify, "ELF_GLOBS", (str(tmp_path / "*.so"),))
    assert verify.check_elf("62:2")["elf_files"] == 1
    with pytest.raises(SystemExit, match="expected 40 class 1"):
        verify.check_elf("40:1:hf")
    monkeypatch.setattr(verify.os, "confstr", lambda name: "glibc 2.0")
    with pytest.raises(SystemExit, match="needs GLIBC_"):
        verify.check_elf("62:2")
