"""``rpibuild rootfs`` and scripts/pi-chroot.sh against a real armhf image, engine and QEMU.

A small image derived from the bootstrapped base carries what an export must keep (a setuid
file, hard links, symlinks, a file capability, odd owners) and what it must strip (a QEMU
binary, binfmt interpreters, build proxies). The export is compared file by file with the
docker CLI's own ``docker export`` of the same image.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from _derived import build_derived, capability_tar, docker_export

from rpibuild.build.base import BaseImage, ensure_base
from rpibuild.config import LoadedProfile, load_profile
from rpibuild.engine import Engine
from rpibuild.errors import ImageMissing
from rpibuild.export.rootfs import export_image, export_profile

REPO = Path(__file__).resolve().parents[2]
PI_CHROOT = REPO / "scripts" / "pi-chroot.sh"
PI_CHECK = REPO / "scripts" / "pi-check.sh"
CAPABILITY_XATTR = "security.capability"
PAX_CAPABILITY = "SCHILY.xattr." + CAPABILITY_XATTR

DOCKERFILE = """\
FROM {base}
ADD caps.tar /usr/local/bin/
RUN set -e; \\
    cp /bin/ls /usr/local/bin/suid-ls; chmod 4755 /usr/local/bin/suid-ls; \\
    cp /bin/ls /usr/local/bin/sgid-ls; chmod 2711 /usr/local/bin/sgid-ls; \\
    mkdir -p /opt/data /usr/libexec/qemu-binfmt; \\
    echo payload > /opt/data/hard-a; ln /opt/data/hard-a /opt/data/hard-b; \\
    chown 1234:5678 /opt/data/hard-a; chmod 0640 /opt/data/hard-a; \\
    ln -s ../../opt/data/hard-a /usr/local/link-relative; ln -s /opt/data /usr/local/link-absolute; \\
    mkdir -m 1777 /opt/data/sticky; mkfifo /opt/data/fifo; \\
    cp /bin/true /usr/bin/qemu-arm-static; ln /usr/bin/qemu-arm-static /usr/bin/qemu-z-link; \\
    cp /bin/true /usr/libexec/qemu-binfmt/arm-binfmt-P; \\
    printf 'Acquire::http::Proxy "http://proxy.example:3128";\\n' > /etc/apt/apt.conf.d/01proxy; \\
    printf 'APT::Install-Recommends "false";\\nAcquire::https::Proxy "http://p.example:3128";\\n' \\
      > /etc/apt/apt.conf.d/02mixed; \\
    printf 'PATH="/usr/local/bin:/usr/bin:/bin"\\nhttp_proxy=http://p.example:3128\\n' >/etc/environment; \\
    printf '[global]\\nproxy = http://proxy.example:3128\\n' > /etc/pip.conf
"""
# Dropped whole, and rewritten (kept with fewer lines); everything else must be identical.
STRIPPED = {
    ".dockerenv",
    "etc/resolv.conf",
    "etc/hostname",
    "usr/bin/qemu-arm-static",
    "usr/bin/qemu-z-link",  # a hard link to a stripped file (which comes first in the tar)
    "usr/libexec/qemu-binfmt",
    "usr/libexec/qemu-binfmt/arm-binfmt-P",
    "etc/apt/apt.conf.d/01proxy",
    "etc/pip.conf",
}
REWRITTEN = {"etc/apt/apt.conf.d/02mixed", "etc/environment", "etc/hosts"}
# Docker makes these per container (its "init layer"): two exports differ in their times.
INIT_LAYER = {"dev", "dev/console", "dev/pts", "dev/shm", "etc", "etc/mtab", "proc", "sys"}


@pytest.fixture(autouse=True)
def _remove_outputs(tmp_path: Path) -> Iterator[None]:
    """Exported roots are hundreds of MB: don't leave them to pytest's tmp retention."""
    yield
    shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.fixture(scope="module")
def test_image(
    engine: Engine, armhf_base: BaseImage, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    context = tmp_path_factory.mktemp("rootfs-image")
    tag = f"rpibuild-test/rootfs-export:{uuid.uuid4().hex[:10]}"
    caps = capability_tar(context.parent / f"{context.name}-caps", "cap-tool")
    build_derived(engine, context, DOCKERFILE.format(base=armhf_base.image), tag, {"caps.tar": caps})
    yield tag
    engine.remove_image(tag, force=True)


@pytest.fixture(scope="module")
def reference(test_image: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tarfile.TarInfo]:
    """Every member of the docker CLI's export of the test image, by normalised name."""
    path = docker_export(test_image, tmp_path_factory.mktemp("reference") / "export.tar")
    with tarfile.open(path) as archive:
        members = {m.name.removeprefix("./").rstrip("/"): m for m in archive.getmembers()}
    path.unlink()
    return members


