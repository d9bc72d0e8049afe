"""Human output on stderr (progress, steps with durations); machine output stays on stdout.

Messages are rich markup written by rpibuild; anything a user or a tool wrote (a path, a
profile value, a build log line) goes in through ``escape``, so ``[/red]`` in a file name
is text, not markup. URL credentials are masked in everything printed here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape as _escape_markup

from rpibuild.redact import mask_urls, printable

err = Console(stderr=True, highlight=False, soft_wrap=True)
_verbosity = 0


def set_verbosity(level: int) -> None:
    """-v raises it, -q lowers it: below 0 only warnings and errors are shown."""
    global _verbosity
    _verbosity = level


def verbosity() -> int:
    return _verbosity


def escape(text: object) -> str:
    """User-provided text for a markup message: markup escaped, one line, credentials masked."""
    return _escape_markup(printable(str(text)))


def info(message: str) -> None:
    if _verbosity >= 0:
        err.print(mask_urls(message))


def detail(message: str) -> None:
    if _verbosity >= 1:
        err.print(f"[dim]{mask_urls(message)}[/dim]")


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/yellow] {mask_urls(message)}")


@contextmanager
def step(title: str) -> Iterator[None]:
    """Log a unit of work with its begin, end and duration (as pi-gen does)."""
    started = time.monotonic()
    info(f"[bold]==>[/bold] {title}")
    try:
        yield
    except BaseException:
        info(f"[red]<== {title}: failed after {time.monotonic() - started:.1f}s[/red]")
        raise
    info(f"[green]<==[/green] {title} [dim]({time.monotonic() - started:.1f}s)[/dim]")


def is_live() -> bool:
    """Whether status() draws a live line (stderr is a terminal and -q is not given)."""
    return err.is_terminal and _verbosity >= 0


@contextmanager
def status(title: str) -> Iterator[Callable[[str], None]]:
    """A live one-line status (spinner, elapsed time, latest message) for long work.

    Yields a function to report the latest message; with -q or a non-terminal stderr the
    messages are printed as plain lines only with -v, so logs stay readable in CI.
    """
    started = time.monotonic()
    if not is_live():
        yield lambda message: detail(f"{title}: {message}")
        return
    with err.status(title) as live:

        def update(message: str) -> None:
            live.update(f"{title} [dim]({time.monotonic() - started:.0f}s)[/dim] {mask_urls(message)}")

        yield update
