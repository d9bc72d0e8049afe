"""``rpibuild artifacts`` for real: build a minimal armv7 profile up to the extension stage.

No torch and no QPULib, so the extension is a pure-Python wheel and the build takes about
three minutes under QEMU (the integration tests cover ELF checks on a faked layout). The
second run must be all cache hits.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

from rpibuild.build.base import base_reference
from rpibuild.config import load_profile
from rpibuild.engine import DockerEngine

PROFILE = """\
description: minimal armv7 extension build (pure-Python torch_qpu, no torch, no QPULib)
platform: linux/arm/v7
base:
  bootstrap:
    suite: bookworm
    variant: minbase
apt:
  packages: [ca-certificates, python3, python3-venv]
  runtime_packages: [ca-certificates, python3]
network:
  ca_bundle: host
torch:
  source: none
qpulib:
  enabled: false
extension:
  enabled: true
image:
  repository: {repository}
"""


def artifacts(profile: Path, out: Path) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "rpibuild", "artifacts", "-p", str(profile), str(out), "--json"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout)


def test_artifacts_builds_the_extension_stage(tmp_path: Path) -> None:
    engine = DockerEngine.connect()
    repository = f"rpibuild-test/ext-build-{uuid.uuid4().hex[:8]}"
    path = tmp_path / "ext-min.yaml"
    path.write_text(PROFILE.format(repository=repository), encoding="utf-8")
    base = base_reference(load_profile(path, env={}).profile)
    had_base = engine.image(base) is not None
    extension = f"{repository}:ext-min-extension"
    try:
        manifest = artifacts(path, tmp_path / "first")
        info = engine.image(extension)
        assert info is not None and info.platform == "linux/arm/v7"
        assert manifest["image"]["reference"] == extension
        assert manifest["image"]["id"] == info.id
        wheels = [entry["path"] for entry in manifest["files"]]
        assert len(wheels) == 1 and wheels[0].startswith("wheels/torch_qpu-")
        assert wheels[0].endswith("-py3-none-any.whl")
        assert manifest["qpulib"]["enabled"] is False
        assert manifest["elf_check"] == {
            "expected": "ARM (40) 32-bit hard-float",
            "checked": 0,
            "mismatches": [],
        }
        assert manifest["versions"]["torch"] == "none"
        # Same image id: every RUN step came from the cache (a rerun would make new layers).
        again = artifacts(path, tmp_path / "second")
        assert again["image"]["id"] == info.id
        assert again["files"] == manifest["files"]
    finally:
        engine.remove_image(extension, force=True)
        if not had_base:
            engine.remove_image(base, force=True)
