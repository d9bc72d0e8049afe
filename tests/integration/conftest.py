"""Real-engine fixtures: the Docker engine, binfmt handlers, and a bootstrapped armhf base.

These tests need what `scripts/setup-host.sh` sets up; they fail (not skip) without it, since
CI always has it. Everything they create is removed at the end.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from rpibuild.build.base import BaseImage, ensure_base
from rpibuild.config import LoadedProfile, load_profile
from rpibuild.engine import Engine

ARMHF_MINIMAL = textwrap.dedent(
    """
    description: smallest armv7 base for the integration tests
    platform: linux/arm/v7
    base:
      bootstrap:
        suite: bookworm
        variant: minbase
    torch:
      source: none
    qpulib:
      enabled: false
    extension:
      enabled: false
    image:
      repository: rpibuild-test/armhf-minimal
    """
).lstrip()


@pytest.fixture(scope="session")
def armhf_profile(tmp_path_factory: pytest.TempPathFactory) -> LoadedProfile:
    path = tmp_path_factory.mktemp("profiles") / "armhf-minimal.yaml"
    path.write_text(ARMHF_MINIMAL, encoding="utf-8")
    return load_profile(path, env={})


@pytest.fixture(scope="session")
def armhf_base(engine: Engine, armhf_profile: LoadedProfile) -> Iterator[BaseImage]:
    """A real debootstrapped Debian armhf (armv7) base image, built once per test session."""
    base = ensure_base(armhf_profile.profile, engine)
    yield base
    engine.remove_image(base.image, force=True)


@pytest.fixture
def container_ids(engine: Engine) -> Iterator[set[str]]:
    """The ids of all containers before a test; the test asserts none were left behind."""
    yield {c.id for c in engine.client.containers.list(all=True)}


def profile_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "profile.yaml"
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path
