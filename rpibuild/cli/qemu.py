"""``rpibuild qemu status|install``."""

from __future__ import annotations

import sys

import click

from rpibuild.cli.options import emit_json, json_option
from rpibuild.errors import ExitCode


@click.group()
def qemu() -> None:
    """QEMU user-mode emulation through binfmt_misc (how x86 hosts run ARM containers)."""


@qemu.command()
@json_option
def status(as_json: bool) -> None:
    """Show the arm and aarch64 binfmt handlers; exit 1 if one is unusable."""
    from rpibuild.host import qemu as binfmt
    from rpibuild.redact import printable

    handlers = [binfmt.status(arch) for arch in binfmt.HANDLERS]
    if as_json:
        emit_json(
            [
                {
                    "name": h.name,
                    "registered": h.registered,
                    "enabled": h.enabled,
                    "flags": h.flags,
                    "interpreter": h.interpreter,
                    "usable": h.usable,
                }
                for h in handlers
            ]
        )
    else:
        # A table of results: stdout, as `config list` (progress and errors go to stderr).
        for h in handlers:
            problem = h.problem()
            mark = "FAIL" if problem else "OK  "
            text = problem or f"flags {h.flags}, {h.interpreter}"
            click.echo(f"{mark} {h.name:<14} {printable(text)}")
    if not all(h.usable for h in handlers):
        sys.exit(ExitCode.CHECK_FAILED)


@qemu.command()
def install() -> None:
    """Register the arm and aarch64 handlers from qemu-user-static (F flag); idempotent.

    Mounts binfmt_misc first if needed. Needs root.
    """
    from rpibuild import console
    from rpibuild.host import qemu as binfmt

    for action in binfmt.install():
        console.info(action)
