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


def fetch_tree(url: str, expected_sha256: str | None, name: str) -> Path:
    """Download and unpack an archive once; later calls reuse the cached, checked tree."""
    cached = cache_dir() / "sources" / name
    if cached.is_dir() and (expected_sha256 is None or tree_sha256(cached) == expected_sha256):
        return cached
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
                hint="without network access to it, point qpulib.path (or RPIBUILD_QPULIB_SRC) "
                "at a local checkout, or --set qpulib.enabled=false",
            ) from None
        unpacked = Path(tmp, "tree")
        with tarfile.open(archive) as tar:
            tar.extractall(unpacked, filter="data")
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
