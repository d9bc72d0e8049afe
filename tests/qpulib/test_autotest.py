"""QPULib's randomised self-test: 10,000 generated programs, each run through the source
interpreter and the target-code emulator, their outputs compared (Tests/AutoTest.cpp).

AutoTest exits 0 also when a program differs, so the verdict is read from its output.
It failed at program 429 when the library was built with -O2 and without -fwrapv.
"""

from __future__ import annotations

import re

import pytest
from _qpulib_suite import QPULibBuild

pytestmark = pytest.mark.unit  # fast and engine-free: `-m unit` runs it too

NUM_TESTS = 10000


def test_autotest_passes_all_programs(qpulib: QPULibBuild) -> None:
    assert "-fwrapv" in qpulib.info["cxxflags"].split(), qpulib.info
    out = qpulib.run(qpulib.compile("AutoTest"))
    last = out.replace("\r", "\n").strip().splitlines()[-1] if out.strip() else ""
    failed = re.search(r"Failed test (\d+)\.", out)
    assert failed is None, f"AutoTest: program {failed.group(1)} differs:\n{out[failed.start() :][:3000]}"
    assert last == f"OK, passed {NUM_TESTS} tests", f"unexpected AutoTest output: {last!r}"
