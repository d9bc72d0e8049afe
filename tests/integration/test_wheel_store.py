"""torch.wheel_store: registry against a real registry: a wheel compiled once per team.

The real torch compile takes 90 minutes, so the wheel here is a small real one that pip builds
from a throwaway project, stored under the real build key of pi3b-armv7 by the real ``store()``
and pushed by the real code (oras) to a real registry on 127.0.0.1 (the registry tests' own
fixture: Debian's docker-registry with htpasswd auth, credentials in a temporary docker
config). Then the local store is deleted, a fresh cache folder is used, and rpibuild must fetch
the wheel instead of compiling it; a tampered artifact must be refused with exit 6 and the fix,
storing nothing; a registry without the artifact must mean "compile", not an error.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# The registry fixtures are test_registry's own: a real registry with htpasswd auth on
# loopback, credentials in a temporary docker config (autouse), never the user's ~/.docker.
import test_registry
from test_registry import PASSWORD, USER, Registry, login

from rpibuild.build import wheel_share
from rpibuild.config import load_profile
from rpibuild.config.model import Profile
from rpibuild.engine import BuildEvent, Engine
from rpibuild.planning.plan import make_plan
from rpibuild.publish import oci, wheel_artifact
from rpibuild.publish.errors import DigestMismatch
from rpibuild.publish.target import docker_config_dir
from rpibuild.torch_routes.debian import RUNTIME_PACKAGES, StoredWheel, store, store_dir, stored_wheel

# (the fixtures themselves: used by name)
docker_config = test_registry.docker_config
registry = test_registry.registry

PROFILE = "pi3b-armv7"
REPOSITORY = "rpibuild-test/wheel-store"  # the images a build here tags (removed after it)


@pytest.fixture(scope="module")
def small_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real wheel named torch, built by pip from a throwaway project (no network)."""
    project = tmp_path_factory.mktemp("fake-torch")
    (project / "torch").mkdir()
    (project / "torch" / "__init__.py").write_text('__version__ = "2.6.0"\n', encoding="utf-8")
    (project / "pyproject.toml").write_text(
        textwrap.dedent(
            """\
            [build-system]
            requires = ["setuptools"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "torch"
            version = "2.6.0"

            [tool.setuptools]
            packages = ["torch"]
            """
        ),
        encoding="utf-8",
    )
    out = tmp_path_factory.mktemp("wheels")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "-q", "-w", str(out), str(project)],
        check=True, capture_output=True,
    )  # fmt: skip
    (wheel,) = out.glob("torch-*.whl")
    return wheel


def overrides(reg: Registry) -> list[str]:
    return [
        "qpulib.enabled=false",
        "torch.wheel_store=registry",
        f"registry.url={reg.host}",
        "registry.insecure=true",
        "registry.namespace=team",
        f"image.repository={REPOSITORY}",
    ]


def profile_for(reg: Registry) -> Profile:
    return load_profile(PROFILE, overrides(reg), env={}).profile


def use_cache(monkeypatch: pytest.MonkeyPatch, folder: Path) -> Path:
    monkeypatch.setenv("RPIBUILD_CACHE", str(folder))
    return folder


def stored_from(wheel: Path, key: str, tmp: Path) -> StoredWheel:
    """The wheel and a package list through the real store(), as a compile leaves them."""
    exported = tmp / "exported"
    exported.mkdir(parents=True)
    shutil.copy2(wheel, exported / wheel.name)
    (exported / RUNTIME_PACKAGES).write_text("libgomp1\n", encoding="utf-8")
    return store(key, "2.6.0+dfsg-7", exported)


