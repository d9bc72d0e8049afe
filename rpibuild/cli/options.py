"""Options shared by several commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def profile_name_callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """An explicit empty profile (``-p ""``) is a usage error, not the default profile."""
    values = value if isinstance(value, tuple) else (value,)
    if any(v is not None and not str(v).strip() for v in values):
        raise click.BadParameter("is empty: give a profile name from configs/ or a path to a YAML file")
    return value


def _grammar_callback(check: Callable[[str], str]) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """A click callback from a profile grammar check: a malformed value is a usage error (exit 2)
    before anything contacts the engine or a registry."""

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is None:
            return value
        try:
            check(value)
        except ValueError as exc:
            from rpibuild.redact import printable

            raise click.BadParameter(f"{printable(value)!r} {exc}") from None
        return value

    return callback


def registry_host(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    from rpibuild.config import grammar

    return _grammar_callback(grammar.registry_host)(ctx, param, value)


def registry_namespace(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    from rpibuild.config import grammar

    return _grammar_callback(grammar.namespace)(ctx, param, value)


def manifest_name(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    from rpibuild.config import grammar

    def check(text: str) -> str:
        grammar.image_reference(text)
        if ":" not in text.rsplit("/", 1)[-1] or "@" in text:
            raise ValueError("is not NAME:TAG")
        return text

    return _grammar_callback(check)(ctx, param, value)


def image_tag_reference(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """``-t/--tag [REGISTRY/]NAME:TAG`` (repeatable): each checked like a profile's tags."""
    from rpibuild.publish.release import check_tag

    for item in value or ():
        _grammar_callback(check_tag)(ctx, param, item)
    return value


def output_path(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """An output path that cannot be created is a usage error now, not a traceback later.

    The nearest existing ancestor must be a writable folder; what is then created under it
    is the command's business (it still reports its own errors cleanly).
    """
    import os
    from pathlib import Path

    if value is None:
        return value
    from rpibuild.redact import printable
    from rpibuild.text import forbidden_character

    path = Path(value)
    if not str(value).strip() or forbidden_character(str(value)):
        raise click.BadParameter("is empty or holds a control character")
    ancestor = path.absolute()
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if ancestor != path.absolute() and not ancestor.is_dir():
        raise click.BadParameter(f"cannot be created: {printable(str(ancestor))} is not a folder")
    if not os.access(ancestor if ancestor.is_dir() else ancestor.parent, os.W_OK | os.X_OK):
        raise click.BadParameter(f"cannot be created: {printable(str(ancestor))} is not writable")
    return value


def complete_profiles(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """Shell completion of -p: the profile names in configs/, or files once a path is typed."""
    from click.shell_completion import CompletionItem

    if "/" in incomplete or incomplete.startswith("."):
        return [CompletionItem(incomplete, type="file")]
    from rpibuild.config import available_profiles

    return [CompletionItem(name) for name in available_profiles() if name.startswith(incomplete)]


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
        callback=profile_name_callback,
        shell_complete=complete_profiles,
        metavar="NAME|PATH",
        help="Profile name from configs/ or a path to a YAML file [default: pi3b-arm64].",
    )(func)
    return func


def json_option(func: F) -> F:
    from rpibuild.cli.failure import want_json

    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        callback=want_json,
        help="Print machine-readable JSON on stdout (on failure: an error object).",
    )(func)


def emit_json(data: object) -> None:
    """Machine output on stdout, URL credentials masked as everywhere else."""
    import json

    from rpibuild.redact import mask_data

    click.echo(json.dumps(mask_data(data), indent=2, sort_keys=False))


def push_options(prefix: str = "") -> Callable[[F], F]:
    """--sbom/--no-sbom and --retries, for every command that pushes (``prefix`` says when they
    apply, e.g. "With --push: ")."""

    def said(text: str) -> str:
        return prefix + text if prefix else text[0].upper() + text[1:]

    def decorate(func: F) -> F:
        func = click.option(
            "--retries",
            type=click.IntRange(0, 10),
            default=3,
            show_default=True,
            help=said("retries of transient registry failures (backoff 2, 4, 8... s)."),
        )(func)
        return click.option(
            "--sbom/--no-sbom",
            default=True,
            show_default=True,
            help=said("attach each pushed image's SBOM (CycloneDX) as an OCI artifact referring to it."),
        )(func)

    return decorate


def profiles_option(help_text: str) -> Callable[[F], F]:
    """A repeatable -p/--profile (commands that take several profiles: build, push)."""
    return click.option(
        "-p",
        "--profile",
        "profiles",
        multiple=True,
        envvar="RPIBUILD_PROFILE",
        show_envvar=True,
        callback=profile_name_callback,
        shell_complete=complete_profiles,
        metavar="NAME|PATH",
        help=help_text,
    )
