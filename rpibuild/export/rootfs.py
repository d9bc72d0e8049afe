"""Export an image's root filesystem for a Pi: a folder to serve over NFS, or a tarball.

The tar stream ``docker export`` sends is filtered block by block, never re-encoded: every
member we keep goes out byte for byte as the engine wrote it, so numeric owners, modes,
setuid bits, hard links, symlinks, device nodes and the PAX ``SCHILY.xattr.*`` records that
carry file capabilities (``security.capability``) survive exactly. Python's tarfile would
re-encode the PAX headers (and cannot restore xattrs on extraction), which is why a folder
is written by GNU tar (``--numeric-owner --xattrs --xattrs-include='*' -p``) reading our
filtered stream.

What must not reach a Pi is dropped or rewritten and reported (see ``STRIPPED`` and
``PROXY_FILES``): QEMU's user-mode emulators, docker's marker file, the build host's DNS
settings and build proxies. Everything else is what ``docker export`` gives, including the
empty mount points docker adds (/proc, /sys, /dev/pts, ...), which a Pi needs anyway.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from rpibuild.errors import ConfigError, ExportError, HostSetupError, ImageMissing
from rpibuild.planning.naming import image_tags

if TYPE_CHECKING:
    from rpibuild.config.model import Profile
    from rpibuild.engine import Engine

BLOCK = 512
# Tarball formats by file name ending; the command compresses stdin to stdout (None: plain tar).
TARBALL_FORMATS: dict[str, list[str] | None] = {
    ".tar": None,
    ".tar.gz": ["gzip", "-c", "-6", "-n"],
    ".tgz": ["gzip", "-c", "-6", "-n"],
    ".tar.zst": ["zstd", "-q", "-c", "-3", "-T0"],
}
TOOL_PACKAGES = {"gzip": "gzip", "zstd": "zstd", "tar": "tar"}

# Paths (shell patterns on the member name, no leading "/") dropped from the export, and why.
STRIPPED: tuple[tuple[str, str], ...] = (
    (".dockerenv", "docker's container marker"),
    ("etc/resolv.conf", "the build host's DNS settings (the Pi gets its own by DHCP)"),
    ("usr/bin/qemu-*-static", "QEMU user-mode emulator (the Pi runs ARM code natively)"),
    ("usr/libexec/qemu-binfmt", "QEMU binfmt interpreters"),
    ("usr/libexec/qemu-binfmt/*", "QEMU binfmt interpreters"),
)
# Files whose proxy settings are removed (the rest of the file is kept); build proxies are
# the build host's network, not the Pi's, and may carry credentials.
PROXY_FILES = ("etc/environment", "etc/pip.conf", "etc/apt/apt.conf", "etc/apt/apt.conf.d/*")
_PROXY_LINE = {
    "apt": re.compile(rb"(?i)\bproxy\b"),
    "environment": re.compile(rb"(?i)^\s*(export\s+)?[a-z_]*proxy\s*="),
    "pip": re.compile(rb"(?i)^\s*proxy\s*[=:]"),
}
# Docker adds these as empty placeholders (mode 0755) to every container, hiding the image's
# own; it bind-mounts the real ones at run time. Empty on a Pi they break name lookups of
# localhost, so an empty one is replaced (None: dropped, the Pi's DHCP/systemd sets it).
PLACEHOLDERS: dict[str, bytes | None] = {
    "etc/hosts": b"127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n",
    "etc/hostname": None,
}
# A rewritten config file is read whole; anything bigger is not a config file.
_REWRITE_LIMIT = 1 << 20
_INIT_PATHS = {"sbin/init", "usr/sbin/init", "lib/systemd/systemd", "usr/lib/systemd/systemd"}


@dataclass(frozen=True)
class Member:
    """What the filter needs to know about one tar member."""

    name: str  # normalised: no leading "./" or "/"
    type: bytes  # ustar typeflag: b"0" file, b"1" hard link, b"2" symlink, b"5" dir, ...
    size: int
    linkname: str


@dataclass
class ExportStats:
    """What the export did, for the summary and --json."""

    members: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    stripped: list[tuple[str, str]] = field(default_factory=list)  # (path, why)
    has_init: bool = False


@dataclass(frozen=True)
class NfsInstructions:
    """How to serve a folder over NFS and use it from a Pi."""

    host: str
    directory: str
    exports: str
    extract: str | None
    mount: str
    chroot: str

    def as_dict(self) -> dict[str, str | None]:
        return {
            "host": self.host,
            "directory": self.directory,
            "exports": self.exports,
            "extract": self.extract,
            "mount": self.mount,
            "chroot": self.chroot,
        }


@dataclass
class ExportResult:
    image: str
    image_id: str
    output: str
    format: str  # "folder", ".tar", ".tar.gz", ".tar.zst"
    stats: ExportStats
    seconds: float
    nfs: NfsInstructions

    def as_dict(self) -> dict[str, object]:
        return {
            "image": self.image,
            "id": self.image_id,
            "output": self.output,
            "format": self.format,
            "members": self.stats.members,
            "bytes": self.stats.bytes_out,
            "stripped": [{"path": "/" + p, "why": why} for p, why in self.stats.stripped],
            "has_init": self.stats.has_init,
            "seconds": round(self.seconds, 1),
            "nfs": self.nfs.as_dict(),
        }


# ---------------------------------------------------------------- deciding per member


def strip_reason(name: str) -> str | None:
    """Why ``name`` is dropped from the export, or None to keep it."""
    for pattern, why in STRIPPED:
        if fnmatch.fnmatchcase(name, pattern):
            return why
    return None


def proxy_kind(name: str) -> str | None:
    """Which proxy syntax the file at ``name`` uses, or None when it is not a proxy file."""
    if not any(fnmatch.fnmatchcase(name, pattern) for pattern in PROXY_FILES):
        return None
    if name.startswith("etc/apt/"):
        return "apt"
    return "pip" if name == "etc/pip.conf" else "environment"


def without_proxies(content: bytes, kind: str) -> bytes:
    """``content`` minus its proxy lines (apt: every line naming a proxy)."""
    pattern = _PROXY_LINE[kind]
    lines = content.splitlines(keepends=True)
    return b"".join(line for line in lines if not pattern.search(line))


def _meaningful(content: bytes) -> bool:
    for line in content.splitlines():
        text = line.strip()
        if text and not text.startswith((b"#", b"//", b";")) and text not in (b"[global]",):
            return True
    return False


# ---------------------------------------------------------------- the raw tar filter


class _Reader:
    """Exact-size reads over an iterator of byte chunks."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._buffer = bytearray()
        self.consumed = 0

    def read(self, size: int) -> bytes:
        while len(self._buffer) < size:
            try:
                chunk = next(self._chunks)
            except StopIteration:
                break
            self._buffer += chunk
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        self.consumed += len(data)
        return data

    def exact(self, size: int) -> bytes:
        data = self.read(size)
        if len(data) != size:
            raise ExportError("the engine's tar stream ended in the middle of a file (truncated export)")
        return data

    def copy(self, size: int, write: Callable[[bytes], None]) -> None:
        """Pass ``size`` bytes through without holding them all in memory."""
        while size:
            data = self.exact(min(size, 1 << 20))
            write(data)
            size -= len(data)


