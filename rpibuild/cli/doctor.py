"""``rpibuild doctor``."""

from __future__ import annotations

import sys

import click

from rpibuild.cli.options import emit_json, json_option, profile_options
from rpibuild.errors import ExitCode


@click.command()
@profile_options
@json_option
def doctor(profile: str | None, overrides: tuple[str, ...], as_json: bool) -> None:
    """Check this host for a build of PROFILE: engine, binfmt/QEMU, debootstrap, disk.

    Each check prints OK or FAIL with the command that fixes it. Exits 1 if any fails.
    Without -p, checks every ARM handler.
    """
    from rpibuild import console
    from rpibuild.config import load_profile
    from rpibuild.host.doctor import run_checks

    loaded = load_profile(profile, overrides) if (profile or overrides) else None
    checks = run_checks(loaded.profile if loaded else None)
    if as_json:
        emit_json([c.as_dict() for c in checks])
    else:
        for check in checks:
            mark = "[green]OK  [/green]" if check.ok else "[red]FAIL[/red]"
            console.err.print(f"{mark} {check.name:<20} {check.detail}", highlight=False, soft_wrap=True)
            if not check.ok and check.fix:
                console.err.print(f"     fix: [bold]{check.fix}[/bold]", highlight=False, soft_wrap=True)
    if not all(c.ok for c in checks):
        sys.exit(ExitCode.CHECK_FAILED)
