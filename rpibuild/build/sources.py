"""Third-party sources (QPULib) fetched at build time, pinned, cached, never vendored.

An upstream archive is pinned by commit in its URL and checked by a content hash of the
unpacked tree (``tree_sha256``): unlike an archive's bytes, that hash does not change
when a forge regenerates its tarballs, and it equally checks a local checkout.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import unquote, urlsplit, urlunsplit

from rpibuild.config import grammar
from rpibuild.errors import ConfigError, DownloadError
from rpibuild.redact import mask_urls, remember_credentials

_SKIP = {".git"}


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, read in blocks (wheels and layers are large)."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def tree_sha256(root: Path) -> str:
    """A hash of every file's relative path, executable bit and content (symlinks: target)."""
    digest = hashlib.sha256()
    for path in sorted(_files(root)):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            kind, payload = b"l", os.readlink(path).encode()
        else:
            kind = b"x" if os.access(path, os.X_OK) else b"f"
            payload = hashlib.sha256(path.read_bytes()).hexdigest().encode()
        digest.update(rel.encode() + b"\0" + kind + b"\0" + payload + b"\n")
    return digest.hexdigest()


def _files(root: Path) -> list[Path]:
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in _SKIP]
        out.extend(Path(dirpath, name) for name in filenames)
        out.extend(Path(dirpath, d) for d in dirnames if Path(dirpath, d).is_symlink())
    return out


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(os.environ.get("RPIBUILD_CACHE", Path(base) / "rpibuild"))


MIRROR_ENV = "RPIBUILD_SOURCE_MIRROR"


def mirrored_url(url: str, archive_name: str) -> str:
    """``url``, or the same archive in the mirror named by ``$RPIBUILD_SOURCE_MIRROR``.

    A mirror is a folder or web location (``file:///srv/mirror``, ``https://host/path``)
    holding archives under their forge download names (``QPULib-<commit>.tar.gz``): what a
    host without GitHub uses. The content hash is checked the same either way.
    """
    mirror = source_mirror()
    if not mirror:
        return url
    return f"{mirror.rstrip('/')}/{archive_name}"


MIRROR_SCHEMES = ("http", "https", "file")


def source_mirror() -> str | None:
    """``$RPIBUILD_SOURCE_MIRROR`` as a URL (a folder path made a ``file://`` URL), checked.

    A web mirror may carry ``user:password@``: it is sent as a Basic authorization header
    (``open_url``), never shown. A malformed value is a usage error (exit 2), before any download.
    """
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    if not mirror:
        return None
    if "://" not in mirror:  # a plain folder path
        return Path(mirror).resolve().as_uri()
    remember_credentials(mirror)
    try:
        grammar.url(mirror, MIRROR_SCHEMES, plain=True)
    except ValueError as exc:
        raise ConfigError(
            f"{mask_urls(mirror)} {exc}",
            file="environment",
            field=MIRROR_ENV,
            hint="a folder path or a file://, http:// or https:// URL of a folder "
            "(credentials before the host are sent as Basic authorization)",
        ) from None
    return mirror


def open_url(url: str, timeout: float = 60) -> IO[bytes]:
    """Open ``url`` for reading; ``user:password@`` in it becomes a Basic authorization header.

    urllib reads userinfo as part of the host (``nonnumeric port``); the header is added as
    unredirected, so a redirect to another host never carries the credentials along.
    """
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        response: IO[bytes] = urllib.request.urlopen(url, timeout=timeout)
        return response
    remember_credentials(url)
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    request = urllib.request.Request(urlunsplit(parts._replace(netloc=host)))
    token = base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode()
    request.add_unredirected_header("Authorization", f"Basic {token}")
    response = urllib.request.urlopen(request, timeout=timeout)
    return response


def fetch_tree(url: str, expected_sha256: str | None, name: str, archive_name: str | None = None) -> Path:
    """Download and unpack an archive once; later calls reuse the cached, checked tree.

    ``archive_name`` is the archive's name in a source mirror (see ``mirrored_url``).
    """
    cached = cache_dir() / "sources" / name
    if cached.is_dir() and (expected_sha256 is None or tree_sha256(cached) == expected_sha256):
        return cached
    if archive_name:
        url = mirrored_url(url, archive_name)
    cached.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cached.parent) as tmp:
        archive = Path(tmp, "archive")
        download(url, archive)
        top = unpack_checked(archive, Path(tmp, "tree"), url, expected_sha256)
        if cached.exists():
            shutil.rmtree(cached)
        top.rename(cached)
    return cached


def download(url: str, dest: Path) -> None:
    """``url`` into the file ``dest`` (credentials in the URL sent as a header, see ``open_url``)."""
    try:
        with open_url(url) as response, dest.open("wb") as out:
            shutil.copyfileobj(response, out)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        # ValueError: urllib's InvalidURL and friends; their text may quote the userinfo.
        raise DownloadError(
            mask_urls(f"cannot download {url}: {getattr(exc, 'reason', exc)}"),
            stage="sources",
            hint=f"without network access to it, set {MIRROR_ENV} to a folder holding "
            "the pinned archives, point qpulib.path (or RPIBUILD_QPULIB_SRC) at a local "
            "checkout, or --set qpulib.enabled=false",
        ) from None


