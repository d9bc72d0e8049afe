"""One exit-code table: the enum every exit uses, and the README's copy of it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from rpibuild import errors
from rpibuild.errors import ExitCode, RpibuildError

REPO = Path(__file__).resolve().parents[2]


def _readme_table() -> dict[int, str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("Exit codes (one table") :]
    rows = re.findall(r"^\| (\d+) \| (.+?) \|$", section.split("\n\n", 2)[1], re.MULTILINE)
    return {int(code): meaning for code, meaning in rows}


def test_the_readme_table_is_the_enum() -> None:
    assert _readme_table() == {code.value: code.meaning for code in ExitCode}


def test_codes_are_distinct_where_the_causes_are() -> None:
    assert len({code.value for code in ExitCode}) == len(ExitCode)
    assert errors.DownloadError.exit_code != errors.BuildError.exit_code
    assert errors.InternalError.exit_code != ExitCode.CHECK_FAILED
    assert errors.ExportError.exit_code != errors.EngineError.exit_code
    assert issubclass(errors.DownloadError, errors.BuildError)  # still a failed step, for callers


def test_every_error_class_exits_with_a_member_of_the_table() -> None:
    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, RpibuildError)]
    assert len(classes) >= 10
    for cls in classes:
        assert isinstance(cls.exit_code, ExitCode), cls


def test_no_exit_with_a_bare_number() -> None:
    """Every sys.exit/ctx.exit in rpibuild/ names its code from the table."""
    for path in (REPO / "rpibuild").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "exit"
                and node.args
            ):
                assert not isinstance(node.args[0], ast.Constant), f"{path}:{node.lineno}"
