"""``rpibuild build --push / -t/--tag``: nothing is pushed unless every build passed; tags checked.

The engine is the fake one (its push raises "not used"), so these show what the command
asks for; the pushes themselves run against a real registry in tests/integration/test_registry.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from rpibuild.build.base import base_reference
from rpibuild.cli import cli
from rpibuild.config import load_profile
from rpibuild.engine import BuildResult, DockerEngine
from rpibuild.errors import BuildError, ConfigError
from rpibuild.host.build_platform import cross_base_profile
from rpibuild.planning.stages import wants_cross
from rpibuild.publish import release
from tests.unit.fake_engine import FakeEngine, failing_build, stage_timings

OFF = ["--set", "qpulib.enabled=false", "--set", "registry.url=127.0.0.1:5999"]


@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeEngine:
    monkeypatch.setenv("RPIBUILD_CACHE", str(tmp_path / "cache"))
    fake = FakeEngine()
    prof = load_profile("pi3b-arm64", ["qpulib.enabled=false"], env={}).profile
    fake.add_image(base_reference(prof), prof.platform)
    if wants_cross(prof):
        build = cross_base_profile(prof)
        fake.add_image(base_reference(build), build.platform)
    monkeypatch.setattr(DockerEngine, "connect", classmethod(lambda cls, **_: fake))
    return fake


@pytest.fixture
def pushes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(release, "publish_built", lambda *a, **kw: calls.append(a) or [])
    return calls


def test_a_failed_verify_pushes_nothing(engine: FakeEngine, pushes: list[tuple[Any, ...]]) -> None:
    engine.build_error = failing_build("verify", "import torch_qpu failed", ["ImportError: libqpu.so"])
    result = CliRunner().invoke(cli, ["build", *OFF, "--push", "-t", "127.0.0.1:5999/team/app:t"])
    assert isinstance(result.exception, BuildError) and result.exception.stage == "verify"
    assert pushes == []
    assert engine.tags == {}  # and nothing tagged either


def test_push_runs_after_a_passing_build_with_the_built_image(
    engine: FakeEngine, pushes: list[tuple[Any, ...]]
) -> None:
    built = engine.add_image("built", "linux/arm64", image_id="sha256:" + "b" * 64)
    engine.build_result = BuildResult(built.id, stage_timings("system", "verify", "runtime"))
    result = CliRunner().invoke(cli, ["build", *OFF, "--push", "-t", "127.0.0.1:5999/team/app:t"])
    assert result.exit_code == 0, result.output
    ((_, images, tags),) = pushes
    assert [(p.name, ref) for p, ref in images] == [("pi3b-arm64", "rpibuild/pi3b-arm64:pi3b-arm64")]
    assert tags == ("127.0.0.1:5999/team/app:t",)


def test_tag_without_push_adds_a_local_tag(engine: FakeEngine, pushes: list[tuple[Any, ...]]) -> None:
    built = engine.add_image("built", "linux/arm64", image_id="sha256:" + "c" * 64)
    engine.build_result = BuildResult(built.id, stage_timings("system", "runtime"))
    result = CliRunner().invoke(cli, ["build", *OFF, "-t", "myrasp:dev", "--json"])
    assert result.exit_code == 0, result.output
    assert engine.tags["myrasp:dev"] == built.id
    assert pushes == []


@pytest.mark.parametrize(
    "tag", ["Upper/Case:t", "name:bad tag", "name:" + "x" * 129, "name@sha256:" + "a" * 64, "name:"]
)
def test_bad_tags_are_usage_errors_before_anything_runs(tag: str) -> None:
    result = CliRunner().invoke(cli, ["build", "-t", tag])
    assert result.exit_code == 2
    assert "--tag" in result.output


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["-p", "pi3b-armv7", "-p", "pi3b-arm64", "--push"], "--tag REGISTRY/NAME:TAG"),
        (["-p", "pi3b-armv7", "-p", "pi3b-arm64", "-t", "a:b"], "add --push"),
        (["--push", "--target", "system"], "drop --target"),
    ],
)
def test_inconsistent_push_options_are_usage_errors(args: list[str], needle: str) -> None:
    result = CliRunner().invoke(cli, ["build", *args])
    assert isinstance(result.exception, ConfigError)
    assert needle in str(result.exception)


def test_registry_of_a_reference_follows_dockers_rule() -> None:
    assert release.registry_of("127.0.0.1:5000/team/app:t") == "127.0.0.1:5000"
    assert release.registry_of("reg.example.com/app:t") == "reg.example.com"
    assert release.registry_of("localhost/app:t") == "localhost"
    assert release.registry_of("team/app:t") is None
    assert release.registry_of("app:t") is None