@pytest.fixture(scope="module")
def exported_folder(
    engine: Engine, test_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, object]]:
    out = tmp_path_factory.mktemp("export") / "root"
    result = export_image(engine, test_image, out, platform="linux/arm/v7", host="192.0.2.10")
    yield out, result
    _assert_nothing_mounted(out)
    shutil.rmtree(out.parent)


def _assert_nothing_mounted(path: Path) -> None:
    """No mount at or under ``path``, and no pi-chroot.sh lock file for it."""
    prefix = str(path.resolve()) if path.exists() else str(path)
    left = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    assert not [p for p in left if p == prefix or p.startswith(prefix + "/")], "mounts left behind"
    lock = Path("/run/lock") / ("pi-chroot" + prefix.replace("/", "%") + ".lock")
    assert not lock.exists(), f"lock file left behind: {lock}"


def _capability(info: tarfile.TarInfo) -> bytes | None:
    value = info.pax_headers.get(PAX_CAPABILITY)
    return None if value is None else value.encode("utf-8", "surrogateescape")


# ---------------------------------------------------------------- the folder export


def test_folder_matches_docker_export(
    exported_folder: tuple[Path, object], reference: dict[str, tarfile.TarInfo]
) -> None:
    out, _ = exported_folder
    expected = {name for name in reference if name} - STRIPPED
    found = {
        str(Path(dirpath, entry).relative_to(out))
        for dirpath, dirs, files in os.walk(out)
        for entry in dirs + files
    }
    assert found == expected
    inodes: dict[str, int] = {}
    for name in sorted(expected):
        info, st = reference[name], os.lstat(out / name)
        inodes[name] = st.st_ino
        assert (st.st_uid, st.st_gid) == (info.uid, info.gid), name
        if info.islnk():
            target = info.linkname.removeprefix("./")
            assert st.st_ino == os.lstat(out / target).st_ino, f"{name} is not a hard link of {target}"
            continue
        assert stat.S_IMODE(st.st_mode) == stat.S_IMODE(info.mode) or name in REWRITTEN, f"{name}: mode"
        if info.issym():
            assert stat.S_ISLNK(st.st_mode) and os.readlink(out / name) == info.linkname, name
        elif info.isdir():
            assert stat.S_ISDIR(st.st_mode), name
        elif info.isfifo():
            assert stat.S_ISFIFO(st.st_mode), name
        elif info.ischr():
            assert stat.S_ISCHR(st.st_mode), name
            assert (os.major(st.st_rdev), os.minor(st.st_rdev)) == (info.devmajor, info.devminor)
        else:
            assert stat.S_ISREG(st.st_mode), name
            if name not in REWRITTEN:
                assert st.st_size == info.size, name
            if name not in REWRITTEN | INIT_LAYER:
                assert int(st.st_mtime) == int(info.mtime), name
        if not info.issym():
            try:
                got = os.getxattr(out / name, CAPABILITY_XATTR, follow_symlinks=False)
            except OSError:
                got = None
            assert got == _capability(info), f"{name}: file capability"


