"""Third-party sources (QPULib) fetched at build time, pinned, cached, never vendored.

An upstream archive is pinned by commit in its URL and checked by a content hash of the
unpacked tree (``tree_sha256``): unlike an archive's bytes, that hash does not change
when a forge regenerates its tarballs, and it equally checks a local checkout.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from rpibuild.errors import BuildError, ConfigError

_SKIP = {".git"}


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
    out = []
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
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    if not mirror:
        return url
    if "://" not in mirror:  # a plain folder path
        mirror = Path(mirror).resolve().as_uri()
    return f"{mirror.rstrip('/')}/{archive_name}"


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
        try:
            with urllib.request.urlopen(url, timeout=60) as response, archive.open("wb") as out:
                shutil.copyfileobj(response, out)
        except (urllib.error.URLError, OSError) as exc:
            raise BuildError(
                f"cannot download {url}: {getattr(exc, 'reason', exc)}",
                stage="sources",
                hint=f"without network access to it, set {MIRROR_ENV} to a folder holding "
                "the pinned archives, point qpulib.path (or RPIBUILD_QPULIB_SRC) at a local "
                "checkout, or --set qpulib.enabled=false",
            ) from None
        unpacked = Path(tmp, "tree")
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(unpacked, filter="data")
        except (tarfile.TarError, OSError) as exc:
            raise BuildError(
                f"{url} is not a readable tar archive: {exc}",
                stage="sources",
                hint="the download was truncated or is not the pinned archive; check the URL or mirror",
            ) from None
        entries = list(unpacked.iterdir())
        top = entries[0] if len(entries) == 1 and entries[0].is_dir() else unpacked
        actual = tree_sha256(top)
        if expected_sha256 is not None and actual != expected_sha256:
            raise BuildError(
                f"{url} unpacked to a tree with sha256 {actual}, expected {expected_sha256}",
                stage="sources",
                hint="the upstream archive changed or was tampered with; check the pin",
            )
        if cached.exists():
            shutil.rmtree(cached)
        top.rename(cached)
    return cached


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
