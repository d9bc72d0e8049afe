"""The build plan (rpibuild.planning.plan): asserted on without an engine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rpibuild.config import load_profile
from rpibuild.planning.plan import make_plan, render_planned
from rpibuild.planning.render import render
from rpibuild.planning.stages import TARGET_STAGES
from rpibuild.torch_routes.debian import store


def plan_of(name: str, *overrides: str):
    return make_plan(load_profile(name, list(overrides), env={}).profile)


def test_armv7_compiles_torch_on_the_build_platform_and_runs_only_the_target_under_qemu() -> None:
    plan = plan_of("pi3b-armv7")
    stages = plan.stages
    assert stages.cross and stages.build_platform == "linux/amd64"
    assert stages.route.name == "debian" and stages.route.compiled_on == "build platform"
    compile_torch = ("cross", "torch-source", "torch-c10", "torch-compile", "distcc-helper")
    install = ("torch-install", "qpulib-build")
    assert stages.names == (*compile_torch, *install, "extension-build", *TARGET_STAGES)
    places = {s.name: (s.platform, s.emulated) for s in stages.stages}
    assert places["torch-source"] == ("linux/amd64", False)
    assert places["verify"] == ("linux/arm/v7", True)
    assert stages.verify_cpu == "cortex-a7"
    assert [b.role for b in plan.bases] == ["target", "build platform"]
    assert [b.platform for b in plan.bases] == ["linux/arm/v7", "linux/amd64"]
    assert set(plan.keys) == {"base target", "base build platform", "torch wheel"}
    # The key the plan prints is the one the Dockerfile uses.
    assert (
        f"/var/cache/rpibuild/torch/{plan.torch_key} "
        in render(load_profile("pi3b-armv7", env={}).profile).dockerfile
    )
    assert plan.torch_wheel is None
    assert plan.tags[0] == "rpibuild/pi3b-armv7:pi3b-armv7"
    assert plan.labels["io.rpibuild.torch.source"] == "debian"


def test_a_stored_wheel_takes_the_compile_stages_out_except_for_a_compile_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RPIBUILD_CACHE", str(tmp_path / "cache"))  # a store of its own
    profile = load_profile("pi3b-armv7", env={}).profile
    key = make_plan(profile).torch_key
    exported = tmp_path / "exported"
    exported.mkdir()
    (exported / "torch-2.6.0-cp313-cp313-linux_armv7l.whl").write_bytes(b"wheel")
    (exported / "torch-runtime-packages.txt").write_text("libsleef3\n")
    stored = store(key, profile.torch.version, exported)
    plan = make_plan(profile)
    assert plan.torch_wheel == stored and plan.torch_key == key
    assert "torch-source" not in plan.stages.names and "torch-install" in plan.stages.names
    assert "torch-source" in plan.stages.targets  # still a stage a build may stop at
    # What `rpibuild render` prints and a build uses: the stored wheel, no compile stages.
    text = render_planned(profile, plan).dockerfile
    assert f"COPY torch/{stored.wheel.name} /opt/rpibuild/wheels/" in text and " AS torch-source" not in text
    compiling = make_plan(profile, target="torch-c10")
    assert compiling.torch_wheel is None and "torch-c10" in compiling.stages.names


def test_arm64_installs_the_pinned_wheel_natively_and_has_no_wheel_key() -> None:
    plan = plan_of("pi3b-arm64")
    assert plan.stages.route.name == "pypi" and plan.stages.torch_installed_natively
    assert plan.stages.names[:4] == ("cross", "torch-install", "qpulib-build", "extension-build")
    assert "torch wheel" not in plan.keys and plan.torch_key == ""
    assert plan.stages.platform_of("qpulib-build") == "linux/amd64"
    assert plan.stages.platform_of(None) == plan.stages.platform_of("verify") == "linux/arm64"
    assert plan.sources[0].origin == "torch==2.9.1 from the package index"


def test_without_cross_everything_runs_on_the_target() -> None:
    qemu = plan_of("pi3b-arm64", "build.cross=false")
    assert not qemu.stages.cross and qemu.stages.compiles_on_target
    assert all(s.platform == "linux/arm64" and s.emulated for s in qemu.stages.stages)
    assert [b.role for b in qemu.bases] == ["target", "runtime"]  # compilers: build base only
    native = plan_of("host-emulator")
    assert not native.stages.cross and not any(s.emulated for s in native.stages.stages)
    assert native.stages.verify_cpu is None


def test_secrets_are_named_never_shown_and_url_credentials_are_masked() -> None:
    plan = plan_of(
        "pi3b-arm64",
        "network.pip_index_url=https://user:s3cret@pypi.example/simple",
        "qpulib.url=https://user:s3cret@git.example/QPULib/{commit}.tar.gz",
    )
    assert plan.secrets == ("pip-conf",)
    text = json.dumps(plan.as_dict()) + "\n".join(plan.lines())
    assert "s3cret" not in text and "https://***@git.example/" in text


def test_plan_command_prints_the_plan_and_json() -> None:
    run = [sys.executable, "-m", "rpibuild", "plan", "-p", "pi3b-armv7"]
    human = subprocess.run(run, capture_output=True, text=True, check=False)
    assert human.returncode == 0, human.stderr
    assert "torch-source     build platform, native" in human.stdout
    assert "verify           linux/arm/v7 under QEMU" in human.stdout
    data = json.loads(subprocess.run([*run, "--json"], capture_output=True, text=True, check=True).stdout)
    assert data["torch"]["route"] == "debian" and data["keys"]["torch wheel"]
    assert [s["name"] for s in data["stages"]][-1] == "runtime"


def test_a_builder_with_a_native_node_for_the_target_runs_its_stages_without_qemu() -> None:
    from rpibuild.engine.buildx import Builder, BuilderNode

    profile = load_profile("pi3b-arm64", env={}).profile
    local = Builder(
        "default", "docker", (BuilderNode("default", "default", "running", ("linux/amd64", "linux/arm64")),)
    )
    # A second node whose own platform is arm64 (a Pi or an arm server as a buildx node).
    arm = Builder(
        "farm",
        "remote",
        (
            BuilderNode("x86", "tcp://x86:1234", "running", ("linux/amd64", "linux/arm64")),
            BuilderNode("arm", "tcp://arm:1234", "running", ("linux/arm64", "linux/arm/v7")),
        ),
    )
    assert local.native_platforms == ("linux/amd64",) and arm.native_platforms == (
        "linux/amd64",
        "linux/arm64",
    )
    emulated = make_plan(profile, builder=local)
    native = make_plan(profile, builder=arm)
    where = {s.name: s.emulated for s in emulated.stages.stages}
    assert where["verify"] and where["system"] and not where["cross"]
    assert not any(s.emulated for s in native.stages.stages)
    assert native.as_dict()["builder"]["native_platforms"] == ["linux/amd64", "linux/arm64"]
    assert "farm (driver remote), native: linux/amd64, linux/arm64" in "\n".join(native.lines())
    # Where stages run is not part of what goes into a stored wheel: the keys are the same.
    assert native.keys == emulated.keys
    # Without the engine's facts the plan says so, and assumes QEMU.
    blind = make_plan(profile, builder_unknown="buildx is not installed")
    assert blind.as_dict()["builder"] is None
    assert "not asked (buildx is not installed)" in "\n".join(blind.lines())
    assert {s.name: s.emulated for s in blind.stages.stages} == where


def test_plan_names_an_unknown_builder_as_a_usage_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "rpibuild", "plan", "-p", "pi3b-arm64", "--builder", "no-such-builder"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "no buildx builder named 'no-such-builder'" in result.stderr
    assert "Traceback" not in result.stderr