def cli(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RPIBUILD_CACHE": str(cache)}
    return subprocess.run(
        [sys.executable, "-m", "rpibuild", *args], capture_output=True, text=True, check=False, env=env
    )


def set_args(reg: Registry) -> list[str]:
    return [arg for item in overrides(reg) for arg in ("--set", item)]


def pushed_from_a_first_cache(
    reg: Registry, wheel: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Profile, str, str, wheel_share.Shared]:
    """Store the wheel in cache A, push it with the real code, delete cache A; (profile, key,
    the wheel's sha256, what the push left)."""
    login(reg, "--insecure")
    first = use_cache(monkeypatch, tmp_path / "cache-a")
    profile = profile_for(reg)
    key = make_plan(profile).torch_key
    assert key
    stored = stored_from(wheel, key, tmp_path)
    events: list[BuildEvent] = []
    shared, timing = wheel_share.publish(profile, key, stored, events.append)
    assert shared is not None and shared.pushed and not shared.error, shared
    assert shared.reference == f"{reg.host}/team/torch-wheel:{key}"
    assert timing is not None and timing.name == "torch-push"
    sha = stored.sha256
    shutil.rmtree(first)
    return profile, key, sha, shared


def test_a_wheel_pushed_from_one_cache_is_fetched_into_a_fresh_one_and_nothing_compiles(
    registry: Registry, small_wheel: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    profile, key, sha, shared = pushed_from_a_first_cache(registry, small_wheel, tmp_path, monkeypatch)
    fresh = use_cache(monkeypatch, tmp_path / "cache-b")

    # The artifact as the registry holds it: tagged with the key, the key and sha256 annotated.
    where = wheel_artifact.location(profile, key)
    manifest = json.loads(oci.manifest(where.target, where.repository, key))
    assert manifest["annotations"][wheel_artifact.KEY_ANNOTATION] == key
    assert manifest["annotations"][wheel_artifact.SHA256_ANNOTATION] == sha
    assert manifest["config"]["mediaType"] == wheel_artifact.RECORD_TYPE

    # `rpibuild plan` on the fresh cache asks the registry: the wheel will be fetched.
    planned = cli("plan", "-p", PROFILE, *set_args(registry), "--json", cache=fresh)
    assert planned.returncode == 0, planned.stderr
    torch = json.loads(planned.stdout)["torch"]
    assert torch["wheel_from"] == "registry" and torch["stored_wheel"] is None
    assert torch["wheel_registry"] == shared.reference and sha in torch["wheel_note"]
    assert not {"torch-source", "torch-c10"} & {s["name"] for s in json.loads(planned.stdout)["stages"]}
    human = cli("plan", "-p", PROFILE, *set_args(registry), cache=fresh)
    assert f"wheel fetched from the registry: {shared.reference}" in human.stdout
    assert PASSWORD not in planned.stdout + planned.stderr + human.stdout + human.stderr

    # The build's fetch step (what build_profile runs before it would compile).
    assert stored_wheel(key) is None
    events: list[BuildEvent] = []
    fetched, remote, timing = wheel_share.fetch(profile, key, events.append)
    assert fetched is not None and remote is not None and timing is not None
    assert fetched.sha256 == sha == hashlib.sha256(small_wheel.read_bytes()).hexdigest()
    assert fetched.wheel.name == small_wheel.name and fetched.wheel.is_relative_to(fresh)
    assert fetched.runtime_packages.read_text(encoding="utf-8") == "libgomp1\n"
    assert remote.digest == shared.digest
    # After it, the plan takes the wheel from the store: no compile stage is left to run.
    plan = make_plan(profile)
    assert plan.torch_wheel is not None and plan.torch_wheel.sha256 == sha
    assert plan.torch_wheel_from == "store"
    assert not {"torch-source", "torch-c10"} & set(plan.stages.names)
    assert not (fresh / "torch-compile").exists()
    assert PASSWORD not in registry.log_text()


def test_an_armv7_build_with_a_fresh_cache_fetches_the_wheel_and_compiles_nothing(
    engine: Engine, registry: Registry, small_wheel: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real build command, up to the target's first stage (the small wheel is no torch
    that the image's torch stage could import): the wheel comes from the registry, and no
    compile stage, compile log or compile folder appears."""
    _, key, sha, shared = pushed_from_a_first_cache(registry, small_wheel, tmp_path, monkeypatch)
    fresh = tmp_path / "cache-b"
    bases_before = {tag for image in engine.client.images.list("rpibuild/base") for tag in image.tags}
    try:
        options = ("--target", "system", "--json", "--progress", "plain")
        built = cli("build", "-p", PROFILE, *set_args(registry), *options, cache=fresh)
        assert built.returncode == 0, built.stderr[-4000:]
        outcome = json.loads(built.stdout)
        wheel = outcome["torch_wheel"]
        assert wheel["from"] == "registry" and wheel["compiled"] is False and wheel["sha256"] == sha
        assert wheel["registry"]["reference"] == shared.reference == f"{registry.host}/team/torch-wheel:{key}"
        assert wheel["registry"]["digest"] == shared.digest and not wheel["registry"]["pushed"]
        assert Path(wheel["path"]).is_relative_to(fresh / "torch" / key)
        names = [stage["name"] for stage in outcome["stages"]]
        assert "torch-fetch" in names and not {"torch-source", "torch-build", "torch-c10"} & set(names)
        assert not list((fresh / "logs").glob("*torch-build*"))
        assert not (fresh / "torch-compile").exists()
        assert "torch-fetch" in built.stderr and f"look up {shared.reference}" in built.stderr
        assert PASSWORD not in built.stdout + built.stderr
    finally:
        for image in engine.client.images.list(REPOSITORY):
            engine.remove_image(image.id, force=True)
        for image in engine.client.images.list("rpibuild/base"):
            made = [tag for tag in image.tags if tag not in bases_before and "-armv7-" in tag]
            if made and len(made) == len(image.tags):  # the target base with this wheel's packages
                engine.remove_image(image.id, force=True)


def test_doctor_says_the_registry_has_the_wheel_or_cannot_be_asked(
    registry: Registry, small_wheel: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, _, sha, shared = pushed_from_a_first_cache(registry, small_wheel, tmp_path, monkeypatch)
    fresh = tmp_path / "cache-b"

    def torch_check() -> dict[str, object]:
        result = cli("doctor", "-p", PROFILE, *set_args(registry), "--json", cache=fresh)
        assert "Traceback" not in result.stderr
        (check,) = [c for c in json.loads(result.stdout) if c["name"] == "torch wheel"]
        return dict(check)

    there = torch_check()
    assert there["ok"] is True and shared.reference in str(there["detail"]) and sha in str(there["detail"])
    registry.stop()
    gone = torch_check()
    assert gone["ok"] is False and "could not be asked" in str(gone["detail"])
    assert "torch.wheel_store=local" in str(gone["fix"])


def test_a_registry_without_the_artifact_means_compile_not_an_error(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    login(registry, "--insecure")
    fresh = use_cache(monkeypatch, tmp_path / "cache")
    profile = profile_for(registry)
    key = make_plan(profile).torch_key
    where = wheel_artifact.location(profile, key)
    # An empty registry (the repository unknown), then one whose repository has another key only.
    assert wheel_artifact.find(where) is None
    planned = cli("plan", "-p", PROFILE, *set_args(registry), "--json", cache=fresh)
    assert planned.returncode == 0, planned.stderr
    torch = json.loads(planned.stdout)["torch"]
    assert torch["wheel_from"] == "compile" and torch["wheel_registry"] == where.reference
    events: list[BuildEvent] = []
    assert wheel_share.fetch(profile, key, events.append)[0] is None
    assert any("not in the registry: compiling" in e.line for e in events)
    assert not (store_dir() / key).exists()


def test_a_tampered_wheel_blob_is_refused_with_exit_6_and_the_fix(
    registry: Registry, small_wheel: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The registry serves other bytes under the wheel's digest (its storage was changed)."""
    _, key, sha, _ = pushed_from_a_first_cache(registry, small_wheel, tmp_path, monkeypatch)
    assert registry.storage is not None
    (blob,) = registry.storage.glob(f"docker/registry/v2/blobs/sha256/{sha[:2]}/{sha}/data")
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte changed
    blob.write_bytes(bytes(data))
    fresh = tmp_path / "cache-b"

    built = cli("build", "-p", PROFILE, *set_args(registry), "--target", "system", "--json", cache=fresh)
    assert built.returncode == 6, built.stderr
    failure = json.loads(built.stdout)["error"]
    assert failure["exit_code"] == 6
    assert (
        "changed since" in failure["message"]
        and f"{registry.host}/team/torch-wheel:{key}" in failure["message"]
    )
    assert "delete the tag" in failure["hint"] and "torch.wheel_store=local" in failure["hint"]
    assert "Traceback" not in built.stderr and PASSWORD not in built.stdout + built.stderr
    # Nothing stored, nothing compiled, no leftover download.
    assert not (fresh / "torch" / key).exists()
    assert not (fresh / "torch-compile").exists()
    assert not list(fresh.glob("rpibuild-fetch-*"))


def test_an_artifact_whose_record_names_another_wheel_is_refused(
    registry: Registry, small_wheel: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Someone pushed another wheel under the key, keeping the record: every blob is intact
    (the registry checks digests on upload), but the wheel is not the one the record names."""
    profile, key, _, shared = pushed_from_a_first_cache(registry, small_wheel, tmp_path, monkeypatch)
    where = wheel_artifact.location(profile, key)
    session = oci.Session(where.target, where.repository)
    manifest = json.loads(oci.manifest(where.target, where.repository, key))
    record = session.send("GET", f"/v2/{where.repository}/blobs/{manifest['config']['digest']}").content
    other = tmp_path / "other" / small_wheel.name
    other.parent.mkdir()
    other.write_bytes(small_wheel.read_bytes() + b"\0")  # a wheel (zip) with one byte more
    packages = tmp_path / "other" / RUNTIME_PACKAGES
    packages.write_text("libgomp1\n", encoding="utf-8")
    config = tmp_path / "other" / "record.json"
    config.write_bytes(record)
    session.client().push(
        target=where.reference,
        files=[f"{other}:{wheel_artifact.WHEEL_TYPE}", f"{packages}:{wheel_artifact.PACKAGES_TYPE}"],
        manifest_config=f"{config}:{wheel_artifact.RECORD_TYPE}",
        config_path=str(docker_config_dir() / "config.json"),
        disable_path_validation=True,
        quiet=True,
    )
    fresh = use_cache(monkeypatch, tmp_path / "cache-b")
    planned = cli("plan", "-p", PROFILE, *set_args(registry), "--json", cache=fresh)
    torch = json.loads(planned.stdout)["torch"]
    assert torch["wheel_from"] == "registry or compile" and "artifact is refused" in torch["wheel_note"]
    with pytest.raises(DigestMismatch) as caught:
        wheel_share.fetch(profile, key, lambda _event: None)
    assert caught.value.exit_code == 6
    assert "the build record says" in caught.value.message
    assert caught.value.hint and "torch.wheel_store=local" in caught.value.hint
    assert stored_wheel(key) is None
    # Already at the look-up, before a byte of the wheel is fetched; and a push from a host
    # that has the good wheel reports it instead of replacing it (deleting the tag is a person's
    # decision, as the hint says).
    with pytest.raises(DigestMismatch):
        wheel_artifact.find(where, retries=0)
    good = stored_from(small_wheel, key, tmp_path / "good")
    again, _ = wheel_share.publish(profile, key, good, lambda _event: None)
    assert again is not None and not again.pushed and "changed since" in again.error
    assert oci.manifest(where.target, where.repository, key) != oci.manifest(
        where.target, where.repository, shared.digest
    )


def test_a_push_without_a_login_is_a_warning_not_a_failure(
    registry: Registry, small_wheel: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_cache(monkeypatch, tmp_path / "cache")
    profile = profile_for(registry)
    key = make_plan(profile).torch_key
    stored = stored_from(small_wheel, key, tmp_path)
    shared, _ = wheel_share.publish(profile, key, stored, lambda _event: None)
    assert shared is not None and not shared.pushed
    assert "login" in shared.error and USER not in shared.error
    assert stored_wheel(key) is not None  # the local wheel stays
