"""BuildKit progress parsing on recorded ``docker buildx build --progress=rawjson`` streams.

The streams in data/buildkit/ were recorded from Dockerfile.recorded there (three stages
``first``, ``second``, ``third`` on an arm64 base) on this project's hosts: a fresh build, a
rebuild from cache, a step that fails (``FAIL=1``) and a build cancelled with Ctrl-C mid-step.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rpibuild.engine.progress import BuildEvent, BuildProgress, decode_stream

DATA = Path(__file__).parent / "data" / "buildkit"
STAGES = ("first", "second", "third")


def replay(name: str, chunk: int = 0) -> tuple[BuildProgress, list[BuildEvent], list[str]]:
    """Feed a recording through the decoder (in ``chunk``-sized pieces, or by line)."""
    text = (DATA / f"{name}.rawjson").read_text(encoding="utf-8")
    pieces = [text[i : i + chunk] for i in range(0, len(text), chunk)] if chunk else text.splitlines(True)
    events: list[BuildEvent] = []
    notes: list[str] = []
    progress = BuildProgress(on_event=events.append, stages=STAGES)
    for status in decode_stream(iter(pieces), notes.append):
        progress.feed(status)
    return progress, events, notes


def test_fresh_build_reports_every_stage_as_run_with_its_output() -> None:
    progress, events, notes = replay("fresh")
    stages = progress.stages()
    assert [s.name for s in stages] == list(STAGES)
    assert all(s.steps == 1 and not s.cached for s in stages)
    assert all(0 < s.seconds < 60 for s in stages)
    steps = [e for e in events if e.is_step]
    assert [(e.stage, e.step, e.total) for e in steps] == [("first", 2, 2), ("second", 1, 1), ("third", 1, 1)]
    assert steps[0].line.startswith("RUN echo building the first stage")
    output = [(e.stage, e.line) for e in events if not e.is_step]
    assert ("first", "building the first stage") in output and ("first", "second line") in output
    assert ("third", "done") in output
    assert progress.failure() is None
    assert notes == []


def test_the_shared_from_step_of_another_build_is_not_a_stage() -> None:
    # The recorded FROM vertex carries the name another build gave it ("[system 1/4] FROM").
    progress, events, _ = replay("fresh")
    assert "system" not in {s.name for s in progress.stages()}
    assert all(e.stage in STAGES for e in events)


@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_objects_cut_anywhere_decode_the_same(chunk: int) -> None:
    whole, whole_events, _ = replay("failed")
    cut, cut_events, _ = replay("failed", chunk=chunk)
    assert [(s.name, s.steps, s.cached_steps) for s in cut.stages()] == [
        (s.name, s.steps, s.cached_steps) for s in whole.stages()
    ]
    assert cut_events == whole_events


def test_failed_step_names_its_stage_error_and_own_output() -> None:
    progress, _, notes = replay("failed")
    failure = progress.failure()
    assert failure is not None
    assert failure.stage == "second"
    assert failure.step.startswith("RUN echo about to decide")
    assert "exit code: 3" in failure.error
    assert "it went wrong" in failure.tail  # the step's own stderr
    assert "building the first stage" not in failure.tail  # not another step's output
    # buildx's closing text line is kept for the tail, not lost and not parsed.
    assert any(line.startswith("ERROR: failed to solve") for line in notes)


def test_cancelled_build_reports_the_interrupted_step() -> None:
    progress, _, notes = replay("cancelled")
    failure = progress.failure()
    assert failure is not None and failure.stage == "third"
    assert "context canceled" in failure.error
    assert progress.cancelled()
    assert any("Canceled" in line for line in notes)


def test_a_stage_with_nothing_to_run_counts_as_cached() -> None:
    progress = BuildProgress(stages=("system", "qpulib"))
    stages = progress.stages()
    assert [(s.name, s.steps, s.cached) for s in stages] == [("system", 0, True), ("qpulib", 0, True)]


def test_cached_steps_make_a_cached_stage() -> None:
    progress = BuildProgress(stages=("system",))
    for cached in (True, False):
        progress.feed(
            {
                "vertexes": [
                    {
                        "digest": f"sha256:{cached}",
                        "name": f"[system {1 + cached}/3] RUN step-{cached}",
                        "started": "2026-12-01T10:00:00.000000001Z",
                        "completed": "2026-12-01T10:00:02.5Z",
                        "cached": cached,
                    }
                ]
            }
        )
    (stage,) = progress.stages()
    assert (stage.steps, stage.cached_steps, stage.cached) == (2, 1, False)
    assert stage.seconds == pytest.approx(5.0)  # two steps of 2.5 s each


def test_garbage_between_objects_goes_to_the_text_callback() -> None:
    notes: list[str] = []
    chunks = iter(['{"vertexes": []}\nnot json at all\n', '{"logs": []}', "\ntrailing words"])
    assert list(decode_stream(chunks, notes.append)) == [{"vertexes": []}, {"logs": []}]
    assert notes == ["not json at all", "trailing words"]


def test_rebuild_from_cache_marks_every_stage_cached() -> None:
    progress, events, _ = replay("cached")
    stages = progress.stages()
    assert [(s.name, s.steps, s.cached) for s in stages] == [(name, 1, True) for name in STAGES]
    steps = [e for e in events if e.is_step]
    assert steps and all(e.line.endswith("(cached)") for e in steps)
    assert not [e for e in events if not e.is_step and not e.finished]  # nothing ran, nothing printed
    assert [(e.stage, e.finished.cached) for e in events if e.finished] == [(n, True) for n in STAGES]


def test_each_stage_is_reported_finished_once_when_its_last_step_ends() -> None:
    _, events, _ = replay("fresh")
    order = [(e.stage, "end" if e.finished else "step") for e in events if e.is_step or e.finished]
    assert order == [(name, kind) for name in STAGES for kind in ("step", "end")]
    ended = [e.finished for e in events if e.finished]
    assert all(t is not None and t.seconds > 0 and not t.cached for t in ended)


def test_a_failed_stage_is_never_reported_finished() -> None:
    progress, events, _ = replay("failed")
    failure = progress.failure()
    assert failure is not None
    assert failure.stage not in [e.stage for e in events if e.finished]


def test_a_step_cancelled_because_another_failed_is_not_the_failure() -> None:
    """BuildKit cancels the steps running beside a failed one; the failed one is what to report."""
    progress = BuildProgress(stages=("runtime", "extension-build"))
    progress.feed(
        {
            "vertexes": [
                {
                    "digest": "sha256:1",
                    "name": "[runtime 3/7] RUN apt-get update",
                    "started": "2026-12-02T10:00:00Z",
                    "completed": "2026-12-02T10:00:09Z",
                    "error": "context canceled",
                },
                {
                    "digest": "sha256:2",
                    "name": "[extension-build 5/6] RUN pip wheel",
                    "started": "2026-12-02T10:00:00Z",
                    "completed": "2026-12-02T10:00:08Z",
                    "error": "process did not complete successfully: exit code: 1",
                },
            ]
        }
    )
    failure = progress.failure()
    assert failure is not None and failure.stage == "extension-build" and "exit code: 1" in failure.error
    assert not progress.cancelled()
