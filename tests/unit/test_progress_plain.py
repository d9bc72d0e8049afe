"""Progress where no terminal is: stage lines, log path, lock waits, heartbeats, GitHub
Actions groups and annotations, rawjson events, and --json failures as JSON on stdout."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rpibuild.cli.reporter import HEARTBEAT_EVERY, Reporter
from rpibuild.engine.progress import BuildEvent, BuildProgress, decode_stream

DATA = Path(__file__).parent / "data" / "buildkit"


def _replay(reporter: Reporter, name: str) -> None:
    text = (DATA / f"{name}.rawjson").read_text(encoding="utf-8")
    progress = BuildProgress(on_event=reporter.event, stages=("first", "second", "third"))
    for status in decode_stream(iter(text.splitlines(True)), lambda _line: None):
        progress.feed(status)


def test_plain_mode_says_when_each_stage_starts_and_ends(capsys: pytest.CaptureFixture[str]) -> None:
    reporter = Reporter("plain", "t")
    reporter.log_file("/logs/build-x.log")
    _replay(reporter, "fresh")
    err = capsys.readouterr().err
    assert err.splitlines()[0] == "log: /logs/build-x.log"
    for stage in ("first", "second", "third"):
        start, end = err.index(f"==> {stage}\n"), err.index(f"<== {stage} ")
        assert start < end
    assert "(cached)" not in err
    _replay(Reporter("plain", "t"), "cached")
    assert capsys.readouterr().err.count("s (cached)\n") == 3


def test_lock_waits_show_at_default_verbosity(capsys: pytest.CaptureFixture[str]) -> None:
    reporter = Reporter("plain", "t")
    reporter.line("waiting: another rpibuild is bootstrapping rpibuild/base:x")
    reporter.line("Retrieving Release")  # ordinary bootstrap chatter: -v only
    reporter.event(BuildEvent("torch-build", 1, 1, "waiting: another rpibuild is compiling torch", False))
    err = capsys.readouterr().err
    assert "waiting: another rpibuild is bootstrapping" in err
    assert "waiting: another rpibuild is compiling torch" in err
    assert "Retrieving Release" not in err


def test_a_heartbeat_comes_after_a_silent_minute_and_not_before() -> None:
    reporter = Reporter("plain", "t")
    reporter.line("Retrieving Packages")
    now = reporter._last_output
    assert reporter.heartbeat_due(now + HEARTBEAT_EVERY / 2) is None
    beat = reporter.heartbeat_due(now + HEARTBEAT_EVERY + 1)
    assert beat is not None and "still running: [base] Retrieving Packages" in beat


def test_github_actions_groups_each_stage_and_annotates_failures(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    reporter = Reporter("plain", "t")
    with reporter.running():
        _replay(reporter, "fresh")
    err = capsys.readouterr().err.splitlines()
    groups = [line for line in err if line.startswith("::")]
    assert groups == [
        "::group::first",
        "::endgroup::",
        "::group::second",
        "::endgroup::",
        "::group::third",
        "::endgroup::",
    ]


def test_rawjson_writes_one_event_a_line(capsys: pytest.CaptureFixture[str]) -> None:
    reporter = Reporter("rawjson", "t")
    reporter.log_file("/logs/x.log")
    _replay(reporter, "fresh")
    events = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "log" and kinds.count("stage-start") == 3 and kinds.count("stage-end") == 3
    ends = [e for e in events if e["event"] == "stage-end"]
    assert all(e["cached"] is False and e["seconds"] >= 0 for e in ends)


def test_quiet_prints_no_progress(capsys: pytest.CaptureFixture[str]) -> None:
    reporter = Reporter("quiet", "t")
    reporter.log_file("/logs/x.log")
    _replay(reporter, "fresh")
    reporter.stage_finished("x", 1.0, cached=True)
    assert capsys.readouterr().err == ""


def test_github_groups_close_before_a_failure(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    reporter = Reporter("plain", "t")
    reporter.event(BuildEvent("system", 1, 3, "RUN apt-get update", True))
    reporter.failed("system")
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("::")]
    assert lines == ["::group::system", "::endgroup::"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "rpibuild", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
    )


def test_a_json_failure_prints_an_error_object_on_stdout() -> None:
    result = run("plan", "-p", "no-such-profile", "--json")
    assert result.returncode == 2
    error = json.loads(result.stdout)["error"]
    assert error["exit_code"] == 2 and "no-such-profile" in error["message"]
    assert set(error) == {"exit_code", "stage", "message", "hint", "log_file"}
    assert "error:" in result.stderr  # the person reading the log still gets the sentence


def test_github_actions_gets_an_error_annotation() -> None:
    result = run("config", "show", "-p", "no-such-profile", env={"GITHUB_ACTIONS": "true"})
    assert result.returncode == 2
    annotation = [line for line in result.stderr.splitlines() if line.startswith("::error ")]
    assert len(annotation) == 1 and "no-such-profile" in annotation[0] and "%0Ahint: " in annotation[0]
    plain = run("config", "show", "-p", "no-such-profile", env={"GITHUB_ACTIONS": ""})
    assert "::error" not in plain.stderr


@pytest.mark.parametrize("flag", ["-q", "-v"])
def test_verbosity_is_taken_after_the_subcommand_too(flag: str) -> None:
    after = run("config", "validate", "-p", "pi3b-arm64", flag)
    assert after.returncode == 0, after.stderr
    # validate's "ok" line is progress: -q after the subcommand silences it, as before it.
    assert ("ok" in after.stderr) == (flag == "-v")
    before = run(flag, "config", "validate", "-p", "pi3b-arm64")
    assert before.stderr == after.stderr


def test_rawjson_builds_print_json_lines_only(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """The whole `build --progress rawjson` on stderr: every line is a JSON event."""
    import rpibuild.build.pipeline
    import rpibuild.engine
    from rpibuild.build.base import BaseImage
    from rpibuild.build.pipeline import BuildOutcome
    from rpibuild.cli import main

    def fake_build(profile, engine, *, on_event, on_log, **kwargs):
        on_log("/logs/build.log")
        on_event(BuildEvent("system", 1, 1, "RUN true", True))
        base = BaseImage("rpibuild/base:x", "sha256:0", "linux/arm/v7", cached=True)
        return BuildOutcome("rpibuild/x:y", "sha256:1", ["rpibuild/x:y"], "linux/arm/v7", base)

    from rpibuild import console

    monkeypatch.setattr(console, "_verbosity", 0)  # restored after: rawjson lowers it
    monkeypatch.setattr(rpibuild.build.pipeline, "build_profile", fake_build)
    monkeypatch.setattr(rpibuild.engine.DockerEngine, "connect", classmethod(lambda cls, **kw: object()))
    monkeypatch.setattr(sys, "argv", ["rpibuild", "build", "-p", "pi3b-armv7", "--progress", "rawjson"])
    try:
        main()
    except SystemExit as exited:
        assert exited.code in (0, None)
    out, err = capsys.readouterr()
    events = [json.loads(line)["event"] for line in err.splitlines()]
    assert events[:3] == ["log", "stage-start", "step"]
    assert out.strip() == "rpibuild/x:y"