def unpack_checked(archive: Path, into: Path, url: str, expected_sha256: str | None) -> Path:
    """Unpack ``archive`` into the new folder ``into``; the top folder of the tree, checked."""
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(into, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise DownloadError(
            mask_urls(f"{url} is not a readable tar archive: {exc}"),
            stage="sources",
            hint="the download was truncated or is not the pinned archive; check the URL or mirror",
        ) from None
    entries = list(into.iterdir())
    top = entries[0] if len(entries) == 1 and entries[0].is_dir() else into
    actual = tree_sha256(top)
    if expected_sha256 is not None and actual != expected_sha256:
        raise DownloadError(
            mask_urls(f"{url} unpacked to a tree with sha256 {actual}, expected {expected_sha256}"),
            stage="sources",
            hint="the upstream archive changed or was tampered with; check the pin",
        )
    return top


def pip_mirror() -> Path | None:
    """The ``pip/`` folder of a local source mirror (``rpibuild sources fetch --all``), if any:
    a build then installs every Python package from it, without a package index."""
    mirror = source_mirror()
    if not mirror or not mirror.startswith("file://"):
        return None
    folder = Path(urllib.request.url2pathname(urlsplit(mirror).path)) / "pip"
    return folder if folder.is_dir() else None


def debian_archive() -> Path | None:
    """The ``debian/`` folder of a local source mirror (``rpibuild sources fetch --all`` for a
    profile that compiles Debian's pytorch source), if any: a small signed Debian archive the
    build's apt fetches the source package from instead of the network."""
    mirror = source_mirror()
    if not mirror or not mirror.startswith("file://"):
        return None
    folder = Path(urllib.request.url2pathname(urlsplit(mirror).path)) / "debian"
    return folder if (folder / "dists").is_dir() else None


def local_tree(path: str, field: str) -> Path:
    """A local source folder (e.g. ``$RPIBUILD_QPULIB_SRC``): the user's own tree, often
    modified, so it is not held to the upstream pin; its hash goes into the image labels."""
    root = Path(path)
    if not (root / "Lib").is_dir() and field.startswith("qpulib"):
        raise ConfigError(
            f"{path} is not a QPULib source tree (no Lib/ folder)",
            field=field,
            hint="point RPIBUILD_QPULIB_SRC or qpulib.path at a checkout of mn416/QPULib",
        )
    return root


@dataclass(frozen=True)
class PinnedArchive:
    """A GitHub repository's archive at a pinned commit, checked by its unpacked tree's hash."""

    repo: str  # owner/name
    commit: str
    tree_sha256: str

    @property
    def name(self) -> str:
        return self.repo.split("/", 1)[1]

    @property
    def url(self) -> str:
        return f"https://github.com/{self.repo}/archive/{self.commit}.tar.gz"

    @property
    def archive_name(self) -> str:
        """The forge's download name, also the archive's name in a source mirror."""
        return f"{self.name}-{self.commit}.tar.gz"

    def fetch(self) -> Path:
        """The unpacked, checked tree (downloaded once, then cached; see ``fetch_tree``)."""
        return fetch_tree(
            self.url, self.tree_sha256, name=f"{self.name}-{self.commit}", archive_name=self.archive_name
        )


# VC4C (its compiler library holds the VideoCore IV emulator behind QPULib's qpusim mode, see
# images/vc4c/) and the three dependencies its CMake would otherwise clone unpinned. Commits:
# VC4C's last (2023-05-30); SPIRV-Headers contemporary with it (2023-05-24).
VC4C_ARCHIVES: dict[str, PinnedArchive] = {
    "vc4c": PinnedArchive(
        "doe300/VC4C",
        "3d89be8692ae20b8f712e9d2bc45b6998dac8259",
        "031e67f21a7d1d78090660d49095bec03ecc1b42b9300840d729d6770a207748",
    ),
    "cpplog": PinnedArchive(
        "doe300/cpplog",
        "e364c1b9dc161260b183a2db0d71581c09ff1e57",
        "c58abc4b73a000555aecc9e361a94f6104a51e67a265930457293c5a3dce7287",
    ),
    "spirv-headers": PinnedArchive(
        "KhronosGroup/SPIRV-Headers",
        "69155b22b3b1f2d0cfed48f59167d9792de1fd79",
        "98911185ac11560795e782f9ba626bbeaee84e02e30c5a766020142c1e5113f9",
    ),
    "variant": PinnedArchive(
        "mpark/variant",
        "23cb94f027d4ef33bf48133acc2695c7e5c6f1e7",
        "97664109753356c9e66a9d50333a0db0270f064f6ff0fa542a6690ce93dd1d2a",
    ),
}


def fetch_vc4c_sources() -> dict[str, Path]:
    """VC4C and its dependencies, pinned and checked: the arguments of images/vc4c/build.sh."""
    return {key: archive.fetch() for key, archive in VC4C_ARCHIVES.items()}
