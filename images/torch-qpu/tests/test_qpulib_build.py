"""images/qpulib: fixup.py is idempotent and loud; build.sh rejects bad input.

The full build runs only with RPIBUILD_QPULIB_SRC (a QPULib tree; none is
vendored) and a C++ compiler; the rest needs neither. Without the tree those
tests skip, or fail under --require-qpulib (scripts/test.sh).
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

QPULIB_DIR = Path(__file__).resolve().parents[2] / "qpulib"


def load_fixup():
    spec = importlib.util.spec_from_file_location("qpulib_fixup", QPULIB_DIR / "fixup.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up
    spec.loader.exec_module(module)
    return module


def test_fixup_fails_loudly_on_changed_upstream(tmp_path: Path) -> None:
    fixup = load_fixup()
    (tmp_path / "Lib" / "Source").mkdir(parents=True)
    (tmp_path / "Lib" / "Source" / "Ptr.h").write_text("struct Ptr { Ptr() {} };\n")
    with pytest.raises(fixup.FixupError, match="cxx20-ptr-constructors"):
        fixup.apply_all(tmp_path)
    assert fixup.main([str(tmp_path)]) == 1


def test_fixup_rejects_non_tree(tmp_path: Path) -> None:
    fixup = load_fixup()
    with pytest.raises(fixup.FixupError, match="no Lib/"):
        fixup.apply_all(tmp_path)


def test_build_sh_rejects_bad_mode(tmp_path: Path) -> None:
    if shutil.which("bash") is None:
        pytest.skip("bash not available")
    (tmp_path / "Lib").mkdir()
    result = subprocess.run(
        ["bash", str(QPULIB_DIR / "build.sh"), str(tmp_path), str(tmp_path / "p"), "gpu"],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "MODE must be" in result.stderr


def test_fixup_idempotent_on_real_tree(tmp_path: Path, qpulib_src: str) -> None:
    fixup = load_fixup()
    shutil.copytree(Path(qpulib_src) / "Lib", tmp_path / "Lib")
    first = fixup.apply_all(tmp_path)
    assert all(status == "applied" for _, status in first)
    snapshot = {p: p.read_bytes() for p in (tmp_path / "Lib").rglob("*") if p.is_file()}
    second = fixup.apply_all(tmp_path)
    assert all(status == "already applied" for _, status in second)
    assert snapshot == {p: p.read_bytes() for p in (tmp_path / "Lib").rglob("*") if p.is_file()}


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
def test_build_and_selftest_emulation(tmp_path: Path, qpulib_src: str) -> None:
    prefix = tmp_path / "prefix"
    build = subprocess.run(
        ["bash", str(QPULIB_DIR / "build.sh"), qpulib_src, str(prefix), "emulation"],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr
    assert (prefix / "lib" / "libqpu.so").exists()
    assert (prefix / "include" / "qpulib" / "Source" / "Ptr.h").is_file()
    assert "mode=emulation" in (prefix / "share" / "qpulib" / "build-info").read_text()
    run = subprocess.run(
        ["bash", str(QPULIB_DIR / "selftest.sh"), str(prefix)], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "sum=992" in run.stdout


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ with AddressSanitizer")
def test_kernels_never_read_past_buffer_end(qpulib_src: str) -> None:
    """The seed's prefetch read one slice past the end; ASan proves ours does not."""
    script = Path(__file__).resolve().parents[1] / "scripts" / "kernel_overread_check.sh"
    run = subprocess.run(["bash", str(script), qpulib_src], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count("no read past the buffer end") == 5
