"""torch from Debian's source package (``torch.source: debian``): the build's key and the wheel store.

The compile takes hours on a small host, so a finished wheel is kept under rpibuild's cache,
named by a key over everything that goes into it; a build with the same key copies the stored
wheel instead of compiling. The key hashes the rendered stages that build the wheel
(``torch-source`` and every stage it is built from: the cross toolchain, the package lists,
the base's reference, which carries the base's own key) and every file those stages copy in
(fetch.sh, build.sh, compile.sh, the patches, the ELF check...), found by reading the stages
(rpibuild.planning.keys), never a hand-kept list: a missed input would silently reuse a wheel built
from other ones. The same key names the compile's build folder (rpibuild.torch_routes.compile),
where an interrupted compile resumes; a changed key recompiles through ccache.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from rpibuild.build.sources import cache_dir, file_sha256
from rpibuild.config.model import Profile
from rpibuild.planning import keys

RUNTIME_PACKAGES = "torch-runtime-packages.txt"
# The stage whose image the compile runs in (rpibuild.torch_routes.compile).
WHEEL_STAGE = "torch-source"
# Context files the wheel's stages copy that cannot change the wheel: the CA bundle only
# lets the fetch through a TLS-intercepting proxy (the source is checked by Debian's
# signatures and checksums), and with `ca_bundle: host` it changes with every update of the
# host's ca-certificates, which must not throw away hours of compiling.
TRANSPORT_ONLY = frozenset({"rpibuild/ca-bundle.pem"})
# Bump when what the compile does changes in a way neither the stages nor their files show
# (the compile container's command line is built in rpibuild.torch_routes.compile).
RECIPE_VERSION = 2


def wheel_key(profile: Profile, dockerfile: str, files: Mapping[str, Path], dirs: Mapping[str, Path]) -> str:
    """The wheel's content key, from the rendered Dockerfile and its context (not from how fast
    it is compiled: MAX_JOBS is left out)."""
    chain = keys.stage_chain(dockerfile, WHEEL_STAGE)
    copied = keys.copied_sources(i for texts in chain.values() for i in texts)
    inputs = keys.context_inputs([s for s in copied if s not in TRANSPORT_ONLY], files, dirs)
    bootstrap = profile.base.bootstrap
    values = {
        "recipe": RECIPE_VERSION,
        "package": "pytorch",
        "version": profile.torch.version,
        "platform": profile.platform,
        "suite": bootstrap.suite if bootstrap else None,
        "mirror": bootstrap.mirror if bootstrap else None,
        "elf_spec": profile.target.elf_spec,  # compile.sh's argument
    }
    return keys.content_key(values, chain, inputs)[:24]


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


def stored_wheel(key: str) -> StoredWheel | None:
    """The stored wheel of this key, if a complete one is there."""
    folder = store_dir() / key
    wheels = sorted(folder.glob("torch-*.whl"))
    packages = folder / RUNTIME_PACKAGES
    if len(wheels) != 1 or not packages.is_file() or not (folder / "complete").is_file():
        return None
    return StoredWheel(wheels[0], packages)


def store(key: str, version: str | None, exported: Path) -> StoredWheel:
    """Move an exported wheel (+ package list) into the store, atomically per key."""
    wheels = sorted(exported.glob("torch-*.whl"))
    if len(wheels) != 1 or not (exported / RUNTIME_PACKAGES).is_file():
        raise FileNotFoundError(f"the torch-wheel stage exported {[p.name for p in exported.iterdir()]}")
    folder = store_dir() / key
    staging = store_dir() / f".{key}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    shutil.copy2(wheels[0], staging / wheels[0].name)
    shutil.copy2(exported / RUNTIME_PACKAGES, staging / RUNTIME_PACKAGES)
    (staging / "complete").write_text(json.dumps({"key": key, "version": version}) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    stored = stored_wheel(key)
    assert stored is not None
    return stored
