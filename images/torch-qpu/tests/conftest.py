"""pytest setup for torch_qpu's tests (run from the repo root by CI).

* Makes ``torch_qpu`` importable from the source tree when it is not
  installed (that gives the cpu-only package: the API tests still run).
* Registers the ``qpulib`` marker: tests that need a QPULib build (emulator
  mode anywhere, qpu mode on a Pi). Without one they are skipped *loudly*: the
  skip reason names the fix and the terminal summary carries a warning line.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

try:
    import torch_qpu
except ImportError:  # not installed: use the sources (cpu-only build)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import torch_qpu

QPULIB_SKIP_REASON = (
    "torch_qpu was built without QPULib, so the emulator/qpu kernels are untested: rebuild "
    "with RPIBUILD_QPULIB_SRC=<QPULib source tree> pip install --no-build-isolation "
    "images/torch-qpu (or QPULIB_PREFIX=<prefix from images/qpulib/build.sh>)"
)


def kernel_backend() -> str | None:
    """The backend running the QPULib kernels here: 'qpu' on a Pi, else 'emulator'."""
    available = torch_qpu.available_backends()
    for name in ("qpu", "emulator"):
        if name in available:
            return name
    return None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "qpulib: needs torch_qpu built with QPULib (emulation or qpu mode)"
    )
    config.stash[_SKIPPED_KEY] = 0


_SKIPPED_KEY = pytest.StashKey[int]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if kernel_backend() is not None:
        return
    skip = pytest.mark.skip(reason=QPULIB_SKIP_REASON)
    skipped = 0
    for item in items:
        if "qpulib" in item.keywords:
            item.add_marker(skip)
            skipped += 1
    config.stash[_SKIPPED_KEY] = skipped


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    skipped = config.stash.get(_SKIPPED_KEY, 0)
    if skipped:
        terminalreporter.write_sep("!", "torch_qpu: QPULib kernel tests SKIPPED", yellow=True)
        terminalreporter.write_line(
            f"WARNING: {skipped} tests marked 'qpulib' were skipped. {QPULIB_SKIP_REASON}",
            yellow=True,
            bold=True,
        )


@pytest.fixture
def backend() -> str:
    """Name of the kernel backend for 'qpulib' tests."""
    name = kernel_backend()
    if name is None:  # pragma: no cover - collection already skipped these
        pytest.skip(QPULIB_SKIP_REASON)
    return name


@pytest.fixture(autouse=True)
def _restore_settings():
    """Tests may change the global backend/QPU count; put them back."""
    saved = (torch_qpu.get_backend(), torch_qpu.get_num_qpus(), torch_qpu.get_auto_threshold())
    yield
    torch_qpu.set_backend(saved[0])
    torch_qpu.set_num_qpus(saved[1])
    torch_qpu.set_auto_threshold(saved[2])
