"""BuildKit for real: secrets in no layer, cache export refused up front, a second engine as builder.

The profile is the smallest that still runs pip on the target (the step a package-index secret
is for): armv7, no torch, no QPULib, the extension as a pure-Python wheel built on the target
(so its venv gets pip, wheel and setuptools from the index).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from _engines import second_engine_context

from rpibuild.build.base import BaseImage, base_reference
from rpibuild.config import load_profile
from rpibuild.planning.plan import make_plan
from rpibuild.planning.stages import TARGET_STAGES

SENTINEL = "s3cret-index-pa55word"
PROFILE = f"""
description: armv7 with pip and nothing else, for the BuildKit tests
platform: linux/arm/v7
base:
  bootstrap:
    suite: bookworm
    variant: minbase
apt:
  packages: [python3-venv]
  runtime_packages: [python3]
network:
  ca_bundle: host
  # Unreachable on purpose (the container's own loopback): pip tries it, says so, moves on.
  pip_extra_index_url: http://rpibuild:{SENTINEL}@127.0.0.1:9/simple
torch:
  source: none
qpulib:
  enabled: false
extension:
  enabled: true
image:
  repository: rpibuild-test/buildkit
  tags: ["{{profile}}"]
"""


def rpibuild(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rpibuild", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="module")
def profile_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("buildkit") / "buildkit.yaml"
    path.write_text(PROFILE, encoding="utf-8")
    return path


def _strings_in_image(image: str, needle: bytes) -> list[str]:
    """Where ``needle`` occurs in ``docker save`` of the image: every layer, config, manifest."""
    found = []
    saved = subprocess.run(["docker", "save", image], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(saved)) as outer:
        for member in outer.getmembers():
            if not member.isfile():
                continue
            data = outer.extractfile(member).read()  # type: ignore[union-attr]
            if needle in data:
                found.append(member.name)
            if member.name.endswith(".tar"):
                with tarfile.open(fileobj=io.BytesIO(data)) as layer:
                    for entry in layer.getmembers():
                        if entry.isfile():
                            content = layer.extractfile(entry).read()  # type: ignore[union-attr]
                            if needle in content:
                                found.append(f"{member.name}:{entry.name}")
    return found


def test_index_secret_reaches_pip_but_no_layer_of_any_stage(
    armhf_base: BaseImage, profile_path: Path
) -> None:
    images: dict[str, dict] = {}
    try:
        for stage in TARGET_STAGES:
            # The system stage's pip step must really run (not come from a cache an earlier test
            # left): its log is the proof that pip saw the secret's settings.
            fresh = ("--no-cache",) if stage == "system" else ()
            result = rpibuild("build", "-p", str(profile_path), "--target", stage, "--json", *fresh)
            assert result.returncode == 0, result.stderr[-3000:]
            images[stage] = json.loads(result.stdout)
        # pip really used the secret's settings: it tried the extra index (and hid the password).
        log = Path(images["system"]["log_file"]).read_text(encoding="utf-8")
        assert "127.0.0.1:9" in log, "pip never saw the index settings"
        assert SENTINEL not in log
        for stage, built in images.items():
            history = subprocess.run(
                ["docker", "history", "--no-trunc", built["id"]], capture_output=True, text=True, check=True
            ).stdout
            assert SENTINEL not in history, f"{stage}: the secret is in the image history"
            inspect = subprocess.run(
                ["docker", "image", "inspect", built["id"]], capture_output=True, text=True, check=True
            ).stdout
            assert SENTINEL not in inspect, f"{stage}: the secret is in the image config"
            assert _strings_in_image(built["id"], SENTINEL.encode()) == [], f"{stage}: secret in a layer"
    finally:
        for built in images.values():
            for tag in built["tags"]:
                subprocess.run(["docker", "rmi", "--no-prune", tag], capture_output=True, check=False)


def test_cache_export_on_the_docker_driver_is_refused_before_building(profile_path: Path) -> None:
    before = set(subprocess.run(["docker", "images", "-qa"], capture_output=True, text=True).stdout.split())
    result = rpibuild(
        "build", "-p", str(profile_path), "--refresh-base", "--cache-to", "type=local,dest=/nonexistent"
    )
    assert result.returncode == 2, result.stderr
    assert "cannot export a build cache" in result.stderr
    assert "docker-container" in result.stderr  # the fix
    assert "Traceback" not in result.stderr
    after = set(subprocess.run(["docker", "images", "-qa"], capture_output=True, text=True).stdout.split())
    assert after == before, "something was built or bootstrapped"


def test_unknown_builder_is_a_usage_error(profile_path: Path) -> None:
    result = rpibuild("build", "-p", str(profile_path), "--builder", "no-such-builder")
    assert result.returncode == 2, result.stderr
    assert "no buildx builder named 'no-such-builder'" in result.stderr


# ---------------------------------------------------------------- a second engine


def _on_this_engine(image: str) -> bool:
    found = subprocess.run(["docker", "image", "inspect", image], capture_output=True, check=False)
    return found.returncode == 0


def test_a_second_engine_added_as_a_builder_builds_and_keeps_the_image(
    armhf_base: BaseImage, profile_path: Path
) -> None:
    with second_engine_context("engine2") as (host, context):
        # The bases go over (no image hub here): the ones this engine already has for the
        # profile (the secret test above made them), else the minimal armhf one; engine 2
        # bootstraps whatever is missing. The build itself runs on engine 2.
        planned = make_plan(load_profile(profile_path, env={}).profile).base_profiles.roles()
        present = [ref for ref in (base_reference(p) for _, p in planned) if _on_this_engine(ref)]
        for image in present or [armhf_base.image]:
            with subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE) as save:
                subprocess.run(
                    ["docker", "-H", host, "load"], stdin=save.stdout, check=True, capture_output=True
                )
            assert save.returncode == 0
        ls = rpibuild("doctor", "-p", str(profile_path), "--set", f"build.builder={context}", "--json")
        checks = {c["name"]: c for c in json.loads(ls.stdout)}
        assert checks["builder"]["ok"], checks["builder"]
        assert f"{context}, driver docker" in checks["builder"]["detail"]

        result = rpibuild("build", "-p", str(profile_path), "--builder", context, "--json")
        assert result.returncode == 0, result.stderr[-3000:]
        built = json.loads(result.stdout)
        there = subprocess.run(
            ["docker", "-H", host, "image", "inspect", built["tags"][0]],
            capture_output=True,
            text=True,
            check=False,
        )
        assert there.returncode == 0, "the image is not on the second engine"
        assert json.loads(there.stdout)[0]["Id"] == built["id"]
        assert json.loads(there.stdout)[0]["Architecture"] == "arm"
        here = subprocess.run(["docker", "image", "inspect", built["id"]], capture_output=True, check=False)
        assert here.returncode != 0, "the image was built on this engine, not the second one"
    assert Path("/sys/class/net/docker0").exists(), "this host's engine lost its bridge"
