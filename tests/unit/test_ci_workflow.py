"""The example CI workflow is valid YAML and calls only rpibuild commands and options that exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
import yaml

from rpibuild.cli import cli

DOCS = Path(__file__).resolve().parents[2] / "docs" / "ci"
WORKFLOW = DOCS / "github-actions.yml"
_CALL = re.compile(r"(?:^|[\s;&|(])rpibuild\s+(.*)$")


def run_lines(workflow: dict[str, object]) -> list[str]:
    lines = []
    for job in workflow["jobs"].values():  # type: ignore[attr-defined]
        for step in job["steps"]:
            for line in str(step.get("run", "")).splitlines():
                if line.strip() and not line.strip().startswith("#"):
                    lines.append(line.strip())
    return lines


def readme_lines() -> list[str]:
    text = (DOCS / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
    return [line.split("#", 1)[0].strip() for block in blocks for line in block.splitlines()]


def resolve(words: list[str]) -> tuple[click.Command, list[str]]:
    """The click command a list of words after `rpibuild` names, and the words left over."""
    command: click.Command = cli
    while isinstance(command, click.Group) and words and not words[0].startswith("-"):
        name, words = words[0], words[1:]
        sub = command.commands.get(name)
        assert sub is not None, f"rpibuild has no command {name!r} (under {command.name})"
        command = sub
    return command, words


def check_call(line: str) -> None:
    match = _CALL.search(line)
    assert match, line
    text = match.group(1).split(">", 1)[0]  # drop a redirection
    words = [w for w in shlex.split(text) if "$" not in w]
    command, rest = resolve(words)
    assert not isinstance(command, click.Group), f"{line!r} names a group, not a command"
    options = {opt for param in command.params for opt in param.opts + param.secondary_opts}
    options |= {"-h", "--help"}
    for word in rest:
        if word.startswith("-"):
            assert word.split("=", 1)[0] in options, f"{line!r}: rpibuild {command.name} has no {word}"


def test_workflow_is_valid_yaml_with_jobs() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    assert isinstance(workflow, dict)
    assert workflow["name"]
    # PyYAML reads the bare key `on` as True (YAML 1.1); GitHub reads it as "on".
    assert "on" in workflow or True in workflow
    steps = workflow["jobs"]["armv7"]["steps"]
    assert any(str(step.get("uses", "")).startswith("actions/upload-artifact") for step in steps)


def test_workflow_calls_only_existing_commands() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    calls = [line for line in run_lines(workflow) if _CALL.search(line)]
    names = set()
    for line in calls:
        match = _CALL.search(line)
        assert match
        names.add(resolve([w for w in shlex.split(match.group(1)) if "$" not in w])[0].name)
    assert {"install", "doctor", "build", "artifacts"} <= names
    for line in calls:
        check_call(line)
    # Everything else the workflow runs is the host set-up script or plain shell.
    for line in run_lines(workflow):
        if not _CALL.search(line) and "setup-host.sh" not in line:
            assert not re.search(r"\bdocker\b", line), f"the workflow drives docker directly: {line!r}"


def test_readme_calls_only_existing_commands() -> None:
    calls = [line for line in readme_lines() if _CALL.search(line)]
    assert calls
    for line in calls:
        check_call(line)


def test_check_call_catches_mistakes() -> None:
    with pytest.raises(AssertionError):
        check_call("rpibuild artefacts -p x out")
    with pytest.raises(AssertionError):
        check_call("rpibuild artifacts --no-such-flag out")
    with pytest.raises(AssertionError):
        check_call("sudo rpibuild qemu")
