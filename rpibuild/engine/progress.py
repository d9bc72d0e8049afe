"""BuildKit's structured progress (``docker buildx build --progress=rawjson``) folded into stages.

The stream is a sequence of JSON ``SolveStatus`` objects: ``vertexes`` (one per build step,
updated as it starts, finishes, is found cached or fails), ``statuses`` (transfer counters)
and ``logs`` (the output of a step, base64). The Dockerfile frontend names every step
``[STAGE N/M] INSTRUCTION``; that name is the only link from a step to its stage, so it is
read here, and only here. Pure code: no engine, tested on recorded streams.
"""

from __future__ import annotations

import base64
import json
import re
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

_STEP_NAME = re.compile(r"^\[(?P<stage>[^\s\]]+) (?P<step>\d+)/(?P<total>\d+)\] (?P<instruction>.*)$", re.S)
TAIL_LINES = 40
# A long compile's own progress line: rpibuild's scripts set ninja's documented NINJA_STATUS
# to this prefix ("[rpibuild-ninja DONE/TOTAL] ").
# How BuildKit reports a step it stopped (the client went away, or another step failed).
_CANCELLED = "context canceled"
_COMPILE_STATUS = re.compile(r"^\[rpibuild-ninja (?P<done>\d+)/(?P<total>\d+)\] ")


# The torch compile's line that says where it runs and with how many jobs (the reporter shows
# it always, and keeps it for the compile's status line).
PLACE_PREFIX = "compile: runs on "


def compile_status(line: str) -> tuple[int, int] | None:
    """(steps done, steps in all) if ``line`` is a compile's progress line, else None."""
    match = _COMPILE_STATUS.match(line)
    return (int(match["done"]), int(match["total"])) if match else None


@dataclass
class StageTiming:
    """One Dockerfile stage: the seconds its steps ran, and how many came from the cache."""

    name: str
    seconds: float = 0.0
    steps: int = 0
    cached_steps: int = 0

    @property
    def cached(self) -> bool:
        """Every step came from the cache (a stage with nothing to do counts as cached)."""
        return self.steps == self.cached_steps


@dataclass(frozen=True)
class BuildEvent:
    """One piece of build progress, already attributed to its stage."""

    stage: str
    step: int
    total: int
    line: str
    is_step: bool
    # (steps done, steps in all) when the line is a compile's progress line
    compiled: tuple[int, int] | None = None
    # Set on the one event that says a stage is over: every step of it ran or was cached.
    finished: StageTiming | None = None


class CompileMeter:
    """Elapsed time and an estimate of what is left, from a compile's done/total counts.

    The rate is measured from the first count seen in this run, so a resumed build (most
    steps already done) does not look fast because of work an earlier run did.
    """

    def __init__(self) -> None:
        self._first: tuple[float, int] | None = None

    def update(self, now: float, done: int, total: int) -> tuple[float, float | None]:
        """(seconds elapsed, seconds left or None while the rate is unknown)."""
        if self._first is None or done < self._first[1]:
            self._first = (now, done)
        started, done_then = self._first
        elapsed = now - started
        if done <= done_then or elapsed <= 0:
            return elapsed, None
        rate = (done - done_then) / elapsed
        return elapsed, (total - done) / rate


@dataclass
class _Vertex:
    name: str
    stage: str | None = None
    step: int = 0
    total: int = 0
    instruction: str = ""
    started: datetime | None = None
    completed: datetime | None = None
    cached: bool = False
    error: str | None = None
    announced: bool = False
    lines: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))


@dataclass(frozen=True)
class Failure:
    stage: str
    step: str
    error: str
    tail: list[str]


