"""How a long command (build, base) shows its progress: live, plain lines, quiet or JSON lines.

A CI log has no terminal: there every stage gets a line when it starts and one when it ends
(seconds, cached), the log file is named when it is opened, a lock wait is said at once, and
a step that prints nothing for a minute gets a heartbeat line, so no log is silent for long.
Under GitHub Actions (``GITHUB_ACTIONS=true``) each stage is a collapsible log group.
``--progress rawjson`` writes the same events as one JSON object a line, for tools.
All of it goes to stderr; results stay on stdout.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from rpibuild import console
from rpibuild.engine.progress import PLACE_PREFIX, BuildEvent, CompileMeter
from rpibuild.redact import mask_data, mask_urls

MODES = ("auto", "plain", "quiet", "rawjson")
# A step that printed nothing for this long gets a heartbeat line (never more often).
HEARTBEAT_EVERY = 60.0
# Without a live status line, a compile's progress is printed at most this often.
PLAIN_PROGRESS_EVERY = 60.0
# Lines rpibuild itself writes when it has to wait for another rpibuild (a host lock).
WAITING = "waiting: "
# BuildKit mount flags (caches, secrets) are noise in a one-line progress view.
MOUNT_FLAG = re.compile(r"--mount=\S+\s+")


def progress_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--progress",
        type=click.Choice(MODES),
        default="auto",
        envvar="RPIBUILD_PROGRESS",
        show_envvar=True,
        help="auto: a live line on a terminal, else plain lines; plain; quiet: errors only; "
        "rawjson: one JSON event a line (all on stderr).",
    )(func)


def in_github_actions() -> bool:
    return os.environ.get("GITHUB_ACTIONS") == "true"


class Reporter:
    """Receives a build's events and prints them as the mode says; see the module docstring."""

    def __init__(self, mode: str, title: str, update: Callable[[str], None] | None = None) -> None:
        if mode == "auto":
            mode = "live" if console.is_live() and update is not None else "plain"
        if console.verbosity() < 0:
            mode = "quiet" if mode != "rawjson" else mode
        self.mode = mode
        self.title = title
        self._update = update or (lambda _message: None)
        self._meter = CompileMeter()
        self._compile_reported: float | None = None
        self._compile_place = ""  # where the compile runs, from its first line
        self._started: dict[str, float] = {}
        self._group: str | None = None
        self._lock = threading.Lock()
        self._last_output = time.monotonic()
        self._activity = "starting"
        self._activity_since = time.monotonic()
        self._stop = threading.Event()
        self._groups = in_github_actions() and mode == "plain"

    # ------------------------------------------------------------------ output

    def _say(self, message: str) -> None:
        """A plain line at default verbosity (masked; markup allowed)."""
        with self._lock:
            self._last_output = time.monotonic()
        if self.mode in ("plain", "live"):
            console.info(message)

    def _json(self, event: str, **fields: Any) -> None:
        if self.mode == "rawjson":
            record = {"event": event, "time": round(time.time(), 3), **fields}
            console.err.file.write(json.dumps(mask_data(record)) + "\n")
            console.err.file.flush()

    def _raw(self, line: str) -> None:
        """A workflow command for GitHub Actions: printed as is, never styled or wrapped."""
        console.err.file.write(mask_urls(line) + "\n")
        console.err.file.flush()

    def _activity_is(self, text: str) -> None:
        with self._lock:
            if text != self._activity:
                self._activity, self._activity_since = text, time.monotonic()

    # ------------------------------------------------------------------ events

    def log_file(self, path: str) -> None:
        """A log file was opened: named at once, so a CI user can follow it while it runs."""
        self._json("log", path=path)
        self._say(f"log: {console.escape(path)}")

    def line(self, text: str, where: str = "base") -> None:
        """A line from non-BuildKit work (bootstrap): lock waits shown always, the rest with -v."""
        self._activity_is(f"[{where}] {text}")
        self._json("line", stage=where, line=text)
        if text.startswith(WAITING):
            self._say(console.escape(text))
        else:
            self._update(console.escape(f"[{where}] {text}"))
            if self.mode in ("plain", "live"):
                console.detail(console.escape(text))

    def stage_started(self, name: str) -> None:
        self._started[name] = time.monotonic()
        self._json("stage-start", stage=name)
        if self._groups:
            self._end_group()
            self._raw(f"::group::{name}")
            self._group = name
        if self.mode == "plain":
            self._say(f"[bold]==>[/bold] {name}")

    def stage_finished(self, name: str, seconds: float, cached: bool) -> None:
        self._json("stage-end", stage=name, seconds=round(seconds, 1), cached=cached)
        if self.mode == "plain":
            self._say(f"[green]<==[/green] {name} {seconds:.1f}s" + (" (cached)" if cached else ""))
        if self._groups and self._group == name:
            self._end_group()

    def _end_group(self) -> None:
        if self._group is not None:
            self._raw("::endgroup::")
            self._group = None

    def event(self, event: BuildEvent) -> None:
        if event.finished is not None:
            self.stage_finished(event.stage, event.finished.seconds, event.finished.cached)
            return
        if event.stage not in self._started and (event.is_step or event.compiled or event.line):
            self.stage_started(event.stage)
        if event.compiled:
            self._compiled(event)
        elif event.is_step:
            shown = MOUNT_FLAG.sub("", event.line)
            self._activity_is(f"[{event.stage}] step {event.step}/{event.total}: {shown[:80]}")
            self._json("step", stage=event.stage, step=event.step, total=event.total, line=shown)
            self._update(console.escape(f"[{event.stage}] step {event.step}/{event.total}: {shown}"))
            line = console.escape(shown[:110])
            self._say(f"[cyan]{event.stage:>9}[/cyan] {event.step:>2}/{event.total} {line}")
        elif event.line.startswith(WAITING):
            self._json("wait", stage=event.stage, line=event.line)
            self._say(console.escape(event.line))
        elif event.line.startswith(PLACE_PREFIX):
            # Where the compile runs and with how many jobs: shown always, and in its status.
            self._compile_place = event.line.removeprefix(PLACE_PREFIX)
            self._json("place", stage=event.stage, line=event.line)
            self._say(console.escape(event.line))
        else:
            self._json("line", stage=event.stage, line=event.line)
            if self.mode in ("plain", "live"):
                console.detail(console.escape(event.line))

    def _compiled(self, event: BuildEvent) -> None:
        assert event.compiled is not None
        done, total = event.compiled
        elapsed, left = self._meter.update(time.monotonic(), done, total)
        eta = f", about {minutes(left)} left" if left is not None else ""
        where = f" on {self._compile_place}" if self._compile_place else ""
        message = (
            f"[{event.stage}] compiling {done}/{total} ({100 * done // max(total, 1)}%){where}, "
            f"{minutes(elapsed)} elapsed{eta}"
        )
        self._activity_is(f"[{event.stage}] compiling")
        self._update(console.escape(message))
        now = time.monotonic()
        if self._compile_reported is None or now - self._compile_reported >= PLAIN_PROGRESS_EVERY:
            self._compile_reported = now
            self._json("compile", stage=event.stage, done=done, total=total)
            if self.mode == "plain":
                self._say(console.escape(message))
        if self.mode in ("plain", "live"):
            console.detail(console.escape(event.line))

    def failed(self, stage: str | None) -> None:
        """Close an open log group, so the error lands outside it."""
        if self._groups:
            self._end_group()
        self._json("failed", stage=stage)

    # ------------------------------------------------------------------ heartbeat

    def heartbeat_due(self, now: float) -> str | None:
        """The heartbeat line if nothing was printed for HEARTBEAT_EVERY seconds, else None."""
        with self._lock:
            if now - self._last_output < HEARTBEAT_EVERY:
                return None
            return f"still running: {self._activity} ({minutes(now - self._activity_since)} so far)"

    @contextmanager
    def running(self) -> Iterator[Reporter]:
        """Beat while the body runs: a step silent for a minute (a bootstrap, a long QEMU
        step) still shows it is alive, at most once a minute."""
        if self.mode not in ("plain", "rawjson"):
            yield self
            return

        def beat() -> None:
            while not self._stop.wait(5.0):
                line = self.heartbeat_due(time.monotonic())
                if line is not None:
                    self._json("heartbeat", activity=self._activity)
                    self._say(console.escape(line))
                    if self.mode == "rawjson":
                        with self._lock:
                            self._last_output = time.monotonic()

        thread = threading.Thread(target=beat, name="rpibuild-heartbeat", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join()
            if self._groups:
                self._end_group()


def minutes(seconds: float) -> str:
    """``42s``, ``7m``, ``2h05m``: compact enough for a status line."""
    if seconds < 60:
        return f"{seconds:.0f}s"
    whole = int(seconds // 60)
    return f"{whole}m" if whole < 60 else f"{whole // 60}h{whole % 60:02d}m"
