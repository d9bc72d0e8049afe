"""torch_qpu's qpusim backend: the extension built against libqpu.so in qpusim mode (VC4C's
VideoCore IV emulator), and its test module (images/torch-qpu/tests/test_torch_qpu_qpusim.py:
every op at the edge shapes on 1, 4 and 12 QPUs, launch sizing, failed launches, GPU memory
at exit) run against it in a child pytest.

The extension is built with UndefinedBehaviorSanitizer (a report fails the run). The extension
installed for the other tests is an emulation build; one process cannot load two
builds of the same operators, hence the separate install (a folder on the child's PYTHONPATH)
and the child process. Missing VC4C sources, tools or a failing build fail this test (marker
``qpusim``); the child runs with --require-qpusim, so nothing in it is skipped.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _qpulib_suite import REPO, REPORT, SANITIZE, UBSAN_ENV, QPULibBuild

pytestmark = pytest.mark.qpusim

EXTENSION = REPO / "images" / "torch-qpu"
TESTS = EXTENSION / "tests" / "test_torch_qpu_qpusim.py"


@pytest.fixture(scope="session")
def torch_qpu_qpusim(qpusim: QPULibBuild) -> Path:
    """torch_qpu built against the qpusim libqpu.so, installed into a folder of its own."""
    try:
        import torch  # noqa: F401  (the extension compiles against the installed torch)
    except ImportError:
        pytest.fail("torch is not installed: scripts/test.sh installs the host torch first", pytrace=False)
    source = qpusim.workdir / "torch-qpu"
    shutil.copytree(EXTENSION, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = qpusim.workdir / "site"
    # UndefinedBehaviorSanitizer in the extension (this build is for tests only): torch_qpu's
    # own host code for its kernels runs only in qpu and qpusim builds, so this is where UBSan
    # sees it (tests/qpulib/test_ubsan.py covers the emulation build).
    env = {
        **os.environ,
        "QPULIB_PREFIX": str(qpusim.prefix),
        "QPULIB_MODE": "qpusim",
        "CFLAGS": SANITIZE,
        "LDFLAGS": "-fsanitize=undefined",
    }
    env.pop("RPIBUILD_QPULIB_SRC", None)  # the prefix decides
    env.setdefault("MAX_JOBS", "2")
    started = time.monotonic()
    command = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    command += ["--no-build-isolation", "--no-deps", "--target", str(target), str(source)]
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        pytest.fail(
            f"building torch_qpu against the qpusim libqpu.so failed (exit {result.returncode}):\n"
            f"{result.stdout[-2000:]}\n{result.stderr[-4000:]}",
            pytrace=False,
        )
    print(f"torch_qpu (qpusim build): built in {time.monotonic() - started:.0f} s")
    return target


def test_torch_qpu_on_qpusim(torch_qpu_qpusim: Path) -> None:
    env = {
        **os.environ,
        **UBSAN_ENV,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(torch_qpu_qpusim), os.environ.get("PYTHONPATH")])),
    }
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(TESTS), "--require-qpusim"]
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, timeout=3600)
    seconds = time.monotonic() - started
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    print(f"qpusim tests: {summary} (wall {seconds:.0f} s)")
    assert result.returncode == 0, f"{result.stdout[-6000:]}\n{result.stderr[-2000:]}"
    assert REPORT not in result.stdout + result.stderr, (result.stdout + result.stderr)[-6000:]
    assert b"libubsan.so" in next(torch_qpu_qpusim.glob("torch_qpu/_C*.so")).read_bytes()
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (\w+)", summary)}
    assert counts.get("passed", 0) > 100, summary
    assert set(counts) == {"passed"}, f"only passes expected (nothing skipped): {summary}"
