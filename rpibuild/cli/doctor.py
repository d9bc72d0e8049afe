"""``rpibuild doctor``."""

from __future__ import annotations

import sys

import click

from rpibuild.cli.options import emit_json, json_option, profile_options
from rpibuild.errors import ExitCode


@click.command()
@profile_options
@json_option
@click.option(
    "--builder",
    envvar="RPIBUILD_BUILDER",
    show_envvar=True,
    metavar="NAME",
    help="Check this buildx builder, as `build --builder` would use it [default: build.builder, "
    "else the current one].",
)
def doctor(profile: str | None, overrides: tuple[str, ...], as_json: bool, builder: str | None) -> None:
    """Check this host for a build of PROFILE: engine, builder, binfmt/QEMU, debootstrap, disk.

    Checks what `rpibuild build` will use: the same builder (--builder, RPIBUILD_BUILDER,
    build.builder), free space on the engine's data root, a torch compile running now.
    Each check prints OK, FAIL (with the command that fixes it) or SKIP (it could not run)
    on stdout. Exits 1 if any fails. Without -p, checks every ARM handler.
    """
    from rpibuild.config import load_profile
    from rpibuild.host.doctor import run_checks

    loaded = load_profile(profile, overrides) if (profile or overrides) else None
    checks = run_checks(loaded.profile if loaded else None, builder=builder)
    if as_json:
        emit_json([c.as_dict() for c in checks])
    else:
        from rpibuild.redact import printable

        for check in checks:
            mark = "SKIP" if check.skipped else "OK  " if check.ok else "FAIL"
            click.echo(f"{mark} {check.name:<20} {printable(check.detail)}")
            if not check.ok and check.fix:
                click.echo(f"     fix: {printable(check.fix)}")
    if not all(c.ok for c in checks):
        sys.exit(ExitCode.CHECK_FAILED)
