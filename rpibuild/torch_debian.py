"""torch from Debian's source package (``torch.source: debian``): the build's key and the wheel store.

The compile takes hours on a small host, so a finished wheel is kept under rpibuild's cache,
named by a key over everything that shapes it (source version, rpibuild's fetch/build scripts
and patches, target platform, Debian suite and mirror); a build with the same key copies the
stored wheel instead of compiling. The same key names the compile's build folder
(rpibuild.torch_compile), where an interrupted compile resumes.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from rpibuild import resources
from rpibuild.config.model import Profile
from rpibuild.sources import cache_dir, file_sha256

RUNTIME_PACKAGES = "torch-runtime-packages.txt"
# Bump when the recipe changes in a way the hashed files do not show, e.g. a change to the
# post-processing helpers (runtime_packages.py, wheel_packages.py), which are left out of the
# key so that editing them does not throw away a half-done compile.
RECIPE_VERSION = 1


def recipe_files() -> list[Path]:
    """rpibuild's files that shape the compiled code: the fetch and build scripts, the patches."""
    folder = resources.images_dir() / "torch-debian"
    patches = sorted(p for p in (folder / "patches").rglob("*") if p.is_file())
    return [folder / "fetch.sh", folder / "build.sh", *patches]


def torch_build_key(profile: Profile) -> str:
    """A content hash of what the wheel is built from (not how fast: MAX_JOBS is left out)."""
    folder = resources.images_dir() / "torch-debian"
    bootstrap = profile.base.bootstrap
    payload = {
        "recipe": RECIPE_VERSION,
        "package": "pytorch",
        "version": profile.torch.version,
        "platform": profile.platform,
        "suite": bootstrap.suite if bootstrap else None,
        "mirror": bootstrap.mirror if bootstrap else None,
        "files": {
            str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in recipe_files()
        },
    }
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    return digest[:24]


def store_dir() -> Path:
    return cache_dir() / "torch"


@dataclass(frozen=True)
class StoredWheel:
    """A wheel built earlier with the same key, and the Debian packages its libraries need."""

    wheel: Path
    runtime_packages: Path

    @property
    def sha256(self) -> str:
        return file_sha256(self.wheel)


def stored_wheel(profile: Profile) -> StoredWheel | None:
    """The stored wheel for this profile's key, if a complete one is there."""
    folder = store_dir() / torch_build_key(profile)
    wheels = sorted(folder.glob("torch-*.whl"))
    packages = folder / RUNTIME_PACKAGES
    if len(wheels) != 1 or not packages.is_file() or not (folder / "complete").is_file():
        return None
    return StoredWheel(wheels[0], packages)


def store(profile: Profile, exported: Path) -> StoredWheel:
    """Move an exported wheel (+ package list) into the store, atomically per key."""
    key = torch_build_key(profile)
    wheels = sorted(exported.glob("torch-*.whl"))
    if len(wheels) != 1 or not (exported / RUNTIME_PACKAGES).is_file():
        raise FileNotFoundError(f"the torch-wheel stage exported {[p.name for p in exported.iterdir()]}")
    folder = store_dir() / key
    staging = store_dir() / f".{key}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    shutil.copy2(wheels[0], staging / wheels[0].name)
    shutil.copy2(exported / RUNTIME_PACKAGES, staging / RUNTIME_PACKAGES)
    (staging / "complete").write_text(json.dumps({"key": key, "version": profile.torch.version}) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    stored = stored_wheel(profile)
    assert stored is not None
    return stored
