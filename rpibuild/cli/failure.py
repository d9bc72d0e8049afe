"""A failure told to machines: a JSON error object on stdout (--json) and a GitHub annotation.

A script that asked for ``--json`` reads stdout whatever happened, so a failure is JSON there
too: exit code, stage, message, hint and log file. Under GitHub Actions an ``::error::``
workflow command puts the message on the run's summary page, not only deep in its log.
Everything is masked (URL credentials) like any other output.
"""

from __future__ import annotations

import json
import os
from typing import Any

import click

from rpibuild.errors import BuildError, RpibuildError
from rpibuild.redact import mask_data, mask_urls

_wants_json = False


def want_json(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    """The --json option's callback: remember that failures are to be JSON too."""
    global _wants_json
    _wants_json = _wants_json or bool(value)
    return value


def wants_json() -> bool:
    return _wants_json


def reset() -> None:
    """A new command line (tests run several in one process): no --json seen yet."""
    global _wants_json
    _wants_json = False


def error_object(exc: RpibuildError) -> dict[str, Any]:
    """What a script needs to branch on and to show: the JSON ``--json`` prints on failure."""
    return {
        "error": {
            "exit_code": int(exc.exit_code),
            "stage": exc.stage if isinstance(exc, BuildError) else None,
            "message": exc.message,
            "hint": exc.hint,
            "log_file": exc.log_file if isinstance(exc, BuildError) else None,
        }
    }


def report_machine(exc: RpibuildError) -> None:
    if _wants_json:
        click.echo(json.dumps(mask_data(error_object(exc)), indent=2))
    stage = exc.stage if isinstance(exc, BuildError) else None
    annotate(exc.message + (f"\nhint: {exc.hint}" if exc.hint else ""), stage)


def report_usage(message: str, code: int) -> None:
    """A usage error click found: the same JSON object (no stage, no log)."""
    if _wants_json:
        error = {"exit_code": code, "stage": None, "message": message, "hint": None, "log_file": None}
        click.echo(json.dumps(mask_data({"error": error}), indent=2))
    annotate(message, None)


def annotate(message: str, stage: str | None) -> None:
    """``::error title=...::message`` when running under GitHub Actions (stderr: the runner
    reads workflow commands from both streams, and stdout stays the command's result)."""
    if os.environ.get("GITHUB_ACTIONS") != "true":
        return
    title = f"rpibuild failed in {stage}" if stage else "rpibuild failed"
    click.echo(f"::error title={_property(title)}::{_data(mask_urls(message))}", err=True)


def _data(text: str) -> str:
    """A workflow command's message: ``%``, CR and LF escaped as the runner expects."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _property(text: str) -> str:
    return _data(text).replace(":", "%3A").replace(",", "%2C")
