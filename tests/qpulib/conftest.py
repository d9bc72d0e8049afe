"""QPULib's own test programs, built against libqpu.so exactly as images/qpulib/build.sh
builds it for the images (same fix-ups, same flags: read back from its build-info).

Every test here is marked ``qpulib_suite`` (tests/conftest.py, by folder). The library is
built once per session into a temporary folder, each program compiled once. A QPULib
source tree (RPIBUILD_QPULIB_SRC, exported by scripts/test.sh) and a C++ compiler are
required: without them these tests fail with the reason, they are never skipped.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _qpulib_suite import QPULibBuild, qpulib_source, run_build_sh, vc4c_prefix


@pytest.fixture(scope="session")
def qpulib(tmp_path_factory: pytest.TempPathFactory) -> QPULibBuild:
    """libqpu.so (emulation mode) built by images/qpulib/build.sh, once per session."""
    src = qpulib_source()
    workdir = tmp_path_factory.mktemp("qpulib-suite")
    prefix = workdir / "prefix"
    info = run_build_sh(src, prefix)
    return QPULibBuild(src=src, prefix=prefix, info=info, workdir=workdir)


@pytest.fixture(scope="session")
def vc4c() -> Path:
    """VC4C's library with rpibuild's emulator patches (images/vc4c/build.sh), cached across runs."""
    return vc4c_prefix()


@pytest.fixture(scope="session")
def qpusim(tmp_path_factory: pytest.TempPathFactory, vc4c: Path) -> QPULibBuild:
    """libqpu.so in qpusim mode (encoded QPU code run on VC4C's emulator), once per session."""
    src = qpulib_source()
    workdir = tmp_path_factory.mktemp("qpulib-qpusim")
    prefix = workdir / "prefix"
    info = run_build_sh(src, prefix, extra_env={"VC4C_PREFIX": str(vc4c)}, mode="qpusim")
    return QPULibBuild(src=src, prefix=prefix, info=info, workdir=workdir)


@pytest.fixture(scope="session")
def qpulib_qpu(tmp_path_factory: pytest.TempPathFactory) -> QPULibBuild:
    """libqpu.so in QPU mode (for host tests of its mailbox code against a fake firmware)."""
    src = qpulib_source()
    workdir = tmp_path_factory.mktemp("qpulib-qpu")
    prefix = workdir / "prefix"
    info = run_build_sh(src, prefix, mode="qpu")
    return QPULibBuild(src=src, prefix=prefix, info=info, workdir=workdir)
