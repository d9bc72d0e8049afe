"""torch.wheel_store without a registry: the profile field, the plan's words, the artifact's
names and the checks a registry's answer must pass (rpibuild.publish.wheel_artifact), pure."""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from rpibuild.cli import cli
from rpibuild.config import load_profile
from rpibuild.errors import ConfigError, ExitCode
from rpibuild.planning.plan import COMPILE, REGISTRY_OR_COMPILE, STORE, make_plan
from rpibuild.publish import wheel_artifact
from rpibuild.publish.errors import DigestMismatch
from rpibuild.publish.target import Target
from rpibuild.torch_routes.debian import store

SHARED = ["torch.wheel_store=registry", "registry.url=registry.example:5000"]
KEY = "0123456789abcdef01234567"
SHA = "a" * 64


def test_the_default_is_the_local_store_and_registry_needs_a_registry_url(tmp_path: Path) -> None:
    assert load_profile("pi3b-armv7", env={}).profile.torch.wheel_store == "local"
    path = tmp_path / "team.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            extends: pi3b-armv7
            torch:
              wheel_store: registry
            """
        ),
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_profile(path, env={})
    assert caught.value.field == "torch.wheel_store" and caught.value.line == 3
    assert "registry.url" in caught.value.message and caught.value.exit_code == ExitCode.USAGE
    with pytest.raises(ConfigError) as wrong:
        load_profile("pi3b-armv7", ["torch.wheel_store=s3"], env={})
    assert wrong.value.field == "torch.wheel_store"


def test_the_plan_says_where_the_wheel_comes_from(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RPIBUILD_CACHE", str(tmp_path / "cache"))
    local = make_plan(load_profile("pi3b-armv7", env={}).profile)
    assert local.torch_wheel_from == COMPILE
    assert "wheel compiled by the build (not stored here)" in "\n".join(local.lines())
    profile = load_profile("pi3b-armv7", SHARED, env={}).profile
    shared = make_plan(profile)
    assert shared.torch_wheel_from == REGISTRY_OR_COMPILE and shared.torch_key == local.torch_key
    assert shared.as_dict()["torch"]["wheel_from"] == "registry or compile"  # type: ignore[index]
    assert "if it is there, else compiled" in "\n".join(shared.lines())
    assert make_plan(profile, target="torch-c10").torch_wheel_from == ""  # a compile check
    assert make_plan(load_profile("pi3b-arm64", env={}).profile).torch_wheel_from == ""  # no key
    exported = tmp_path / "exported"
    exported.mkdir()
    (exported / "torch-2.6.0-cp313-cp313-linux_armv7l.whl").write_bytes(b"wheel")
    (exported / "torch-runtime-packages.txt").write_text("libgomp1\n")
    store(shared.torch_key, "2.6.0+dfsg-7", exported)
    assert make_plan(profile).torch_wheel_from == STORE  # the local store first, no registry asked


def test_the_artifact_lives_beside_the_image_under_the_namespace() -> None:
    profile = load_profile("pi3b-armv7", SHARED, env={}).profile
    where = wheel_artifact.location(profile, KEY)
    assert where.reference == f"registry.example:5000/rpibuild/torch-wheel:{KEY}"
    assert not where.target.insecure
    team = load_profile("pi3b-armv7", [*SHARED, "registry.namespace=team"], env={}).profile
    assert wheel_artifact.location(team, KEY).repository == "team/torch-wheel"
    bare = load_profile("pi3b-armv7", [*SHARED, "image.repository=pi"], env={}).profile
    assert wheel_artifact.location(bare, KEY).repository == "torch-wheel"


def test_the_build_record_names_the_wheel_and_its_package_list(tmp_path: Path) -> None:
    wheel = tmp_path / "torch-2.6.0-cp313-cp313-linux_armv7l.whl"
    wheel.write_bytes(b"wheel")
    packages = tmp_path / "torch-runtime-packages.txt"
    packages.write_text("libgomp1\n")
    record = wheel_artifact.record_of(KEY, "2.6.0+dfsg-7", "linux/arm/v7", wheel, packages)
    assert record["key"] == KEY and record["wheel"]["name"] == wheel.name and record["wheel"]["size"] == 5
    assert record["wheel"]["sha256"] == hashlib.sha256(b"wheel").hexdigest()
    assert record["runtime_packages"]["sha256"] == hashlib.sha256(b"libgomp1\n").hexdigest()
    wheel_artifact._check_record(record, wheel_artifact.WheelLocation(Target("r"), "x/torch-wheel", KEY))


WHERE = wheel_artifact.WheelLocation(Target("registry.example"), "team/torch-wheel", KEY)


def good_record() -> dict[str, Any]:
    return {
        "key": KEY,
        "wheel": {"name": "torch-2.6.0-cp313-cp313-linux_armv7l.whl", "size": 10, "sha256": SHA},
        "runtime_packages": {"sha256": "b" * 64},
    }


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda r: r.update(key="f" * 24), "for key"),
        (lambda r: r["wheel"].update(name="../../etc/torch-1.whl"), "no torch wheel file"),
        (lambda r: r["wheel"].update(name="numpy-1.0.whl"), "no torch wheel file"),
        (lambda r: r["wheel"].update(sha256="xyz"), "no sha256"),
        (lambda r: r["runtime_packages"].update(sha256=None), "no sha256"),
        (lambda r: r["wheel"].update(size=-1), "no size"),
        (lambda r: r["wheel"].update(size=wheel_artifact.MAX_WHEEL_BYTES + 1), "no size"),
        (lambda r: r.pop("wheel"), "names no wheel"),
    ],
)
def test_a_record_that_is_not_rpibuilds_is_refused_as_tampering(change: Any, says: str) -> None:
    wheel_artifact._check_record(good_record(), WHERE)
    record = good_record()
    change(record)
    with pytest.raises(DigestMismatch, match=says) as caught:
        wheel_artifact._check_record(record, WHERE)
    assert caught.value.exit_code == ExitCode.REGISTRY
    assert caught.value.hint and f"delete the tag {KEY}" in caught.value.hint
    assert "torch.wheel_store=local" in caught.value.hint


@pytest.mark.parametrize(
    "descriptor",
    [
        None,
        {"mediaType": "x", "size": 1, "digest": "md5:abc"},
        {"mediaType": "x", "size": True, "digest": "sha256:" + SHA},
        {"mediaType": "x", "size": 11 << 30, "digest": "sha256:" + SHA},
        {"size": 1, "digest": "sha256:" + SHA},
    ],
)
def test_a_descriptor_of_the_wrong_shape_or_size_is_refused_before_anything_is_fetched(
    descriptor: object,
) -> None:
    with pytest.raises(DigestMismatch):
        wheel_artifact._descriptor(descriptor, WHERE, "a layer", wheel_artifact.MAX_WHEEL_BYTES)


def test_the_plan_command_shows_the_registry_field_in_json_without_asking_for_a_local_store() -> None:
    result = CliRunner().invoke(cli, ["plan", "-p", "pi3b-arm64", "--set", "torch.wheel_store=registry",
                                      "--set", "registry.url=registry.example", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert '"wheel_from": null' in result.output  # a pinned wheel: nothing to share, no registry asked


def test_a_build_whose_registry_cannot_be_asked_stops_before_any_base_or_compile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Exit 6 in seconds, not hours of compiling that the registry was there to save."""
    import socket

    from rpibuild.build.pipeline import build_profile
    from rpibuild.errors import RegistryError
    from rpibuild.publish import errors
    from tests.unit.test_build_pipeline import compiling_engine

    monkeypatch.setenv("RPIBUILD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(errors, "backoff_delays", lambda retries, *args: [0.0] * retries)
    with socket.socket() as sock:  # a loopback port nothing listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    prof = load_profile(
        "pi3b-armv7",
        ["qpulib.enabled=false", "torch.wheel_store=registry", f"registry.url=127.0.0.1:{port}",
         "registry.insecure=true"],
        env={},
    ).profile  # fmt: skip
    engine, _ = compiling_engine(prof)
    with pytest.raises(RegistryError, match=f"cannot reach 127.0.0.1:{port}") as caught:
        build_profile(prof, engine)
    assert caught.value.exit_code == ExitCode.REGISTRY
    assert engine.calls == [] and engine.builds == [] and engine.runs == []
