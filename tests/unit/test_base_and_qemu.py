"""Pure parts of base images and binfmt handling (the real thing is in tests/integration)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from rpibuild.build.base import base_key, base_reference, bootstrap_command
from rpibuild.config import load_profile
from rpibuild.host import qemu
from rpibuild.platforms import get_platform


def test_base_key_follows_the_keyrings_bytes(tmp_path: Path) -> None:
    keyring = tmp_path / "keyring.gpg"
    keyring.write_bytes(b"one key")
    profile = load_profile("pi3b-arm64", [f"base.bootstrap.keyring={keyring}"], env={}).profile
    first = base_key(profile)
    keyring.write_bytes(b"another key")
    assert base_key(profile) != first


def test_base_key_follows_what_produces_the_base() -> None:
    profile = load_profile("pi3b-arm64", env={}).profile
    same = load_profile("pi3b-arm64", ["torch.version=2.6.0", "image.repository=x/y"], env={}).profile
    suite = load_profile("pi3b-arm64", ["base.bootstrap.suite=bookworm"], env={}).profile
    pkgs = load_profile("pi3b-arm64", ["base.bootstrap.packages=[python3]"], env={}).profile
    assert base_key(profile) == base_key(same)
    assert len({base_key(profile), base_key(suite), base_key(pkgs)}) == 3
    assert base_reference(profile).startswith("rpibuild/base:trixie-arm64-")
    for override in (
        "base.bootstrap.mirror=http://mirror.example/debian",
        "base.bootstrap.variant=buildd",
        "base.bootstrap.components=[main,contrib]",
    ):
        changed = load_profile("pi3b-arm64", [override], env={}).profile
        assert base_key(changed) != base_key(profile), override
    pulled = load_profile("pi3b-arm64", ["base.bootstrap=null", "base.image=arm64v8/debian:bookworm"], env={})
    assert base_reference(pulled.profile) == "arm64v8/debian:bookworm"


def test_bootstrap_commands() -> None:
    """mmdebstrap by default (apt natively, QEMU only for dpkg and maintainer scripts, dpkg
    under eatmydata); debootstrap when the profile asks for it."""
    overrides = ["base.bootstrap.mirror=http://mirror.example.invalid/raspbian", "torch.source=none"]
    profile = load_profile("pi3b-armv7", overrides, env={}).profile
    command = bootstrap_command(profile, Path("/t"))
    assert command[:4] == ["mmdebstrap", "--mode=root", "--format=directory", "--architectures=armhf"]
    assert "--variant=minbase" in command
    assert any(part.startswith("--hook-dir=") and part.endswith("eatmydata") for part in command)
    assert command[-3:] == ["trixie", "/t", "http://mirror.example.invalid/raspbian"]
    old = load_profile("pi3b-armv7", [*overrides, "base.bootstrap.tool=debootstrap"], env={}).profile
    command = bootstrap_command(old, Path("/t"))
    assert command[:2] == ["debootstrap", "--arch=armhf"]
    assert "--variant=minbase" in command
    assert command[-3:] == ["trixie", "/t", "http://mirror.example.invalid/raspbian"]
    assert base_key(old) != base_key(profile), "the tool is part of the base's key"


def test_a_foreign_mmdebstrap_base_defers_byte_compiling_and_the_ca_bundle_to_the_build_platform() -> None:
    """The defer hook runs as an essential and a customize hook for a foreign architecture
    only: a native base (and debootstrap, which has no hooks) bootstrap as before."""
    arm = load_profile("pi3b-arm64", env={}).profile
    command = bootstrap_command(arm, Path("/t"), Path("/recipe"))
    assert 'sh /recipe/defer.sh divert "$1"' in [p.removeprefix("--essential-hook=") for p in command]
    assert 'sh /recipe/defer.sh restore "$1"' in [p.removeprefix("--customize-hook=") for p in command]
    native = load_profile("pi3b-arm64", ["platform=linux/amd64", "verify.qemu_cpu=null"], env={}).profile
    old = load_profile("pi3b-arm64", ["base.bootstrap.tool=debootstrap"], env={}).profile
    for profile in (native, old):
        assert not any("defer.sh" in part for part in bootstrap_command(profile, Path("/t")))


def test_the_base_key_follows_the_defer_hooks_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Editing the hook or the finisher is another base (for a foreign base; a native one,
    which does not run them, keeps its key)."""
    home = Path(__file__).resolve().parents[2]
    arm = load_profile("pi3b-arm64", env={}).profile
    native = load_profile("pi3b-arm64", ["platform=linux/amd64", "verify.qemu_cpu=null"], env={}).profile
    before = base_key(arm), base_key(native)
    copy = tmp_path / "home"
    for folder in ("configs", "dockerfiles", "images/base"):
        shutil.copytree(home / folder, copy / folder)
    monkeypatch.setenv("RPIBUILD_HOME", str(copy))
    assert (base_key(arm), base_key(native)) == before, "same bytes, same keys"
    with (copy / "images/base/finish.py").open("a") as finish:
        finish.write("# edited\n")
    assert base_key(arm) != before[0]
    assert base_key(native) == before[1]


