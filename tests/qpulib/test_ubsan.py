"""UndefinedBehaviorSanitizer over QPULib and the torch_qpu extension.

QPULib is built by images/qpulib/build.sh with its usual flags plus
``-fsanitize=undefined -fno-sanitize-recover=all`` (CXXFLAGS/LDFLAGS, which build.sh
appends), AutoTest runs against it, then the extension is built against that library, with
the same sanitizer (CFLAGS/LDFLAGS reach torch's extension compile and link), into a
temporary venv, and its emulator tests run there. Any report fails the test: the first
report aborts the program (-fno-sanitize-recover) and "runtime error:" is looked for in
its output as well. g++'s libubsan needs no LD_PRELOAD: it is a DT_NEEDED of libqpu.so
and of torch_qpu._C and initialises when they load.

Not a `unit` test (about 1.5 min on 2 cores, most of it compiling the extension);
`-m qpulib_suite` selects it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _qpulib_suite import (
    REPO,
    REPORT,
    SANITIZE,
    UBSAN_ENV,
    QPULibBuild,
    cxx_compiler,
    qpulib_source,
    run_build_sh,
)

PIP_OPTIONS = ("--no-build-isolation", "--no-deps", "--no-cache-dir", "--disable-pip-version-check")
PYTEST_OPTIONS = ("-m", "qpulib", "-x", "-q", "-p", "no:cacheprovider", "-rs")


@pytest.fixture(scope="module")
def ubsan_qpulib(tmp_path_factory: pytest.TempPathFactory) -> QPULibBuild:
    src = qpulib_source()
    workdir = tmp_path_factory.mktemp("qpulib-ubsan")
    prefix = workdir / "prefix"
    started = time.monotonic()
    info = run_build_sh(src, prefix, {"CXXFLAGS": SANITIZE, "LDFLAGS": "-fsanitize=undefined"})
    print(f"QPULib with UBSan built in {time.monotonic() - started:.1f} s")
    assert "-fwrapv" in info["cxxflags"].split() and "-fsanitize=undefined" in info["cxxflags"], info
    return QPULibBuild(src=src, prefix=prefix, info=info, workdir=workdir)


def test_sanitizer_reports_fail_the_run(ubsan_qpulib: QPULibBuild) -> None:
    """The harness itself: a known UB (negative shift) under these flags must abort loudly."""
    canary = ubsan_qpulib.workdir / "canary.cpp"
    canary.write_text("int main(int argc, char**) { return (1 << (argc - 2)) == 0; }\n", encoding="utf-8")
    exe = ubsan_qpulib.compile("canary", canary)
    result = subprocess.run([str(exe)], capture_output=True, text=True, env={**os.environ, **UBSAN_ENV})
    assert result.returncode != 0 and REPORT in result.stderr, result


def test_autotest_under_ubsan(ubsan_qpulib: QPULibBuild) -> None:
    exe = ubsan_qpulib.compile("AutoTest")
    result = subprocess.run(
        [str(exe)], capture_output=True, text=True, timeout=600, env={**os.environ, **UBSAN_ENV}
    )
    output = result.stdout.replace("\r", "\n") + result.stderr
    assert result.returncode == 0 and REPORT not in output, output[-4000:]
    assert output.strip().splitlines()[-1] == "OK, passed 10000 tests", output[-4000:]


def test_extension_emulator_tests_under_ubsan(
    ubsan_qpulib: QPULibBuild, tmp_path_factory: pytest.TempPathFactory
) -> None:
    cxx_compiler()
    work = tmp_path_factory.mktemp("torch-qpu-ubsan")
    venv = work / "venv"
    # No pip/setuptools of its own: the system's (which build torch extensions) are used.
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True
    )
    python = venv / "bin" / "python"
    # A copy, so that the build/ folder of the checkout (used by scripts/test.sh) is untouched.
    package = work / "torch-qpu"
    shutil.copytree(
        REPO / "images" / "torch-qpu", package, ignore=shutil.ignore_patterns("build", "*.egg-info")
    )
    env = {
        key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "RPIBUILD_QPULIB_SRC")
    }
    build_env = {
        **env,
        "QPULIB_PREFIX": str(ubsan_qpulib.prefix),
        "CFLAGS": SANITIZE,  # torch's BuildExtension compiles with the compiler's CFLAGS
        "LDFLAGS": "-fsanitize=undefined",
        "MAX_JOBS": os.environ.get("JOBS", "2"),
    }
    started = time.monotonic()
    install = subprocess.run(
        [str(python), "-m", "pip", "install", *PIP_OPTIONS, str(package)],
        capture_output=True,
        text=True,
        env=build_env,
        timeout=900,
    )
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    print(f"torch_qpu with UBSan built in {time.monotonic() - started:.1f} s")

    where = subprocess.run(
        [
            str(python),
            "-c",
            "import torch_qpu, torch_qpu._C as c; print(c.__file__); print(torch_qpu.available_backends())",
        ],
        capture_output=True,
        text=True,
        env={**env, **UBSAN_ENV},
        cwd=work,
    )
    assert where.returncode == 0, where.stderr
    extension = Path(where.stdout.splitlines()[0])
    assert extension.is_relative_to(venv), f"torch_qpu._C imported from {extension}, not the UBSan venv"
    assert b"libubsan.so" in extension.read_bytes(), f"{extension} is not linked with UBSan"
    assert "emulator" in where.stdout, where.stdout

    started = time.monotonic()
    tests = subprocess.run(
        [str(python), "-m", "pytest", "images/torch-qpu/tests", *PYTEST_OPTIONS],
        capture_output=True,
        text=True,
        env={**env, **UBSAN_ENV},
        cwd=REPO,
        timeout=900,
    )
    output = tests.stdout + tests.stderr
    print(f"torch_qpu emulator tests under UBSan: {time.monotonic() - started:.1f} s")
    print(output.strip().splitlines()[-1] if output.strip() else "(no output)")
    assert tests.returncode == 0, output[-6000:]
    assert REPORT not in output, output[-6000:]
    assert " passed" in output and "skipped" not in output, output[-3000:]
