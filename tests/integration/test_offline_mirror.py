"""`rpibuild sources fetch --all -o DIR` makes a mirror a host without GitHub or the package
index builds from: gathered here, then a real build with the index unreachable.

The profile is the smallest that still runs pip in the target (the venv's pip, wheel and
setuptools, which a target that builds wheels gets): armv7 on the pi3b-armv7 base, no torch,
no QPULib, the extension as a pure-Python wheel built on the target.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from rpibuild.build.offline import requirements
from rpibuild.config import load_profile

PROFILE = """
extends: pi3b-armv7
description: armv7 with pip and nothing else, built from a gathered mirror
apt:
  packages: [python3-venv]
  runtime_packages: [python3]
network:
  # Unreachable (the container's own loopback): the build must not need it.
  pip_index_url: http://127.0.0.1:9/simple
torch:
  source: none
qpulib:
  enabled: false
extension:
  enabled: true
image:
  repository: rpibuild-test/offline
"""


def rpibuild(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "rpibuild", *args],
        capture_output=True,
        text=True,
        env=environment,
        check=False,
    )


def test_a_profile_builds_from_the_gathered_folder_with_the_index_unreachable(tmp_path: Path) -> None:
    profile = tmp_path / "offline.yaml"
    profile.write_text(PROFILE, encoding="utf-8")
    mirror = tmp_path / "mirror"
    # Gathered on a host that reaches the package index (the profile's own is unreachable).
    gathered = rpibuild(
        "sources",
        "fetch",
        "--all",
        "-o",
        str(mirror),
        "-p",
        str(profile),
        "--set",
        "network.pip_index_url=null",
        "--json",
    )
    assert gathered.returncode == 0, gathered.stderr[-3000:]
    wheels = json.loads(gathered.stdout)["wheels"]
    for name in ("pip", "wheel", "setuptools"):
        assert any(w.startswith(f"{name}-") for w in wheels), f"no {name} wheel in {wheels}"
    assert sorted(p.name for p in (mirror / "pip").iterdir()) == sorted(wheels)

    built = rpibuild(
        "build", "-p", str(profile), "--json", "--no-cache", env={"RPIBUILD_SOURCE_MIRROR": str(mirror)}
    )
    try:
        assert built.returncode == 0, built.stderr[-3000:]
        log = Path(json.loads(built.stdout)["log_file"]).read_text(encoding="utf-8")
        assert "Looking in links: /opt/rpibuild/pip-mirror" in log
        assert "127.0.0.1:9" not in log, "pip went to the package index"
    finally:
        for tag in json.loads(built.stdout).get("tags", []) if built.returncode == 0 else []:
            subprocess.run(["docker", "rmi", "--no-prune", tag], capture_output=True, check=False)


def test_what_is_gathered_follows_the_profile() -> None:
    default = requirements(load_profile("pi3b-arm64").profile)
    assert default[:3] == ["pip>=23", "wheel", "setuptools"] and "torch==2.9.1" in default
    bare = requirements(load_profile("pi3b-arm64", ["torch.source=none", "verify.enabled=false"]).profile)
    assert bare == ["pip>=23", "wheel", "setuptools"]


def test_dependencies_are_chosen_for_the_target_not_this_host(tmp_path: Path) -> None:
    import zipfile

    from rpibuild.build.offline import target_dependencies

    wheel = tmp_path / "demo-1.0-py3-none-any.whl"
    metadata = "\n".join(
        [
            "Metadata-Version: 2.1",
            "Name: demo",
            "Version: 1.0",
            'Requires-Dist: nvidia-cublas; platform_system == "Linux" and platform_machine == "x86_64"',
            "Requires-Dist: sympy>=1.13",
            'Requires-Dist: tomli; python_version < "3.11"',
            'Requires-Dist: opt-einsum; extra == "opt"',
            "",
        ]
    )
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("demo-1.0.dist-info/METADATA", metadata)
    arm64 = load_profile("pi3b-arm64").profile  # trixie: Python 3.13, aarch64
    assert target_dependencies(arm64, [wheel]) == ["sympy>=1.13"]
