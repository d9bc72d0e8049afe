"""The torch compile (``torch.source: debian``): a container whose build folder and ccache are
host folders under rpibuild's cache, or named volumes on the engine it runs on.

Not a BuildKit step: BuildKit garbage-collects its cache mounts (by default once unused for
two days, and whenever the build cache outgrows its cap), which can throw away hours of
compiling between two builds. A host folder stays until the user deletes it, survives
``docker builder prune``, can be copied or cached by CI, and an interrupted compile resumes
from it. The image it runs in is the ``torch-compile`` stage (``torch-source`` plus distcc's
client), built by buildx as usual. On an engine other than this host's (the selected builder's,
``compile_place``), host folders cannot be mounted: the same folders are named volumes there,
kept by the engine until removed, and the wheel is copied back out of the container.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rpibuild.build.sources import cache_dir
from rpibuild.config.model import Profile
from rpibuild.engine import Engine
from rpibuild.engine.progress import PLACE_PREFIX
from rpibuild.host.locks import host_lock
from rpibuild.torch_routes.compile_place import CompilePlace

# Where compile.sh expects its folders in the container (the cross stage's CCACHE_DIR). The
# key's build folder is always mounted at the same path: the paths the compiler sees (and
# ccache hashes, e.g. in generated files that #include by absolute path) do not change with
# the key, so a new key (another patch) finds in ccache what the last one compiled.
BUILD_MOUNT = "/var/cache/rpibuild/torch/build"
CCACHE_MOUNT = "/var/cache/rpibuild/ccache"
OUT_MOUNT = "/opt/rpibuild/wheels"
COMPILE_SCRIPT = "/opt/rpibuild/src/torch-debian/compile.sh"
# The torch-compile stage's own scripts (images/torch-compile): not in the wheel's key, since
# where and with whom the compile runs does not change the wheel.
ONLY_SCRIPT = "/opt/rpibuild/src/torch-compile/only.sh"
HELPERS_CHECK = "/opt/rpibuild/src/torch-compile/check-helpers.sh"
LABEL = "io.rpibuild.torch-compile"
VOLUME_LABEL = "io.rpibuild.torch-compile.volume"
_TARGET = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+\-]{0,63}")


@dataclass(frozen=True)
class CompileFolders:
    """The host folders of one target architecture's compile."""

    root: Path

    @property
    def build(self) -> Path:
        """Holds the build folder of the current key: source copy, CMake, ninja."""
        return self.root / "build"

    @property
    def ccache(self) -> Path:
        return self.root / "ccache"

    @property
    def tag(self) -> str:
        """Names this compile's lock and container label (one per folder, whoever's cache)."""
        return hashlib.sha256(str(self.root.resolve()).encode()).hexdigest()[:16]


def compile_folders(profile: Profile) -> CompileFolders:
    return CompileFolders(cache_dir() / "torch-compile" / profile.target.debian_arch)


def compile_lock_name(profile: Profile, place: CompilePlace | None = None) -> str:
    """The host lock a compile into the profile's folders (or an engine's volumes) holds."""
    return f"torch-compile-{compile_tag(profile, place)}"


def compile_tag(profile: Profile, place: CompilePlace | None) -> str:
    """Names a compile's lock and container label: its host folder, or engine and architecture."""
    if place is None or place.host_folders:
        return compile_folders(profile).tag
    where = f"{place.engine.address} {profile.target.debian_arch}"
    return hashlib.sha256(where.encode()).hexdigest()[:16]


def volume_names(profile: Profile, key: str) -> tuple[str, str]:
    """The named volumes (build folder of ``key``, ccache) of a compile on another engine."""
    arch = profile.target.debian_arch
    return f"rpibuild-torch-{arch}-build-{key}", f"rpibuild-torch-{arch}-ccache"


def compile_wheel(
    place: CompilePlace,
    image: str,
    profile: Profile,
    out: Path,
    *,
    key: str,
    fresh: bool,
    on_line: Callable[[str], None],
    on_wait: Callable[[], None] | None = None,
    only: str | None = None,
) -> int:
    """Run the compile in ``image`` (the torch-compile stage) on ``place``'s engine; the wheel
    and its package list go to ``out``. Returns the container's exit code. ``key`` is the
    wheel's content key (rpibuild.torch_routes.debian.wheel_key): its build folder is the one
    resumed. ``only``: build one CMake target (c10) instead of the wheel and check its library
    as a target ELF: the same path in minutes, for tests.

    ``fresh`` starts over in an empty build folder (ccache keeps every object it made). One
    compile per folder at a time: a host lock, and a container left running by a killed
    rpibuild process is removed before a new one starts.
    """
    if only is not None and not _TARGET.fullmatch(only):
        raise ValueError(f"not a CMake target name: {only!r}")
    engine = place.engine
    with host_lock(compile_lock_name(profile, place), on_wait=on_wait):
        tag = compile_tag(profile, place)
        stale = engine.remove_labelled_containers(f"{LABEL}={tag}")
        if stale:
            on_line(f"compile: removed {len(stale)} compile container(s) an earlier rpibuild left running")
        on_line(f"{PLACE_PREFIX}{place.describe()}")
        environment = {"MAX_JOBS": str(place.jobs), **distcc_environment(place)}
        options: dict[str, Any] = {}
        if place.host_folders:
            volumes = _host_folders(profile, key, fresh, out)
            if os.getuid() != 0:
                environment["HOME"] = "/tmp"  # the host user's id has no home in the image
            # The host user's own ids: the folders stay theirs to read, copy and delete.
            options["user"] = f"{os.getuid()}:{os.getgid()}"
        else:
            volumes = _engine_volumes(engine, profile, key, fresh)
            out.mkdir(parents=True, exist_ok=True)
            # Nothing of this host is mounted there: the results are copied out of the container.
            options["copy_out"] = (OUT_MOUNT, out)
        command = ["bash", COMPILE_SCRIPT, profile.target.elf_spec]
        if only is not None:
            command = ["bash", ONLY_SCRIPT, only, profile.target.elf_spec]
        if place.helpers:
            # First name each helper that does not answer (distcc would only fall back quietly).
            command = ["bash", HELPERS_CHECK, *command]
        return engine.run_streaming(
            image,
            command,
            on_line=on_line,
            volumes=volumes,
            environment=environment,
            # Everything it needs is in the image; with distcc helpers, the network of the
            # engine's machine, which reaches them at the addresses given.
            network="host" if place.helpers else False,
            labels={LABEL: tag},
            **options,
        )


