"""Shared fixtures; every test module is marked by its folder: unit, integration, e2e, or
qpulib_suite (tests/qpulib: QPULib's own test programs and the UBSan run)."""

from __future__ import annotations

import os
import signal
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from rpibuild.engine import DockerEngine, Engine

HERE = Path(__file__).parent
FOLDER_MARKERS = {
    "unit": pytest.mark.unit,
    "integration": pytest.mark.integration,
    "e2e": pytest.mark.e2e,
    "qpulib": pytest.mark.qpulib_suite,
}
_DESELECTED_SUITE = pytest.StashKey[int]()


def pytest_configure(config: pytest.Config) -> None:
    """Give the tests' child processes a normal Ctrl-C.

    A job a non-interactive shell starts in the background (as CI may) inherits SIGINT as
    ignored, and an ignored signal stays ignored across exec: the rpibuild processes that the
    Ctrl-C tests interrupt would never see it. A handled signal is reset to the default on
    exec, so handling it here gives every child what a terminal would give it.
    """
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_deselected(items: list[pytest.Item]) -> None:
    """Count QPULib-suite tests a -m/-k expression left out, to say so at the end."""
    if items:
        config = items[0].config
        dropped = sum(1 for item in items if item.get_closest_marker("qpulib_suite"))
        config.stash[_DESELECTED_SUITE] = config.stash.get(_DESELECTED_SUITE, 0) + dropped


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        try:
            folder = Path(str(item.fspath)).relative_to(HERE).parts[0]
        except ValueError:
            continue
        if folder in FOLDER_MARKERS:
            item.add_marker(FOLDER_MARKERS[folder])


@pytest.fixture
def write_profile(tmp_path: Path) -> Callable[..., Path]:
    """Write a YAML profile (dedented) into tmp_path and return its path."""

    def write(text: str, name: str = "profile.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
        return path

    return write


@pytest.fixture(scope="session")
def engine() -> Engine:
    """The real Docker engine (integration and e2e tests; set up by scripts/setup-host.sh)."""
    return DockerEngine.connect()


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep logs and fetched sources of tests out of the user's cache (unless CI shares one)."""
    if "RPIBUILD_CACHE" not in os.environ:
        monkeypatch.setenv("RPIBUILD_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


QPULIB_SRC = os.environ.get("RPIBUILD_QPULIB_SRC")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say loudly what did not run for lack of QPULib's source (GitHub is unreachable in CI)."""
    dropped = terminalreporter.config.stash.get(_DESELECTED_SUITE, 0)
    if dropped:
        terminalreporter.write_sep(
            "!",
            f"{dropped} QPULib suite test(s) (marker qpulib_suite, e.g. the UBSan run) were "
            "deselected: run them with `bash scripts/test.sh -m qpulib_suite`",
            yellow=True,
            bold=True,
        )
    if not QPULIB_SRC:
        terminalreporter.write_sep(
            "!",
            "RPIBUILD_QPULIB_SRC is not set: QPULib's own tests fail and the extension has only "
            "its cpu backend (scripts/test.sh fetches QPULib; use it)",
            yellow=True,
            bold=True,
        )
