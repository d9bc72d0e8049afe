"""Issue 25's shape, asserted on the plan and the rendered Dockerfile without an engine: the
target's packages live in content-keyed bases, a cross build runs no apt or pip under QEMU, and
torch's verification is cached apart from the extension."""

from __future__ import annotations

from pathlib import Path

import pytest

from rpibuild.build.base import base_key, base_reference
from rpibuild.config import load_profile
from rpibuild.planning.keys import stage_chain
from rpibuild.planning.plan import make_plan, render_planned
from rpibuild.planning.render import render
from tests.unit.dockerfile import instructions

CROSS_PROFILES = ("pi3b-arm64", "pi3b-armv7")


@pytest.fixture(autouse=True)
def _stored_armv7_wheel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The armv7 wheel in a store of the test's own, as a build has it once it compiled it
    (before that the build compiles first, then plans again with the wheel's package list)."""
    from rpibuild.torch_routes.debian import store

    monkeypatch.setenv("RPIBUILD_CACHE", str(tmp_path / "cache"))
    profile = load_profile("pi3b-armv7", env={}).profile
    exported = tmp_path / "exported"
    exported.mkdir()
    (exported / "torch-2.6.0-cp313-cp313-linux_armv7l.whl").write_bytes(b"wheel")
    (exported / "torch-runtime-packages.txt").write_text("libsleef3\nlibopenblas0-pthread\n")
    store(make_plan(profile).torch_key, profile.torch.version, exported)


def _target_runs(profile_name: str, *overrides: str) -> list[str]:
    """Every RUN of the target's stages (those not FROM the build platform)."""
    profile = load_profile(profile_name, list(overrides), env={}).profile
    plan = make_plan(profile)
    target_stages = {s.name for s in plan.stages.stages if not s.on_build_platform}
    runs, stage = [], ""
    for instruction in instructions(render_planned(profile, plan).dockerfile):
        if instruction.keyword == "FROM":
            stage = instruction.arguments.split()[-1]
        elif instruction.keyword == "RUN" and stage in target_stages:
            runs.append(f"{stage}: {instruction.arguments}")
    return runs


@pytest.mark.parametrize("name", CROSS_PROFILES)
def test_a_cross_build_runs_no_apt_and_no_pip_under_qemu(name: str) -> None:
    runs = _target_runs(name)
    assert runs, "the target still verifies"
    if name == "pi3b-armv7":  # the stored wheel's packages are in the base
        plan = make_plan(load_profile(name, env={}).profile)
        assert "libsleef3" in plan.base_profiles.build.base.bootstrap.packages  # type: ignore[union-attr]
    assert not [r for r in runs if "apt-get" in r], "an emulated apt step"
    assert not [r for r in runs if " pip " in r or "pip install" in r], "an emulated pip step"
    # What QEMU still runs: the torch smoke import, ldconfig, and the checks (verify).
    assert {r.split(":")[0] for r in runs} <= {"torch", "qpulib", "runtime", "verify-torch", "verify"}


def test_a_pulled_base_still_gets_its_packages_in_the_stages() -> None:
    overrides = ("base.bootstrap=null", "base.image=arm64v8/debian:trixie")
    runs = _target_runs("pi3b-arm64", *overrides)
    assert [r for r in runs if r.startswith("system:") and "apt-get install" in r]
    assert [r for r in runs if r.startswith("runtime:") and "apt-get install" in r]


def test_the_folded_package_set_is_in_the_base_key() -> None:
    def target_base(*overrides: str) -> str:
        profile = load_profile("pi3b-arm64", list(overrides), env={}).profile
        return base_reference(make_plan(profile).base_profiles.build)

    first = target_base()
    assert first == target_base()
    changed = {
        target_base("apt.packages=[ca-certificates,python3,python3-venv,python3-numpy,file]"),
        target_base("apt.runtime_packages=[ca-certificates,python3,python3-numpy,libgomp1,less]"),
        target_base("base.bootstrap.tool=debootstrap"),
    }
    assert first not in changed and len(changed) == 3
    # How fast or where it is built is not in it.
    assert first == target_base("torch.max_jobs=1") == target_base("image.repository=a/b")


def test_the_torch_wheels_debian_packages_are_folded_when_known(tmp_path: Path) -> None:
    from rpibuild.planning.bases import plan_bases
    from rpibuild.planning.stages import plan_stages

    profile = load_profile("pi3b-armv7", env={}).profile
    stages = plan_stages(profile)
    unknown = plan_bases(profile, stages, None)
    known = plan_bases(profile, stages, ("libsleef3", "libopenblas0"))
    assert not unknown.wheel_packages_folded and known.wheel_packages_folded
    assert "libsleef3" in known.runtime.base.bootstrap.packages  # type: ignore[union-attr]
    assert base_key(known.runtime) != base_key(unknown.runtime)


def test_a_target_that_compiles_gets_a_runtime_base_without_compilers() -> None:
    cross = make_plan(load_profile("pi3b-arm64", env={}).profile).base_profiles
    assert cross.runtime is cross.build  # one bootstrap: nothing to keep out of the runtime
    qemu = make_plan(load_profile("pi3b-arm64", ["build.cross=false"], env={}).profile).base_profiles
    assert qemu.runtime is not qemu.build
    assert "g++" in qemu.build.base.bootstrap.packages  # type: ignore[union-attr]
    assert "g++" not in qemu.runtime.base.bootstrap.packages  # type: ignore[union-attr]


@pytest.mark.parametrize("name", CROSS_PROFILES)
def test_torch_verification_does_not_depend_on_the_extension(name: str) -> None:
    """An extension edit reruns extension-build, extension and verify; verify-torch (the op
    sweep) is built from stages the extension never enters."""
    dockerfile = render(load_profile(name, env={}).profile).dockerfile
    torch_checks = set(stage_chain(dockerfile, "verify-torch"))
    assert "torch" in torch_checks
    assert not torch_checks & {"extension", "extension-build", "qpulib", "qpulib-build"}
    assert "verify-torch" in stage_chain(dockerfile, "verify")  # its report is carried in


def test_no_pip_upgrade_in_a_target_that_builds_nothing() -> None:
    cross = render(load_profile("pi3b-arm64", env={}).profile).dockerfile
    assert "install --upgrade" not in cross
    native = render(load_profile("host-emulator", env={}).profile).dockerfile  # compiles in place
    assert "pip install --upgrade 'pip>=23' wheel setuptools" in native