def test_folder_keeps_the_special_bits(exported_folder: tuple[Path, object]) -> None:
    out, _ = exported_folder
    assert stat.S_IMODE(os.lstat(out / "usr/local/bin/suid-ls").st_mode) == 0o4755
    assert stat.S_IMODE(os.lstat(out / "usr/local/bin/sgid-ls").st_mode) == 0o2711
    assert stat.S_IMODE(os.lstat(out / "opt/data/sticky").st_mode) == 0o1777
    hard = os.lstat(out / "opt/data/hard-a")
    assert (hard.st_uid, hard.st_gid, hard.st_nlink) == (1234, 5678, 2)
    assert os.lstat(out / "opt/data/hard-b").st_ino == hard.st_ino
    assert os.readlink(out / "usr/local/link-absolute") == "/opt/data"
    getcap = subprocess.run(["getcap", str(out / "usr/local/bin/cap-tool")], capture_output=True, text=True)
    assert "cap_net_raw" in getcap.stdout, getcap


def test_folder_strips_what_must_not_reach_the_pi(exported_folder: tuple[Path, object]) -> None:
    out, result = exported_folder
    for name in STRIPPED:
        assert not os.path.lexists(out / name), name
    assert (out / "etc/apt/apt.conf.d/02mixed").read_text() == 'APT::Install-Recommends "false";\n'
    assert (out / "etc/environment").read_text() == 'PATH="/usr/local/bin:/usr/bin:/bin"\n'
    assert "localhost" in (out / "etc/hosts").read_text()
    stripped = {path for path, _why in result.stats.stripped}  # type: ignore[attr-defined]
    assert STRIPPED | (REWRITTEN - {"etc/hosts"}) <= stripped | {"etc/hosts"}
    assert result.nfs.chroot == f"sudo scripts/pi-chroot.sh 192.0.2.10:{out.resolve()}"  # type: ignore[attr-defined]
    assert result.nfs.exports.startswith(f"{out.resolve()} *(rw,")  # type: ignore[attr-defined]


# ---------------------------------------------------------------- tarballs


def _open_tarball(path: Path) -> tarfile.TarFile:
    if path.name.endswith(".tar.zst"):
        plain = path.with_name(path.name.removesuffix(".zst"))
        subprocess.run(["zstd", "-q", "-d", str(path), "-o", str(plain)], check=True)
        return tarfile.open(plain)
    return tarfile.open(path)


@pytest.mark.parametrize("suffix", [".tar", ".tar.gz", ".tar.zst"])
def test_tarball_round_trips(
    engine: Engine,
    test_image: str,
    reference: dict[str, tarfile.TarInfo],
    tmp_path: Path,
    suffix: str,
    container_ids: set[str],
) -> None:
    out = tmp_path / f"root{suffix}"
    result = export_image(engine, test_image, out, platform="linux/arm/v7")
    assert result.format == suffix
    assert not (tmp_path / f"root{suffix}.partial").exists()
    with _open_tarball(out) as archive:
        got = {m.name.removeprefix("./").rstrip("/"): m for m in archive}
    assert set(got) == {n for n in reference if n} - STRIPPED
    for name, member in got.items():
        ref = reference[name]
        assert (member.type, member.uid, member.gid, member.linkname) == (
            ref.type,
            ref.uid,
            ref.gid,
            ref.linkname,
        ), name
        if name not in REWRITTEN:
            assert (member.mode, member.size) == (ref.mode, ref.size), name
        if name not in REWRITTEN | INIT_LAYER:
            assert member.mtime == ref.mtime, name
        assert _capability(member) == _capability(ref), name
    assert _capability(got["usr/local/bin/cap-tool"]) is not None
    assert {c.id for c in engine.client.containers.list(all=True)} <= container_ids


def test_tarball_extracts_as_a_root_with_capabilities(
    engine: Engine, test_image: str, tmp_path: Path
) -> None:
    out = tmp_path / "root.tar.zst"
    export_image(engine, test_image, out)
    target = tmp_path / "unpacked"
    target.mkdir()
    subprocess.run(
        [
            "tar",
            "--extract",
            f"--file={out}",
            f"--directory={target}",
            "--numeric-owner",
            "--same-owner",
            "--preserve-permissions",
            "--xattrs",
            "--xattrs-include=*",
        ],
        check=True,
    )
    getcap = subprocess.run(
        ["getcap", str(target / "usr/local/bin/cap-tool")], capture_output=True, text=True
    )
    assert "cap_net_raw" in getcap.stdout
    assert stat.S_IMODE(os.lstat(target / "usr/local/bin/suid-ls").st_mode) == 0o4755