def _octal(field_bytes: bytes) -> int:
    if field_bytes and field_bytes[0] & 0x80:  # base-256 (GNU/Go for big values)
        value = int.from_bytes(field_bytes, "big") & ~(0x80 << (8 * (len(field_bytes) - 1)))
        return value
    text = field_bytes.split(b"\0", 1)[0].strip()
    return int(text, 8) if text else 0


def _cstring(field_bytes: bytes) -> str:
    return field_bytes.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _pax_records(data: bytes) -> dict[str, str]:
    records: dict[str, str] = {}
    position = 0
    while position < len(data):
        space = data.find(b" ", position)
        if space < 0:
            break
        length = int(data[position:space])
        if length <= 0:
            break
        record = data[space + 1 : position + length - 1]  # drop the trailing newline
        key, _, value = record.partition(b"=")
        records[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        position += length
    return records


def _normalise(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name.lstrip("/")


def _with_size(header: bytes, size: int, mode: int | None = None) -> bytes:
    """A copy of a ustar header with a new size (and mode) field and checksum."""
    block = bytearray(header)
    block[124:136] = b"%011o\0" % size
    if mode is not None:
        block[100:108] = b"%07o\0" % mode
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


def filter_tar(
    chunks: Iterable[bytes],
    write: Callable[[bytes], None],
    stats: ExportStats | None = None,
) -> ExportStats:
    """Copy a tar stream from ``chunks`` to ``write``, dropping and rewriting what a Pi must not get.

    Members kept are passed through byte for byte (their PAX and GNU long-name headers
    included); a hard link to a dropped file is dropped too, so extraction never fails on it.
    """
    stats = stats or ExportStats()
    reader = _Reader(chunks)
    dropped: set[str] = set()
    pending = bytearray()
    pax: dict[str, str] = {}
    long_name: str | None = None
    long_link: str | None = None
    while True:
        header = reader.read(BLOCK)
        if not header or header == b"\0" * BLOCK:
            break  # end of archive (two zero blocks, or a stream that simply ends)
        if len(header) != BLOCK:
            raise ExportError("the engine's tar stream is truncated (partial header)")
        typeflag = header[156:157]
        size = _octal(header[124:136])
        padded = -(-size // BLOCK) * BLOCK
        if typeflag in (b"x", b"L", b"K"):
            data = reader.exact(padded)
            pending += header + data
            if typeflag == b"x":
                pax.update(_pax_records(data[:size]))
            elif typeflag == b"L":
                long_name = data[:size].rstrip(b"\0").decode("utf-8", "surrogateescape")
            else:
                long_link = data[:size].rstrip(b"\0").decode("utf-8", "surrogateescape")
            continue
        if typeflag == b"g":  # global PAX header: applies to all, pass it on
            write(header)
            reader.copy(padded, write)
            stats.bytes_out += BLOCK + padded
            continue
        name = pax.get("path") or long_name
        if name is None:
            name = _cstring(header[0:100])
            # Only POSIX ustar ("ustar\0") has a name prefix; GNU's "ustar  " keeps times there.
            prefix = _cstring(header[345:500]) if header[257:263] == b"ustar\0" else ""
            if prefix:
                name = f"{prefix}/{name}"
        linkname = pax.get("linkpath") or long_link or _cstring(header[157:257])
        if "size" in pax:
            size = int(pax["size"])
            padded = -(-size // BLOCK) * BLOCK
        member = Member(_normalise(name), typeflag, size, _normalise(linkname))
        prefix_bytes, pax_size = bytes(pending), "size" in pax
        pending.clear()
        pax.clear()
        long_name = long_link = None

        why = strip_reason(member.name.rstrip("/"))
        if why is None and member.type == b"1" and member.linkname in dropped:
            why = f"hard link to stripped /{member.linkname}"
        if why is not None:
            dropped.add(member.name.rstrip("/"))
            stats.stripped.append((member.name.rstrip("/"), why))
            reader.copy(padded, lambda _data: None)
            continue
        regular = member.type in (b"0", b"\0", b"7")
        if regular and size == 0 and member.name in PLACEHOLDERS and not pax_size:
            replacement = PLACEHOLDERS[member.name]
            if replacement is None:
                dropped.add(member.name)
                stats.stripped.append((member.name, "docker's empty placeholder"))
                continue
            stats.stripped.append((member.name, "docker's empty placeholder, replaced by a localhost entry"))
            padded = -(-len(replacement) // BLOCK) * BLOCK
            out = prefix_bytes + _with_size(header, len(replacement), 0o644)
            out += replacement + b"\0" * (padded - len(replacement))
            write(out)
            stats.bytes_out += len(out)
            stats.members += 1
            continue
        kind = proxy_kind(member.name) if regular else None
        if kind is not None and not pax_size and size <= _REWRITE_LIMIT:
            content = reader.exact(padded)[:size]
            cleaned = without_proxies(content, kind)
            if cleaned != content:
                if member.name != "etc/environment" and not _meaningful(cleaned):
                    dropped.add(member.name)
                    stats.stripped.append((member.name, "build proxy settings (nothing else in the file)"))
                    continue
                stats.stripped.append((member.name, "build proxy lines (rest of the file kept)"))
                header = _with_size(header, len(cleaned))
                content, size = cleaned, len(cleaned)
                padded = -(-size // BLOCK) * BLOCK
            out = prefix_bytes + header + content + b"\0" * (padded - size)
            write(out)
            stats.bytes_out += len(out)
            stats.members += 1
            continue
        if member.name.rstrip("/") in _INIT_PATHS:
            stats.has_init = True
        write(prefix_bytes + header)
        reader.copy(padded, write)
        stats.bytes_out += len(prefix_bytes) + BLOCK + padded
        stats.members += 1
    write(b"\0" * (2 * BLOCK))
    stats.bytes_out += 2 * BLOCK
    stats.bytes_in = reader.consumed
    return stats


# ---------------------------------------------------------------- writing the output


def output_format(out: Path) -> str:
    """``folder`` or the tarball suffix that names the compression."""
    name = out.name
    for suffix in sorted(TARBALL_FORMATS, key=len, reverse=True):
        if name.endswith(suffix):
            return suffix
    if "." in name and name.rsplit(".", 1)[-1] in ("gz", "zst", "xz", "bz2", "tar", "zip"):
        raise ConfigError(
            f"cannot tell the format of {out.name}",
            field="OUT",
            hint=f"tarballs end in {', '.join(TARBALL_FORMATS)}; anything else is a folder",
        )
    return "folder"


def _need_tool(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        package = TOOL_PACKAGES.get(tool, tool)
        raise HostSetupError(f"{tool} is not installed", hint=f"apt-get install -y {package}")
    return path


@contextlib.contextmanager
def _sink(out: Path, fmt: str) -> Iterator[Callable[[bytes], None]]:
    """A write function into the output; on failure nothing half-written is left behind."""
    if fmt == "folder":
        created = not out.exists()
        out.mkdir(parents=True, exist_ok=True)
        command = [
            _need_tool("tar"),
            "--extract",
            "--file=-",
            f"--directory={out}",
            "--numeric-owner",
            "--same-owner",
            "--preserve-permissions",
            "--xattrs",
            "--xattrs-include=*",
        ]
        try:
            with _process_sink(command, stdout=None) as write:
                yield write
        except BaseException:
            if created:
                shutil.rmtree(out, ignore_errors=True)
            else:
                for entry in out.iterdir():
                    if entry.is_dir() and not entry.is_symlink():
                        shutil.rmtree(entry, ignore_errors=True)
                    else:
                        entry.unlink(missing_ok=True)
            raise
        return
    partial = out.with_name(out.name + ".partial")
    compressor = TARBALL_FORMATS[fmt]
    try:
        with partial.open("wb") as handle:
            if compressor is None:

                def write_plain(data: bytes) -> None:
                    handle.write(data)

                yield write_plain
            else:
                tool = compressor[0]
                if tool == "gzip" and shutil.which("pigz"):
                    tool = "pigz"  # same format, every core
                with _process_sink([_need_tool(tool), *compressor[1:]], stdout=handle) as write:
                    yield write
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)


@contextlib.contextmanager
def _process_sink(command: list[str], stdout: IO[bytes] | None) -> Iterator[Callable[[bytes], None]]:
    """A write function into a tool's stdin (tar, gzip, zstd); its failure is an ExportError."""
    name = Path(command[0]).name
    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=stdout, stderr=subprocess.PIPE) as process:
        stdin = process.stdin
        assert stdin is not None

        def write(data: bytes) -> None:
            try:
                stdin.write(data)
            except BrokenPipeError:
                raise ExportError(f"{name} stopped reading: {_stderr(process)}") from None

        try:
            yield write
            stdin.close()
            code = process.wait()
        except BaseException:
            process.kill()
            with contextlib.suppress(OSError):
                stdin.close()
            process.wait()
            raise
        if code != 0:
            raise ExportError(f"{name} failed (exit {code}): {_stderr(process)}")


def _stderr(process: subprocess.Popen[bytes]) -> str:
    assert process.stderr is not None
    with contextlib.suppress(OSError, ValueError):
        text = process.stderr.read().decode("utf-8", "replace").strip()
        return text.splitlines()[-1] if text else "no message"
    return "no message"


# ---------------------------------------------------------------- NFS instructions


def default_host() -> str:
    """This host's address on its default route (no packet is sent), for the Pi to mount from."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # TEST-NET-1: routing decision only
        return str(probe.getsockname()[0])
    return "HOST"


def nfs_instructions(
    out: Path, fmt: str, host: str, client: str, served: str | None = None
) -> NfsInstructions:
    """The /etc/exports line and the Pi's mount and chroot commands.

    No cmdline.txt for booting from it: an rpibuild image has no init, no kernel and no
    modules for the Pi's kernel. A Pi runs its own OS from the SD card and chroots into the
    served tree (the GPU's device nodes bound in), which needs none of them.

    A tarball is served once unpacked; ``served`` (default /srv/rpibuild/<name>) says where.
    """
    if fmt == "folder":
        directory = str(out.resolve())
        extract = None
    else:
        stem = out.name[: -len(fmt)] if out.name.endswith(fmt) else out.stem
        directory = served or f"/srv/rpibuild/{stem}"
        extract = (
            f"sudo mkdir -p {directory} && sudo tar --extract --file={out.resolve()} --directory={directory} "
            "--numeric-owner --same-owner --preserve-permissions --xattrs --xattrs-include='*'"
        )
    source = f"{host}:{directory}"
    return NfsInstructions(
        host=host,
        directory=directory,
        exports=f"{directory} {client}(rw,sync,no_subtree_check,no_root_squash)",
        extract=extract,
        mount=f"sudo mkdir -p /mnt/rpibuild && sudo mount -t nfs -o vers=3,nolock {source} /mnt/rpibuild",
        chroot=f"sudo scripts/pi-chroot.sh {source}",
    )


# ---------------------------------------------------------------- the export


def export_image(
    engine: Engine,
    image: str,
    out: Path,
    *,
    platform: str | None = None,
    host: str | None = None,
    client: str = "*",
    progress: Callable[[int, int], None] | None = None,
) -> ExportResult:
    """Export ``image``'s root filesystem to ``out`` (a folder, or a tarball by its suffix).

    Reads a created, never started container (removed always, Ctrl-C included); ``progress``
    gets (bytes read from the engine, bytes written) about twice a second.
    """
    started = time.monotonic()
    info = engine.image(image)
    if info is None:
        raise ImageMissing(f"image {image} does not exist", hint="rpibuild build -p PROFILE")
    fmt = output_format(out)
    if fmt == "folder":
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise ConfigError(
                f"{out} exists and is not an empty folder", field="OUT", hint="give a new or empty folder"
            )
        if os.geteuid() != 0:
            raise HostSetupError(
                "writing a root filesystem into a folder needs root (owners, setuid bits, capabilities)",
                hint=f"run it as root (sudo), or write a tarball instead: {out}.tar.zst",
            )
    elif not out.parent.is_dir():
        raise ConfigError(f"folder {out.parent} does not exist", field="OUT")
    stats = ExportStats()
    last = 0.0
    with engine.created_container(image, platform=platform) as container, _sink(out, fmt) as sink:
        chunks = engine.export_container(container)
        consumed = 0
        written = 0

        def tally(source: Iterable[bytes]) -> Iterator[bytes]:
            nonlocal consumed
            for chunk in source:
                consumed += len(chunk)
                yield chunk

        def counted(data: bytes) -> None:
            nonlocal last, written
            sink(data)
            written += len(data)
            now = time.monotonic()
            if progress is not None and now - last >= 0.5:
                last = now
                progress(consumed, written)

        try:
            filter_tar(tally(chunks), counted, stats)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
    if progress is not None:
        progress(stats.bytes_in, stats.bytes_out)
    return ExportResult(
        image=image,
        image_id=info.id,
        output=str(out),
        format=fmt,
        stats=stats,
        seconds=time.monotonic() - started,
        nfs=nfs_instructions(out, fmt, host or default_host(), client),
    )


def profile_image(profile: Profile, engine: Engine) -> str:
    """The profile's runtime image (its first tag), or a clear error saying how to build it."""
    image = image_tags(profile)[0]
    if engine.image(image) is None:
        raise ImageMissing(
            f"image {image} does not exist: profile {profile.name} has not been built here",
            hint=f"rpibuild build -p {profile.name}",
        )
    return image


def export_profile(
    profile: Profile,
    engine: Engine,
    out: Path,
    *,
    host: str | None = None,
    client: str = "*",
    progress: Callable[[int, int], None] | None = None,
) -> ExportResult:
    """Export the built image of ``profile`` (see ``export_image``)."""
    image = profile_image(profile, engine)
    return export_image(
        engine, image, out, platform=profile.platform, host=host, client=client, progress=progress
    )