def distcc_environment(place: CompilePlace) -> dict[str, str]:
    """ccache hands each compile it cannot answer to distcc (``CCACHE_PREFIX``), which
    preprocesses here (its plain mode: the helpers need no headers, only the same compiler)
    and sends the result to a helper; the compile's engine takes jobs too (``localhost``, last:
    it also preprocesses). An unreachable helper: distcc compiles that job here and says so."""
    if not place.helpers:
        return {}
    hosts = [helper.spec for helper in place.helpers] + [f"localhost/{place.cpus}"]
    return {
        "CCACHE_PREFIX": "distcc",
        "DISTCC_HOSTS": " ".join(hosts),
        "DISTCC_DIR": "/tmp/distcc",  # its lock and state files
    }


def _host_folders(profile: Profile, key: str, fresh: bool, out: Path) -> dict[str, dict[str, str]]:
    folders = compile_folders(profile)
    work = folders.build / key
    # One build folder, the key's: others (another version or patch set) are gigabytes
    # no build will use again.
    for other in folders.build.glob("*"):
        if other != work or fresh:
            shutil.rmtree(other, ignore_errors=True)
    for folder in (work, folders.ccache, out):
        folder.mkdir(parents=True, exist_ok=True)
    return {
        str(work): {"bind": BUILD_MOUNT, "mode": "rw"},
        str(folders.ccache): {"bind": CCACHE_MOUNT, "mode": "rw"},
        str(out): {"bind": OUT_MOUNT, "mode": "rw"},
    }


def _engine_volumes(engine: Engine, profile: Profile, key: str, fresh: bool) -> dict[str, dict[str, str]]:
    """Named volumes on the compile's engine: unlike BuildKit's cache mounts they are never
    garbage-collected, and an interrupted compile resumes from them as from host folders."""
    build, ccache = volume_names(profile, key)
    arch = profile.target.debian_arch
    for other in engine.list_volumes(f"{VOLUME_LABEL}={arch}-build"):
        if other != build or fresh:
            engine.remove_volume(other)
    engine.ensure_volume(build, {VOLUME_LABEL: f"{arch}-build"})
    engine.ensure_volume(ccache, {VOLUME_LABEL: f"{arch}-ccache"})
    return {
        build: {"bind": BUILD_MOUNT, "mode": "rw"},
        ccache: {"bind": CCACHE_MOUNT, "mode": "rw"},
    }


@dataclass(frozen=True)
class CompileState:
    """How far the compile of one key has got at its place (for doctor)."""

    running: bool  # now: this host holds its lock, or its container runs on the engine
    started: str | None  # the build folder (or volume) a next compile resumes; None: none yet


def compile_state(profile: Profile, key: str, place: CompilePlace | None) -> CompileState:
    """Whether the compile of ``key`` at ``place`` runs now and what it resumes from. A compile
    on another engine is seen there (its container's label), whichever host started it;
    ``place`` None (no engine to ask): this host's folders and lock only."""
    from rpibuild.host.locks import is_held

    running = is_held(compile_lock_name(profile, place))
    if place is not None and not running:
        running = bool(place.engine.running_labelled_containers(f"{LABEL}={compile_tag(profile, place)}"))
    if place is None or place.host_folders:
        folder = compile_folders(profile).build / key
        return CompileState(running, str(folder) if folder.is_dir() else None)
    volume = volume_names(profile, key)[0]
    found = place.engine.list_volumes(f"{VOLUME_LABEL}={profile.target.debian_arch}-build")
    return CompileState(
        running, f"the volume {volume} at {place.engine.address}" if volume in found else None
    )


def discard_build_folder(profile: Profile, key: str, place: CompilePlace | None = None) -> None:
    """Remove the key's build folder once its wheel is stored (gigabytes no build needs again:
    a build with this key takes the stored wheel, another key gets a folder of its own);
    ccache stays, so a changed key recompiles only what changed."""
    with host_lock(compile_lock_name(profile, place)):
        if place is None or place.host_folders:
            shutil.rmtree(compile_folders(profile).build / key, ignore_errors=True)
        else:
            place.engine.remove_volume(volume_names(profile, key)[0])
