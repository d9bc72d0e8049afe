"""The rootfs tar filter on synthetic archives: byte-exact pass-through, stripping, rewriting."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from rpibuild.errors import ConfigError, ExportError
from rpibuild.export.rootfs import (
    ExportStats,
    filter_tar,
    nfs_instructions,
    output_format,
    strip_reason,
    without_proxies,
)

CAPABILITY = b"\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"


def make_tar(members: list[tuple[tarfile.TarInfo, bytes | None]], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt) as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def entry(name: str, data: bytes = b"", **fields: object) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in fields.items():
        setattr(info, key, value)
    return info, data if info.isfile() else None


def run_filter(data: bytes, chunk: int = 1000) -> tuple[bytes, ExportStats]:
    out = bytearray()
    chunks = [data[i : i + chunk] for i in range(0, len(data), chunk)]
    stats = filter_tar(chunks, out.extend)
    return bytes(out), stats


def members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        return {m.name: m for m in archive.getmembers()}


def read(data: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        handle = archive.extractfile(name)
        assert handle is not None
        return handle.read()


def test_kept_members_pass_through_byte_for_byte() -> None:
    cap = tarfile.TarInfo("usr/bin/ping")
    cap.size, cap.mode = 4, 0o755
    cap.pax_headers = {"SCHILY.xattr.security.capability": CAPABILITY.decode("utf-8", "surrogateescape")}
    long_name = "usr/share/" + "x" * 150 + "/file"
    source = make_tar(
        [
            entry("usr", type=tarfile.DIRTYPE, mode=0o755),
            (cap, b"ELF!"),
            entry("usr/bin/sudo", b"s" * 700, mode=0o4755, uid=0, gid=0),
            entry("opt/a", b"data", uid=1234, gid=5678),
            entry("opt/b", type=tarfile.LNKTYPE, linkname="opt/a"),
            entry("usr/lib/link", type=tarfile.SYMTYPE, linkname="../bin/ping"),
            entry(long_name, b"long"),
        ]
    )
    out, stats = run_filter(source)
    # Nothing to strip: the same members in the same bytes (the trailer may differ in length).
    assert out.rstrip(b"\0") == source.rstrip(b"\0")
    assert stats.members == 7 and stats.stripped == []
    got = members(out)
    assert (
        got["usr/bin/ping"].pax_headers["SCHILY.xattr.security.capability"].encode("utf-8", "surrogateescape")
        == CAPABILITY
    )
    assert got["usr/bin/sudo"].mode == 0o4755
    assert (got["opt/a"].uid, got["opt/a"].gid) == (1234, 5678)
    assert got["opt/b"].islnk() and got["opt/b"].linkname == "opt/a"
    assert long_name in got


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_strips_qemu_docker_and_host_files(fmt: int) -> None:
    source = make_tar(
        [
            entry(".dockerenv", mode=0o755),
            entry("etc/resolv.conf", b"nameserver 10.0.0.1\n"),
            entry("etc/hostname"),
            entry("etc/hosts"),
            entry("usr/bin/qemu-arm-static", b"qemu" * 300),
            entry("usr/bin/qemu-z", type=tarfile.LNKTYPE, linkname="usr/bin/qemu-arm-static"),
            entry("usr/libexec/qemu-binfmt", type=tarfile.DIRTYPE),
            entry("usr/libexec/qemu-binfmt/arm-binfmt-P", b"x"),
            entry("usr/bin/qemu-system-arm", b"a real package, kept"),
            entry("etc/passwd", b"root:x:0:0::/root:/bin/sh\n"),
        ],
        fmt,
    )
    out, stats = run_filter(source, chunk=512 * 3 + 7)
    got = members(out)
    assert set(got) == {"etc/hosts", "usr/bin/qemu-system-arm", "etc/passwd"}
    assert b"localhost" in read(out, "etc/hosts")
    assert got["etc/hosts"].mode == 0o644
    assert read(out, "etc/passwd") == b"root:x:0:0::/root:/bin/sh\n"
    stripped = dict(stats.stripped)
    assert "hard link to stripped" in stripped["usr/bin/qemu-z"]
    assert set(stripped) == {
        ".dockerenv",
        "etc/resolv.conf",
        "etc/hostname",
        "etc/hosts",
        "usr/bin/qemu-arm-static",
        "usr/bin/qemu-z",
        "usr/libexec/qemu-binfmt",
        "usr/libexec/qemu-binfmt/arm-binfmt-P",
    }


def test_a_non_empty_hosts_file_is_the_image_own() -> None:
    out, stats = run_filter(make_tar([entry("etc/hosts", b"10.1.1.1 server\n")]))
    assert read(out, "etc/hosts") == b"10.1.1.1 server\n" and stats.stripped == []


def test_proxy_settings_are_removed_and_the_rest_kept() -> None:
    source = make_tar(
        [
            entry("etc/apt/apt.conf.d/01proxy", b'Acquire::http::Proxy "http://p:3128";\n'),
            entry(
                "etc/apt/apt.conf.d/02mixed",
                b'APT::Install-Recommends "false";\nAcquire::https { Proxy "http://p:3128"; };\n',
                mode=0o600,
            ),
            entry("etc/environment", b'PATH="/usr/bin:/bin"\nhttp_proxy=http://p:3128\nexport NO_PROXY=x\n'),
            entry("etc/pip.conf", b"[global]\nproxy = http://p:3128\n"),
            entry("etc/apt/apt.conf.d/70debconf", b'DPkg::Pre-Install-Pkgs {"true";};\n'),
        ]
    )
    out, stats = run_filter(source)
    got = members(out)
    assert "etc/apt/apt.conf.d/01proxy" not in got and "etc/pip.conf" not in got
    assert read(out, "etc/apt/apt.conf.d/02mixed") == b'APT::Install-Recommends "false";\n'
    assert got["etc/apt/apt.conf.d/02mixed"].mode == 0o600
    assert read(out, "etc/environment") == b'PATH="/usr/bin:/bin"\n'
    assert read(out, "etc/apt/apt.conf.d/70debconf") == b'DPkg::Pre-Install-Pkgs {"true";};\n'
    assert {p for p, _ in stats.stripped} == {
        "etc/apt/apt.conf.d/01proxy",
        "etc/apt/apt.conf.d/02mixed",
        "etc/environment",
        "etc/pip.conf",
    }


def test_without_proxies_keeps_other_lines() -> None:
    assert without_proxies(b"a=1\nHTTPS_PROXY=x\n", "environment") == b"a=1\n"
    assert without_proxies(b"[global]\nindex-url = i\nproxy=x\n", "pip") == b"[global]\nindex-url = i\n"
    assert without_proxies(b"no proxy here? yes: proxy\n", "apt") == b""


def test_detects_an_init_system() -> None:
    _, stats = run_filter(
        make_tar([entry("usr/sbin/init", type=tarfile.SYMTYPE, linkname="../lib/systemd/systemd")])
    )
    assert stats.has_init
    _, stats = run_filter(make_tar([entry("usr/bin/ls", b"x")]))
    assert not stats.has_init


def test_truncated_stream_is_an_error() -> None:
    source = make_tar([entry("big", b"x" * 5000)])
    with pytest.raises(ExportError, match="truncated"):
        run_filter(source[:2048])


def test_strip_reason() -> None:
    assert strip_reason("usr/bin/qemu-aarch64-static")
    assert strip_reason("usr/bin/qemu-aarch64") is None
    assert strip_reason("etc/resolv.conf")
    assert strip_reason("etc/resolv.conf.d") is None


def test_output_format() -> None:
    assert output_format(Path("root")) == "folder"
    assert output_format(Path("/srv/pi3b.v2")) == "folder"
    assert output_format(Path("r.tar")) == ".tar"
    assert output_format(Path("r.tar.gz")) == ".tar.gz"
    assert output_format(Path("r.tgz")) == ".tgz"
    assert output_format(Path("r.tar.zst")) == ".tar.zst"
    with pytest.raises(ConfigError):
        output_format(Path("r.tar.xz"))


def test_nfs_instructions(tmp_path: Path) -> None:
    folder = nfs_instructions(tmp_path / "root", "folder", "192.168.1.5", "192.168.1.0/24")
    served = str((tmp_path / "root").resolve())
    assert folder.exports == f"{served} 192.168.1.0/24(rw,sync,no_subtree_check,no_root_squash)"
    assert "cmdline" not in folder.as_dict()  # not a boot root: no init, kernel or modules
    assert folder.extract is None
    assert "nolock" in folder.mount and f"192.168.1.5:{served}" in folder.mount
    tarball = nfs_instructions(tmp_path / "pi3b.tar.zst", ".tar.zst", "h", "*")
    assert tarball.directory == "/srv/rpibuild/pi3b"
    assert (
        tarball.extract and "--xattrs-include='*'" in tarball.extract and "--numeric-owner" in tarball.extract
    )


def test_rootfs_prints_the_chroot_workflow_and_no_boot_line(tmp_path: Path) -> None:
    from rpibuild.cli.rootfs import pi_usage

    text = pi_usage(nfs_instructions(tmp_path / "r.tar.zst", ".tar.zst", "192.168.1.5", "*"))
    assert "scripts/pi-chroot.sh 192.168.1.5:/srv/rpibuild/r" in text
    assert "chroot" in text and "mount -t nfs" in text and "tar --extract" in text
    assert "cmdline" not in text and "root=/dev/nfs" not in text and "nfsroot=" not in text
