"""The ``rpibuild`` command line: a thin shell over the core modules, one module per command.

Only ``main`` catches rpibuild errors: it prints what failed and how to fix it, and exits
with the error's own code. Heavy imports (docker) happen inside commands so --help is instant.
"""

from __future__ import annotations

import os
import signal
import sys

import click

from rpibuild import __version__, console
from rpibuild.cli import artifacts as artifacts_cmd
from rpibuild.cli import base as base_cmd
from rpibuild.cli import build as build_cmd
from rpibuild.cli import config as config_cmd
from rpibuild.cli import doctor as doctor_cmd
from rpibuild.cli import failure
from rpibuild.cli import image as image_cmd
from rpibuild.cli import login as login_cmd
from rpibuild.cli import plan as plan_cmd
from rpibuild.cli import push as push_cmd
from rpibuild.cli import qemu as qemu_cmd
from rpibuild.cli import render as render_cmd
from rpibuild.cli import rootfs as rootfs_cmd
from rpibuild.cli import sources as sources_cmd
from rpibuild.errors import BuildError, ExitCode, HostSetupError, InternalError, RpibuildError
from rpibuild.redact import printable, remember_credentials


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="rpibuild")
@click.option("-v", "--verbose", count=True, help="More output (repeatable).")
@click.option("-q", "--quiet", count=True, help="Less output (repeatable).")
def cli(verbose: int, quiet: int) -> None:
    """Build GPU-accelerated PyTorch images for the Raspberry Pi on an x86 host.

    BuildKit builds each image: C++ is cross-compiled natively on this host, and QEMU
    runs only the steps that must execute Pi code (installing, verify). Profiles
    (configs/*.yaml) describe a target; start with `rpibuild doctor`, see what a build will
    do with `rpibuild plan`, then `rpibuild build`. Every -p/--profile option also reads RPIBUILD_PROFILE.
    """
    console.set_verbosity(verbose - quiet)
    failure.reset()


cli.add_command(doctor_cmd.doctor)
cli.add_command(qemu_cmd.qemu)
cli.add_command(config_cmd.config)
cli.add_command(plan_cmd.plan)
cli.add_command(render_cmd.render)
cli.add_command(base_cmd.base)
cli.add_command(build_cmd.build)
cli.add_command(login_cmd.login)
cli.add_command(push_cmd.push)
cli.add_command(image_cmd.image)
cli.add_command(rootfs_cmd.rootfs)
cli.add_command(artifacts_cmd.artifacts)
cli.add_command(sources_cmd.sources)


def _louder(ctx: click.Context, param: click.Parameter, value: int) -> None:
    console.set_verbosity(console.verbosity() + value)


def _quieter(ctx: click.Context, param: click.Parameter, value: int) -> None:
    console.set_verbosity(console.verbosity() - value)


def _accept_verbosity_everywhere(group: click.Group) -> None:
    """``rpibuild build -v`` as well as ``rpibuild -v build``: as other tools take it. Counts
    add up (``-v build -v`` is -vv); a command's own callback runs after the group's."""
    for command in group.commands.values():
        if isinstance(command, click.Group):
            _accept_verbosity_everywhere(command)
            continue
        names = {opt for param in command.params for opt in getattr(param, "opts", ())}
        if "-v" in names or "-q" in names:
            continue
        command.params += [
            click.Option(
                ["-v", "--verbose"], count=True, expose_value=False, callback=_louder, help="More output."
            ),
            click.Option(
                ["-q", "--quiet"], count=True, expose_value=False, callback=_quieter, help="Less output."
            ),
        ]


# After every cli.add_command above: commands added later would not take -v/-q.
_accept_verbosity_everywhere(cli)


def _stop_like_ctrl_c(signum: int, frame: object) -> None:
    """SIGTERM (a CI job cancelled, `kill`) and SIGHUP wind down like Ctrl-C: the build is
    cancelled in BuildKit and nothing is left running or tagged."""
    raise KeyboardInterrupt


def main() -> None:
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _stop_like_ctrl_c)
    # A shell starts background jobs with SIGINT ignored; rpibuild still wants Ctrl-C's meaning.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    # A URL with credentials in any RPIBUILD_* setting: its password masked in every message,
    # whichever library quotes it (profile URLs are remembered when the profile is loaded).
    for name, value in os.environ.items():
        if name.startswith("RPIBUILD_") and "://" in value:
            remember_credentials(value)
    failure.reset()
    try:
        cli.main(prog_name="rpibuild", standalone_mode=False)
    except click.exceptions.Abort:
        console.err.print("[red]interrupted[/red]")
        sys.exit(ExitCode.INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        failure.report_usage(exc.format_message(), exc.exit_code)
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except RpibuildError as exc:
        report(exc)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        console.err.print("[red]interrupted[/red]: cleaned up, nothing was tagged")
        sys.exit(ExitCode.INTERRUPTED)
    except OSError as exc:
        # A file problem no command foresaw is still a sentence for the user, not a traceback.
        where = f": {exc.filename}" if exc.filename else ""
        report(HostSetupError(f"{exc.strerror or exc}{where}"))
        sys.exit(HostSetupError.exit_code)
    except Exception as exc:
        if os.environ.get("RPIBUILD_DEBUG"):
            raise
        report(
            InternalError(
                f"internal error: {type(exc).__name__}: {exc}",
                hint="this is a bug in rpibuild; RPIBUILD_DEBUG=1 shows the traceback for a report",
            )
        )
        sys.exit(InternalError.exit_code)


def report(exc: RpibuildError) -> None:
    """Print an rpibuild error for a person: the log tail first, then what failed and the fix.

    With --json, also a JSON error object on stdout; under GitHub Actions, an error annotation.
    """
    _report_text(exc)
    failure.report_machine(exc)


def _report_text(exc: RpibuildError) -> None:
    if isinstance(exc, BuildError) and exc.log_tail:
        console.err.rule(console.escape(f"last {len(exc.log_tail)} lines of {exc.stage or 'the build'}"))
        for line in exc.log_tail:
            console.err.print(printable(line), markup=False, highlight=False)
        console.err.rule()
    # Messages quote user input (paths, values): escaped, so none of it is read as markup.
    console.err.print(f"[red]error:[/red] {_lines(exc.message)}", markup=True, highlight=False)
    if isinstance(exc, BuildError) and exc.log_file:
        console.err.print(f"full log: {console.escape(exc.log_file)}")
    if exc.hint:
        console.err.print(f"[yellow]hint:[/yellow] {_lines(exc.hint)}")


def _lines(text: str) -> str:
    """Escape each line of a message (multi-line messages keep their line breaks)."""
    return "\n".join(console.escape(line) for line in text.split("\n"))