# ---------------------------------------------------------------- failures and clean-up


def test_interrupted_export_leaves_nothing(
    engine: Engine, test_image: str, tmp_path: Path, container_ids: set[str]
) -> None:
    def interrupt(read: int, written: int) -> None:
        raise KeyboardInterrupt

    for out in (tmp_path / "folder", tmp_path / "root.tar.zst"):
        with pytest.raises(KeyboardInterrupt):
            export_image(engine, test_image, out, progress=interrupt)
        assert not out.exists(), out
        assert not list(tmp_path.glob("*.partial"))
    assert {c.id for c in engine.client.containers.list(all=True)} <= container_ids


def test_missing_image_says_how_to_build_it(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "never-built.yaml"
    path.write_text(
        "platform: linux/arm/v7\nbase: {bootstrap: {suite: bookworm}}\ntorch: {source: none}\n"
        "qpulib: {enabled: false}\nimage: {repository: rpibuild-test/never-built}\n",
        encoding="utf-8",
    )
    profile = load_profile(path, env={}).profile
    with pytest.raises(ImageMissing) as info:
        export_profile(profile, engine, tmp_path / "out.tar")
    assert info.value.hint == "rpibuild build -p never-built"
    cli = subprocess.run(
        [sys.executable, "-m", "rpibuild", "rootfs", "-p", str(path), str(tmp_path / "out.tar")],
        capture_output=True,
        text=True,
    )
    assert cli.returncode == ImageMissing.exit_code
    assert "rpibuild build -p never-built" in cli.stderr
    assert "Traceback" not in cli.stderr
    assert not (tmp_path / "out.tar").exists()


def test_cli_exports_the_profile_image(
    engine: Engine, test_image: str, tmp_path: Path, container_ids: set[str]
) -> None:
    path = tmp_path / "exported.yaml"
    path.write_text(
        "platform: linux/arm/v7\nbase: {bootstrap: {suite: bookworm}}\ntorch: {source: none}\n"
        "qpulib: {enabled: false}\nimage: {repository: rpibuild-test/rootfs-cli, tags: ['{profile}']}\n",
        encoding="utf-8",
    )
    engine.tag(test_image, "rpibuild-test/rootfs-cli:exported")
    try:
        out = tmp_path / "root.tar.gz"
        cli = subprocess.run(
            [sys.executable, "-m", "rpibuild", "rootfs", "-p", str(path), str(out), "--nfs-host", "10.0.0.2"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert "sudo scripts/pi-chroot.sh 10.0.0.2:/srv/rpibuild/root" in cli.stdout
        assert "nfsroot=" not in cli.stdout and "cmdline" not in cli.stdout  # not a boot root
        assert "/srv/rpibuild/root *(rw,sync,no_subtree_check,no_root_squash)" in cli.stdout
        assert "stripped /usr/bin/qemu-arm-static" in cli.stderr
        data = json.loads(
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "rpibuild",
                    "rootfs",
                    "-p",
                    str(path),
                    str(tmp_path / "r.tar"),
                    "--json",
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        assert data["image"] == "rpibuild-test/rootfs-cli:exported"
        assert data["bytes"] == (tmp_path / "r.tar").stat().st_size
        assert any(s["path"] == "/usr/bin/qemu-arm-static" for s in data["stripped"])
    finally:
        engine.remove_image("rpibuild-test/rootfs-cli:exported")
    assert {c.id for c in engine.client.containers.list(all=True)} <= container_ids


# ---------------------------------------------------------------- scripts/pi-chroot.sh


@pytest.fixture(scope="module")
def base_root(
    engine: Engine,
    armhf_profile: LoadedProfile,
    armhf_base: BaseImage,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Path]:
    out = tmp_path_factory.mktemp("base-root") / "root"
    # Ensured again, not assumed: one CI run found the session's base gone by this point (the
    # cause is not known yet; see the session notes).
    base = ensure_base(armhf_profile.profile, engine)
    export_image(engine, base.image, out, platform="linux/arm/v7")
    yield out
    _assert_nothing_mounted(out)
    shutil.rmtree(out.parent)


def _processes_in(root: Path) -> list[int]:
    """Pids whose root directory is ``root`` (what a chroot left running)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "root") == str(root.resolve()):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _wait_for_mounts(root: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    prefix = str(root.resolve()) + "/"
    while time.monotonic() < deadline:
        if prefix + "proc" in Path("/proc/mounts").read_text() and _processes_in(root):
            return
        time.sleep(0.2)
    raise AssertionError("pi-chroot.sh did not set up its mounts")


def test_pi_chroot_runs_arm_code_and_unmounts(base_root: Path) -> None:
    result = subprocess.run(
        ["bash", str(PI_CHROOT), str(base_root), "--", "uname", "-m"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "armv7l"
    _assert_nothing_mounted(base_root)
    assert not (base_root / "etc/resolv.conf").exists(), "the host's resolv.conf was left in the root"


def test_pi_chroot_sees_dev_proc_sys_and_dns(base_root: Path) -> None:
    script = "test -c /dev/null && test -e /proc/self/status && test -d /sys/class && cat /etc/resolv.conf"
    result = subprocess.run(
        ["bash", str(PI_CHROOT), str(base_root), "--", "/bin/sh", "-c", script],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == Path("/etc/resolv.conf").read_text()
    _assert_nothing_mounted(base_root)


def test_pi_chroot_passes_the_exit_status_and_cleans_up(base_root: Path) -> None:
    result = subprocess.run(["bash", str(PI_CHROOT), str(base_root), "--", "/bin/sh", "-c", "exit 7"])
    assert result.returncode == 7
    _assert_nothing_mounted(base_root)
    missing = subprocess.run(
        ["bash", str(PI_CHROOT), str(base_root), "--", "/no/such/command"], capture_output=True, text=True
    )
    assert missing.returncode != 0
    _assert_nothing_mounted(base_root)


def test_pi_chroot_cleans_up_when_terminated(base_root: Path) -> None:
    process = subprocess.Popen(["bash", str(PI_CHROOT), str(base_root), "--", "sleep", "120"])
    try:
        _wait_for_mounts(base_root)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 128 + signal.SIGTERM
    finally:
        if process.poll() is None:
            process.kill()
    _assert_nothing_mounted(base_root)
    assert not _processes_in(base_root), "the command was left running"
    assert not list((base_root / "etc").glob("resolv.conf*"))


def test_pi_chroot_recovers_after_a_kill(base_root: Path) -> None:
    """SIGKILL leaves mounts (no trap can run); the next run removes them first."""
    process = subprocess.Popen(["bash", str(PI_CHROOT), str(base_root), "--", "sleep", "120"])
    try:
        _wait_for_mounts(base_root)
        process.kill()
        process.wait(timeout=30)
        for pid in _processes_in(base_root):
            os.kill(pid, signal.SIGKILL)
        mounts = Path("/proc/mounts").read_text()
        assert str(base_root.resolve()) + "/proc" in mounts, "the kill should have left mounts behind"
        again = subprocess.run(
            ["bash", str(PI_CHROOT), str(base_root), "--", "true"], capture_output=True, text=True
        )
        assert again.returncode == 0, again.stderr
        assert "earlier run" in again.stderr
        _assert_nothing_mounted(base_root)
        assert not list((base_root / "etc").glob("resolv.conf*"))
    finally:
        subprocess.run(["bash", str(PI_CHROOT), "--cleanup", str(base_root)], check=False)


def test_pi_chroot_refuses_bad_roots(tmp_path: Path) -> None:
    for root in ("/", str(tmp_path / "missing")):
        result = subprocess.run(["bash", str(PI_CHROOT), root, "--", "true"], capture_output=True, text=True)
        assert result.returncode == 2
        assert "error" in result.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    result = subprocess.run(
        ["bash", str(PI_CHROOT), str(empty), "--", "true"], capture_output=True, text=True
    )
    assert result.returncode == 2 and "no /bin/sh" in result.stderr
    _assert_nothing_mounted(empty)


def test_pi_check_says_when_torch_qpu_is_missing(base_root: Path) -> None:
    result = subprocess.run(["bash", str(PI_CHECK), str(base_root)], capture_output=True, text=True)
    assert result.returncode == 2
    assert "no python3" in result.stderr or "torch_qpu is not installed" in result.stderr
    _assert_nothing_mounted(base_root)


def test_pi_chroot_binds_the_boot_partition_read_only(base_root: Path, tmp_path: Path) -> None:
    boot = tmp_path / "boot"
    boot.mkdir()
    (boot / "config.txt").write_text("gpu_mem=128\n")
    script = "cat /boot/firmware/config.txt && ! touch /boot/firmware/new 2>/dev/null"
    result = subprocess.run(
        ["bash", str(PI_CHROOT), "--boot", str(boot), str(base_root), "--", "/bin/sh", "-c", script],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "gpu_mem=128\n"
    assert sorted(p.name for p in boot.iterdir()) == ["config.txt"]
    _assert_nothing_mounted(base_root)


def test_pi_chroot_nfs_failure_leaves_nothing(tmp_path: Path) -> None:
    """This host has no NFS in its kernel: the NFS path must fail cleanly, mountpoint removed."""
    mountpoint = tmp_path / "mnt"
    result = subprocess.run(
        ["bash", str(PI_CHROOT), "-m", str(mountpoint), "192.0.2.1:/srv/rpibuild/x", "--", "true"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "nfs-common" in result.stderr or "cannot mount 192.0.2.1:/srv/rpibuild/x" in result.stderr
    assert not mountpoint.exists()
    _assert_nothing_mounted(tmp_path)


def test_ctrl_c_on_the_cli_removes_container_and_partial_file(
    engine: Engine, test_image: str, tmp_path: Path, container_ids: set[str]
) -> None:
    path = tmp_path / "interrupted.yaml"
    path.write_text(
        "platform: linux/arm/v7\nbase: {bootstrap: {suite: bookworm}}\ntorch: {source: none}\n"
        "qpulib: {enabled: false}\nimage: {repository: rpibuild-test/rootfs-cli, tags: ['{profile}']}\n",
        encoding="utf-8",
    )
    engine.tag(test_image, "rpibuild-test/rootfs-cli:interrupted")
    out = tmp_path / "root.tar.gz"  # gzip is slow enough to be caught in the middle
    partial = tmp_path / "root.tar.gz.partial"
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "rpibuild", "rootfs", "-p", str(path), str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while not (partial.exists() and partial.stat().st_size > 0) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert partial.exists(), "the export never started"
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 130, stderr
        assert "interrupted" in stderr and "Traceback" not in stderr
    finally:
        engine.remove_image("rpibuild-test/rootfs-cli:interrupted")
    assert not out.exists() and not partial.exists()
    assert {c.id for c in engine.client.containers.list(all=True)} <= container_ids


def test_pi_chroot_refuses_a_second_session_on_the_same_root(base_root: Path) -> None:
    """A second session must not take the first one's mounts for leftovers and remove them."""
    first = subprocess.Popen(["bash", str(PI_CHROOT), str(base_root), "--", "sleep", "120"])
    try:
        _wait_for_mounts(base_root)
        mounts = Path("/proc/mounts").read_text().count(str(base_root.resolve()) + "/")
        second = subprocess.run(
            ["bash", str(PI_CHROOT), str(base_root), "--", "true"], capture_output=True, text=True
        )
        assert second.returncode == 2 and "another pi-chroot.sh session" in second.stderr
        cleanup = subprocess.run(["bash", str(PI_CHROOT), "--cleanup", str(base_root)], capture_output=True)
        assert cleanup.returncode == 2
        assert Path("/proc/mounts").read_text().count(str(base_root.resolve()) + "/") == mounts
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=30) == 128 + signal.SIGTERM
    finally:
        if first.poll() is None:
            first.kill()
    _assert_nothing_mounted(base_root)
