"""pytest setup for torch_qpu's tests (run from the repo root by CI).

* ``torch_qpu`` must be installed (its operators are compiled: see the
  README); an import failure is a collection error, never a skip.
* Every test here gets the ``unit`` marker (no engine, no network), so
  ``pytest -m unit`` runs them instead of silently dropping them.
* The ``qpulib`` marker: tests of the QPULib kernels (emulator anywhere, the
  QPUs on a Pi). Without a QPULib build they are skipped *loudly* (reason and
  a warning in the terminal summary), unless ``--require-qpulib`` is given
  (scripts/test.sh always gives it): then a missing kernel backend, or a
  missing ``RPIBUILD_QPULIB_SRC`` for the build tests, fails those tests.
* test_torch_qpu_qpusim.py runs in a qpusim build only (it is not collected
  in others); ``--require-qpusim`` collects it anyway, so a build that is not
  qpusim fails it. tests/qpulib/test_torch_qpu_qpusim.py builds one and runs
  it that way (marker ``qpusim``, always run by CI).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import torch_qpu

HERE = Path(__file__).resolve().parent
QPULIB_SKIP_REASON = (
    "torch_qpu was built without QPULib, so the emulator/qpu kernels are untested: rebuild "
    "with RPIBUILD_QPULIB_SRC=<QPULib source tree> pip install --no-build-isolation "
    "images/torch-qpu (or QPULIB_PREFIX=<prefix from images/qpulib/build.sh>)"
)
SRC_SKIP_REASON = "set RPIBUILD_QPULIB_SRC to a QPULib source tree"
_SKIPPED_KEY = pytest.StashKey[int]()


def kernel_backend() -> str | None:
    """The backend running the QPULib kernels here: 'qpu' on a Pi, else 'emulator'."""
    available = torch_qpu.available_backends()
    for name in ("qpu", "emulator"):
        if name in available:
            return name
    return None


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--require-qpulib",
        action="store_true",
        default=False,
        help="torch_qpu tests: a missing QPULib kernel backend (or RPIBUILD_QPULIB_SRC for the "
        "QPULib build tests) fails the tests that need it instead of skipping them",
    )
    parser.addoption(
        "--require-qpusim",
        action="store_true",
        default=False,
        help="torch_qpu tests: run test_torch_qpu_qpusim.py even when this torch_qpu is not a "
        "qpusim build (it then fails instead of not being collected)",
    )


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """The qpusim tests need a qpusim build (or --require-qpusim, to fail without one)."""
    if collection_path.name != "test_torch_qpu_qpusim.py" or collection_path.parent != HERE:
        return None
    if torch_qpu.build_mode() == "qpusim" or config.getoption("--require-qpusim", default=False):
        return None
    return True


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "qpulib: needs torch_qpu built with QPULib (emulation or qpu mode)"
    )
    config.addinivalue_line("markers", "unit: fast, pure tests (no engine)")
    config.addinivalue_line(
        "markers", "qpusim: needs torch_qpu built against a qpusim-mode QPULib (VC4C's emulator)"
    )
    config.stash[_SKIPPED_KEY] = 0


def required(config: pytest.Config) -> bool:
    return bool(config.getoption("--require-qpulib", default=False))


def _ours(item: pytest.Item) -> bool:
    return HERE in Path(str(item.fspath)).resolve().parents


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    ours = [item for item in items if _ours(item)]
    for item in ours:
        item.add_marker(pytest.mark.unit)
    if kernel_backend() is not None or required(config):
        return  # with --require-qpulib the `backend` fixture fails them instead
    skip = pytest.mark.skip(reason=QPULIB_SKIP_REASON)
    skipped = 0
    for item in ours:
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
def backend(request: pytest.FixtureRequest) -> str:
    """Name of the kernel backend for 'qpulib' tests."""
    name = kernel_backend()
    if name is None:
        if required(request.config):
            pytest.fail(f"--require-qpulib: {QPULIB_SKIP_REASON}", pytrace=False)
        pytest.skip(QPULIB_SKIP_REASON)  # pragma: no cover - collection already skipped these
    return name


@pytest.fixture
def qpulib_src(request: pytest.FixtureRequest) -> str:
    """The QPULib source tree named by RPIBUILD_QPULIB_SRC (for the build tests)."""
    src = os.environ.get("RPIBUILD_QPULIB_SRC")
    if not src:
        if required(request.config):
            pytest.fail(f"--require-qpulib: {SRC_SKIP_REASON}", pytrace=False)
        pytest.skip(SRC_SKIP_REASON)
    return src


@pytest.fixture(autouse=True)
def _restore_settings():
    """Tests may change the global backend/QPU count; put them back."""
    saved = (torch_qpu.get_backend(), torch_qpu.get_num_qpus(), torch_qpu.get_auto_threshold())
    yield
    torch_qpu.set_backend(saved[0])
    torch_qpu.set_num_qpus(saved[1])
    torch_qpu.set_auto_threshold(saved[2])
