"""The command line through click's runner: help, data output, and user errors (no traceback)."""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from rpibuild.cli import cli

COMMANDS = [
    [],
    ["doctor"],
    ["qemu"],
    ["qemu", "status"],
    ["qemu", "install"],
    ["config"],
    ["config", "show"],
    ["config", "validate"],
    ["config", "list"],
    ["render"],
    ["base"],
    ["build"],
    ["image"],
    ["image", "build"],
    ["image", "push"],
    ["image", "ls"],
    ["image", "rm"],
    ["push"],
    ["login"],
]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a) or "rpibuild")
def test_every_command_has_help(args: list[str]) -> None:
    result = CliRunner().invoke(cli, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    assert len(result.output.splitlines()) > 4


def test_config_list_and_show_json() -> None:
    runner = CliRunner()
    listed = runner.invoke(cli, ["config", "list", "--json"])
    assert "pi3b-arm64" in json.loads(listed.output)
    shown = runner.invoke(
        cli, ["config", "show", "-p", "pi3b-arm64", "--set", "torch.version=2.6.0", "--json"]
    )
    data = json.loads(shown.output)
    assert data["torch"]["version"] == "2.6.0"
    assert data["platform"] == "linux/arm64"


def test_profile_from_environment_variable() -> None:
    result = CliRunner().invoke(cli, ["config", "show", "--json"], env={"RPIBUILD_PROFILE": "host-emulator"})
    assert json.loads(result.output)["platform"] == "linux/amd64"


def test_render_prints_the_dockerfile() -> None:
    result = CliRunner().invoke(cli, ["render", "-p", "pi3b-arm64"])
    assert result.exit_code == 0
    assert (
        result.output.count("FROM ") == 11
    )  # 6 target stages + cross, torch-install, qpulib-build, extension-build


def test_secrets_are_masked_in_config_show() -> None:
    result = CliRunner().invoke(
        cli,
        ["config", "show", "--json", "--set", "registry.password=${RPIBUILD_TEST_SECRET}"],
        env={"RPIBUILD_TEST_SECRET": "hunter2"},
    )
    assert result.exit_code == 0
    assert "hunter2" not in result.output


def run_main(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rpibuild", *args], capture_output=True, text=True, check=False
    )


def test_bad_profile_exits_2_with_location_and_no_traceback(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("extends: pi3b-arm64\nverify:\n  emulater: true\n")
    result = run_main("config", "validate", "-p", str(bad))
    assert result.returncode == 2
    assert f"{bad}:3: verify.emulater: unknown field" in result.stderr
    assert "did you mean 'emulator'?" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_profile_and_bad_set_exit_2() -> None:
    assert run_main("render", "-p", "nope").returncode == 2
    result = run_main("render", "--set", "verify.enabled=perhaps")
    assert result.returncode == 2
    assert "--set verify.enabled=perhaps" in result.stderr


def test_bad_option_is_a_usage_error() -> None:
    result = run_main("build", "--target", "nowhere")
    assert result.returncode == 2
    assert "Invalid value" in result.stderr


def test_render_output_writes_the_whole_context(tmp_path) -> None:
    src = tmp_path / "QPULib"
    (src / "Lib").mkdir(parents=True)
    (src / "Lib" / "QPULib.h").write_text("// stand-in for a checkout\n")
    out = tmp_path / "ctx"
    result = CliRunner().invoke(cli, ["render", "-o", str(out)], env={"RPIBUILD_QPULIB_SRC": str(src)})
    assert result.exit_code == 0, result.output
    assert (out / "Dockerfile").read_text().count("FROM ") == 11
    assert (out / "qpulib-src" / "Lib" / "QPULib.h").is_file()
    again = run_main("render", "-o", str(out))
    assert again.returncode == 2 and "not empty" in again.stderr


def test_render_output_without_qpulib_source_says_how_to_fix(tmp_path) -> None:
    result = run_main("render", "-o", str(tmp_path / "ctx"), "--set", "qpulib.path=/nonexistent")
    assert result.returncode == 2
    assert "RPIBUILD_QPULIB_SRC" in result.stderr


def _outcome() -> object:
    from rpibuild.build.base import BaseImage
    from rpibuild.build.pipeline import BuildOutcome

    base = BaseImage("rpibuild/base:x", "sha256:0", "linux/arm/v7", cached=True)
    return BuildOutcome("rpibuild/x:y", "sha256:1", ["rpibuild/x:y"], "linux/arm/v7", base)


def _build_with_compile_events(monkeypatch: pytest.MonkeyPatch, capsys, every: float) -> list[str]:
    """`rpibuild build` (stderr not a terminal, as in CI) with a build that reports three
    compile progress lines; returns the plain progress lines it printed."""
    import rpibuild.build.pipeline
    import rpibuild.cli.build
    import rpibuild.cli.reporter
    import rpibuild.engine
    from rpibuild.cli import main
    from rpibuild.engine import BuildEvent

    def fake_build(profile, engine, *, on_event, **kwargs):
        for done in (10, 20, 30):
            on_event(
                BuildEvent(
                    "torch-build", 1, 2, f"[rpibuild-ninja {done}/1240] g++ x.cpp", False, (done, 1240)
                )
            )
        return _outcome()

    monkeypatch.setattr(rpibuild.build.pipeline, "build_profile", fake_build)
    monkeypatch.setattr(rpibuild.engine.DockerEngine, "connect", classmethod(lambda cls, **kw: object()))
    monkeypatch.setattr(rpibuild.cli.reporter, "PLAIN_PROGRESS_EVERY", every)
    monkeypatch.setattr(sys, "argv", ["rpibuild", "build", "-p", "pi3b-armv7", "--json"])
    try:
        main()
    except SystemExit as exited:
        assert exited.code in (0, None)
    return [line for line in capsys.readouterr().err.splitlines() if "compiling" in line]


def test_a_compile_is_never_silent_in_a_ci_log(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    lines = _build_with_compile_events(monkeypatch, capsys, every=60.0)
    assert len(lines) == 1 and "compiling 10/1240 (0%)" in lines[0]  # then at most once a minute
    lines = _build_with_compile_events(monkeypatch, capsys, every=0.0)
    assert [line.split("compiling ")[1].split(" ")[0] for line in lines] == ["10/1240", "20/1240", "30/1240"]


def test_help_names_every_stage_and_no_stale_qemu_claims() -> None:
    from rpibuild.config import load_profile
    from rpibuild.planning.plan import make_plan, render_planned
    from rpibuild.planning.stages import CROSS_STAGES, TARGET_STAGES

    build_help = CliRunner().invoke(cli, ["build", "--help"]).output
    for stage in (*CROSS_STAGES, *TARGET_STAGES):
        assert stage in build_help, f"build --help does not name the {stage} stage"
    top = CliRunner().invoke(cli, ["--help"]).output
    assert "cross-compiled natively" in top and "builds run under QEMU" not in top
    native = render_planned(
        load_profile("host-emulator").profile, make_plan(load_profile("host-emulator").profile)
    )
    header = native.dockerfile.split("\nFROM ", 1)[0]
    assert "QEMU" not in header and "natively" in header


def test_the_wheel_hint_names_options_not_a_variable_no_profile_reads() -> None:
    result = run_main("config", "validate", "-p", "pi3b-armv7", "--set", "torch.source=wheel")
    assert result.returncode == 2
    assert "--set torch.wheel=" in result.stderr and "RPIBUILD_TORCH_WHEEL" not in result.stderr


def test_every_environment_variable_is_in_the_readme_table() -> None:
    """The README's table of RPIBUILD_* variables equals the names rpibuild and its scripts read."""
    import re
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    used: set[str] = set()
    for path in [*(repo / "rpibuild").rglob("*.py"), *(repo / "scripts").glob("*.sh")]:
        used |= set(re.findall(r"\bRPIBUILD_[A-Z][A-Z0-9_]*\b", path.read_text(encoding="utf-8")))
    readme = (repo / "README.md").read_text(encoding="utf-8")
    table = set(re.findall(r"^\| `(RPIBUILD_[A-Z0-9_]+)` \|", readme, flags=re.M))
    assert used - table == set(), "read by the code but not in the README's table"
    assert table - used == set(), "in the README's table but read by nothing"


def test_shell_completion_offers_profile_names() -> None:
    import os

    env = {
        **os.environ,
        "_RPIBUILD_COMPLETE": "bash_complete",
        "COMP_WORDS": "rpibuild build -p pi3",
        "COMP_CWORD": "3",
    }
    result = subprocess.run(
        [sys.executable, "-m", "rpibuild"], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["plain,pi3b-arm64", "plain,pi3b-armv7"]
    source = subprocess.run(
        [sys.executable, "-m", "rpibuild"],
        capture_output=True,
        text=True,
        env={**os.environ, "_RPIBUILD_COMPLETE": "bash_source"},
        check=False,
    )
    assert "_rpibuild_completion()" in source.stdout


def test_every_command_takes_verbosity_after_its_name() -> None:
    def leaves(group: click.Group, path: list[str]) -> list[tuple[list[str], click.Command]]:
        found = []
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                found += leaves(command, [*path, name])
            else:
                found.append(([*path, name], command))
        return found

    for path, command in leaves(cli, []):
        options = {opt for param in command.params for opt in getattr(param, "opts", ())}
        assert {"-v", "-q"} <= options, f"rpibuild {' '.join(path)} does not take -v/-q"
