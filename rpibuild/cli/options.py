"""Options shared by several commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def profile_options(func: F) -> F:
    """-p/--profile (name in configs/ or a YAML path) and repeatable --set FIELD=VALUE."""
    func = click.option(
        "--set",
        "overrides",
        multiple=True,
        metavar="FIELD=VALUE",
        help="Override a profile field, e.g. --set torch.version=2.6.0 (repeatable).",
    )(func)
    func = click.option(
        "-p",
        "--profile",
        envvar="RPIBUILD_PROFILE",
        show_envvar=True,
        default=None,
        metavar="NAME|PATH",
        help="Profile name from configs/ or a path to a YAML file [default: pi3b-arm64].",
    )(func)
    return func


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout.")(
        func
    )


def emit_json(data: object) -> None:
    import json

    click.echo(json.dumps(data, indent=2, sort_keys=False))