def test_platform_table() -> None:
    assert get_platform("linux/arm64/v8").name == "linux/arm64"
    v7 = get_platform("linux/arm/v7")
    assert (v7.binfmt, v7.qemu_cpu, v7.uname, v7.slug) == ("arm", "cortex-a7", "armv7l", "armv7")
    with pytest.raises(ValueError, match="unknown platform"):
        get_platform("linux/mips")


def test_handler_status_parsing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in binfmt_misc folder: the kernel's file format, without touching the kernel."""
    monkeypatch.setattr(qemu, "BINFMT_DIR", tmp_path)
    (tmp_path / "register").write_text("")
    (tmp_path / "qemu-arm").write_text(
        "enabled\ninterpreter /bin/sh\nflags: POF\noffset 0\nmagic 7f454c46\nmask ffffffff\n"
    )
    (tmp_path / "qemu-aarch64").write_text("disabled\ninterpreter /nonexistent\nflags: P\n")
    arm, aarch64 = qemu.status("arm"), qemu.status("aarch64")
    assert arm.usable and arm.problem() is None
    assert not aarch64.usable and aarch64.problem() == "registered but disabled"
    assert qemu.status("mips").problem() == "not registered"


def test_a_second_build_waits_for_the_first_bootstrap_and_reuses_its_base(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two builds needing one new base: the second waits on the host lock, then finds the image
    the first made instead of bootstrapping it again."""
    import threading

    from rpibuild.build import base
    from rpibuild.host.locks import LOCK_DIR_ENV, host_lock
    from tests.unit.fake_engine import FakeEngine

    monkeypatch.setenv(LOCK_DIR_ENV, str(tmp_path / "locks"))
    profile = load_profile("pi3b-arm64", env={}).profile
    reference = base_reference(profile)
    engine = FakeEngine()
    bootstraps: list[str] = []
    monkeypatch.setattr(base, "bootstrap_base", lambda *a, **k: bootstraps.append("again") or "sha256:0")
    said: list[str] = []
    results: list[base.BaseImage] = []
    with host_lock(base.bootstrap_name(profile), on_wait=lambda: said.append("never")):
        second = threading.Thread(
            target=lambda: results.append(base.ensure_base(profile, engine, progress=said.append))
        )
        second.start()
        second.join(timeout=2)
        assert second.is_alive(), "the second build did not wait for the first"
        engine.add_image(reference, "linux/arm64")  # the first build's bootstrap finished
    second.join(timeout=10)
    assert not second.is_alive()
    assert said == [f"waiting: another rpibuild is bootstrapping {reference}"]
    assert bootstraps == [] and results[0].cached


def test_lock_names_are_plain() -> None:
    from rpibuild.host.locks import host_lock

    with pytest.raises(ValueError), host_lock("../etc/passwd"):
        pass


def test_a_non_root_user_bootstraps_in_a_container(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bootstrapping needs root; a CI job's user gets the helper container (the uid is faked:
    a test cannot drop root here; the tool is "installed" for the same reason)."""
    from rpibuild.build.base import DEBOOTSTRAP_MODE_ENV, bootstrap_on_host

    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.delenv(DEBOOTSTRAP_MODE_ENV, raising=False)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert bootstrap_on_host()
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert not bootstrap_on_host()
    monkeypatch.setenv(DEBOOTSTRAP_MODE_ENV, "host")
    assert bootstrap_on_host()  # asked for explicitly: the user's call


@pytest.mark.parametrize(
    ("mode", "uid", "installed", "where"),
    [
        ("auto", 0, True, "host"),
        ("auto", 1000, True, "not root"),
        ("auto", 0, False, "not installed"),
        ("container", 0, True, "DEBOOTSTRAP=container"),
    ],
)
def test_doctor_says_where_bases_are_bootstrapped_as_the_bootstrap_decides(
    monkeypatch: pytest.MonkeyPatch, mode: str, uid: int, installed: bool, where: str
) -> None:
    """One decision (bootstrap_on_host) for the bootstrap and for doctor's line about it."""
    from rpibuild.build.base import DEBOOTSTRAP_MODE_ENV, bootstrap_on_host
    from rpibuild.host.doctor import check_bootstrap_tool

    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}" if installed else None)
    monkeypatch.setenv(DEBOOTSTRAP_MODE_ENV, mode)
    monkeypatch.setattr(os, "geteuid", lambda: uid)
    check = check_bootstrap_tool()
    assert check.ok
    assert bootstrap_on_host() == (where == "host")
    if where == "host":
        assert check.detail == "/usr/bin/mmdebstrap"
    else:
        assert where in check.detail and "helper container" in check.detail


def test_doctor_fails_a_host_bootstrap_asked_for_without_the_tool(monkeypatch: pytest.MonkeyPatch) -> None:
    from rpibuild.build.base import DEBOOTSTRAP_MODE_ENV
    from rpibuild.host.doctor import check_bootstrap_tool

    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setenv(DEBOOTSTRAP_MODE_ENV, "host")
    check = check_bootstrap_tool()
    assert not check.ok and check.fix == "apt-get install -y mmdebstrap"
