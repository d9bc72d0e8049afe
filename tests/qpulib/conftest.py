"""QPULib's own test programs, built against libqpu.so exactly as images/qpulib/build.sh
builds it for the images (same fix-ups, same flags: read back from its build-info).

Every test here is marked ``qpulib_suite`` (tests/conftest.py, by folder). The library is
built once per session into a temporary folder, each program compiled once. A QPULib
source tree (RPIBUILD_QPULIB_SRC, exported by scripts/test.sh) and a C++ compiler are
required: without them these tests fail with the reason, they are never skipped.
"""

from __future__ import annotations

import pytest
from _qpulib_suite import QPULibBuild, qpulib_source, run_build_sh


@pytest.fixture(scope="session")
def qpulib(tmp_path_factory: pytest.TempPathFactory) -> QPULibBuild:
    """libqpu.so (emulation mode) built by images/qpulib/build.sh, once per session."""
    src = qpulib_source()
    workdir = tmp_path_factory.mktemp("qpulib-suite")
    prefix = workdir / "prefix"
    info = run_build_sh(src, prefix)
    return QPULibBuild(src=src, prefix=prefix, info=info, workdir=workdir)