class BuildProgress:
    """Accumulates a build's SolveStatus objects; calls back as steps start and print."""

    def __init__(
        self,
        on_event: Callable[[BuildEvent], None] | None = None,
        log: Callable[[str], object] | None = None,
        stages: tuple[str, ...] = (),
    ) -> None:
        """``stages``: the Dockerfile's stage names in order, so a stage with no step (or
        one whose only step is its FROM) is reported too; others are added as they appear."""
        self._on_event = on_event
        self._log = log
        self._vertices: dict[str, _Vertex] = {}
        self._order: list[str] = list(stages)
        self._finished: set[str] = set()
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)

    def feed(self, status: dict[str, Any]) -> None:
        for raw in status.get("vertexes") or ():
            self._vertex(raw)
        for entry in status.get("logs") or ():
            self._logs(entry)
        self._announce_finished()

    def _announce_finished(self) -> None:
        """A stage is over when each of its steps completed or came from the cache, none failed.

        BuildKit lists every step of the solve (not started yet) before it runs the first, so
        a stage's steps are all known by the time one of them finishes."""
        if self._on_event is None:
            return
        for timing in self.stages():
            steps = [v for v in self._vertices.values() if v.stage == timing.name]
            if (
                timing.name in self._finished
                or not steps
                or any(v.error or not (v.completed or v.cached) for v in steps)
            ):
                continue
            self._finished.add(timing.name)
            self._on_event(BuildEvent(timing.name, 0, 0, "", False, finished=timing))

    def _vertex(self, raw: dict[str, Any]) -> None:
        digest = str(raw.get("digest", ""))
        vertex = self._vertices.get(digest)
        if vertex is None:
            vertex = _Vertex(name=str(raw.get("name", "")))
            match = _STEP_NAME.match(vertex.name)
            # A FROM step is shared by every build that uses the same image, and keeps the
            # name the first of them gave it: it says nothing about this build's stages.
            if match and not match["instruction"].startswith("FROM "):
                vertex.stage = match["stage"]
                vertex.step, vertex.total = int(match["step"]), int(match["total"])
                vertex.instruction = match["instruction"]
                if vertex.stage not in self._order:
                    self._order.append(vertex.stage)
            self._vertices[digest] = vertex
        vertex.started = _time(raw.get("started")) or vertex.started
        vertex.completed = _time(raw.get("completed")) or vertex.completed
        vertex.cached = bool(raw.get("cached")) or vertex.cached
        if raw.get("error"):
            vertex.error = str(raw["error"])
            self._emit_line(vertex, f"ERROR: {vertex.error}")
        if vertex.stage and not vertex.announced and (vertex.started or vertex.cached):
            vertex.announced = True
            line = f"{vertex.instruction}{' (cached)' if vertex.cached else ''}"
            self._write(f"#{vertex.stage} {vertex.step}/{vertex.total} {line}")
            if self._on_event:
                self._on_event(BuildEvent(vertex.stage, vertex.step, vertex.total, line, True))

    def _logs(self, entry: dict[str, Any]) -> None:
        vertex = self._vertices.get(str(entry.get("vertex", "")))
        try:
            text = base64.b64decode(entry.get("data") or b"").decode("utf-8", "replace")
        except ValueError:
            return
        for line in text.splitlines():
            if line.strip():
                self._emit_line(vertex, line)

    def _emit_line(self, vertex: _Vertex | None, line: str) -> None:
        self.tail.append(line)
        if vertex is not None:
            vertex.lines.append(line)
        self._write(line)
        if self._on_event and vertex is not None and vertex.stage:
            compiled = compile_status(line)
            self._on_event(BuildEvent(vertex.stage, vertex.step, vertex.total, line, False, compiled))

    def _write(self, line: str) -> None:
        if self._log:
            self._log(line)

    def note(self, line: str) -> None:
        """Text outside the JSON stream (buildx's own closing error): kept for the tail."""
        if line.strip():
            self.tail.append(line)
            self._write(line)

    # ------------------------------------------------------------------ results

    def stages(self) -> list[StageTiming]:
        timings = []
        for name in self._order:
            steps = [v for v in self._vertices.values() if v.stage == name]
            # The time its own steps ran: stages run side by side under BuildKit, so a span
            # from first start to last end would also count waiting for another stage.
            seconds = sum(
                (v.completed - v.started).total_seconds() for v in steps if v.started and v.completed
            )
            timings.append(
                StageTiming(name, max(seconds, 0.0), len(steps), sum(1 for v in steps if v.cached))
            )
        return timings

    def failure(self) -> Failure | None:
        """The step that failed: its stage, its instruction, the error and its own output.

        When a step fails, BuildKit cancels the steps running beside it: those report
        "context canceled" too, and are never the failure while a real error is there."""
        errored = [v for v in self._vertices.values() if v.error]
        if not errored:
            return None
        vertex = min(errored, key=lambda v: (_CANCELLED in (v.error or ""), v.stage is None))
        if vertex.stage:
            return Failure(vertex.stage, vertex.instruction, vertex.error or "", list(vertex.lines))
        return Failure("(build)", vertex.name, vertex.error or "", list(vertex.lines))

    def cancelled(self) -> bool:
        """The build stopped because its client went away (Ctrl-C), not because a step failed."""
        errored = [v.error for v in self._vertices.values() if v.error]
        return bool(errored) and all(_CANCELLED in error for error in errored)

    def current_stage(self) -> str:
        running = [v for v in self._vertices.values() if v.stage and v.started and not v.completed]
        if running:
            return running[-1].stage or "(start)"
        return self._order[-1] if self._order else "(start)"


def decode_stream(chunks: Iterator[str], on_text: Callable[[str], None]) -> Iterator[dict[str, Any]]:
    """Split buildx's rawjson output (pretty-printed JSON objects back to back) into objects.

    Anything between objects that is not JSON (buildx prints its final error as text) goes
    to ``on_text`` line by line.
    """
    decoder = json.JSONDecoder()
    buffer = ""
    for chunk in chunks:
        buffer += chunk
        while True:
            stripped = buffer.lstrip()
            if not stripped:
                buffer = ""
                break
            if stripped[0] != "{":
                line, sep, rest = stripped.partition("\n")
                if not sep:
                    buffer = stripped
                    break
                on_text(line)
                buffer = rest
                continue
            try:
                obj, end = decoder.raw_decode(stripped)
            except json.JSONDecodeError:
                buffer = stripped
                break  # an object cut by the chunk boundary: wait for more
            buffer = stripped[end:]
            if isinstance(obj, dict):
                yield obj
    for line in buffer.splitlines():
        on_text(line)


def _time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    # Go's RFC 3339 with nanoseconds: keep microseconds for fromisoformat.
    match = re.match(r"^(.*T\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", value)
    if not match:
        return None
    fraction = (match[2] or ".0")[:7]
    zone = "+00:00" if match[3] == "Z" else match[3]
    try:
        return datetime.fromisoformat(f"{match[1]}{fraction}{zone}")
    except ValueError:
        return None
