"""The torch compile (``torch.source: debian``): a container whose build folder and ccache are
host folders under rpibuild's cache.

Not a BuildKit step: BuildKit garbage-collects its cache mounts (by default once unused for
two days, and whenever the build cache outgrows its cap), which can throw away hours of
compiling between two builds. A host folder stays until the user deletes it, survives
``docker builder prune``, can be copied or cached by CI, and an interrupted compile resumes
from it. The image it runs in is the ``torch-source`` stage, built by buildx as usual.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rpibuild.build.sources import cache_dir
from rpibuild.config.model import Profile
from rpibuild.engine import Engine
from rpibuild.host.locks import host_lock

# Where compile.sh expects its folders in the container (the cross stage's CCACHE_DIR). The
# key's build folder is always mounted at the same path: the paths the compiler sees (and
# ccache hashes, e.g. in generated files that #include by absolute path) do not change with
# the key, so a new key (another patch) finds in ccache what the last one compiled.
BUILD_MOUNT = "/var/cache/rpibuild/torch/build"
CCACHE_MOUNT = "/var/cache/rpibuild/ccache"
OUT_MOUNT = "/opt/rpibuild/wheels"
COMPILE_SCRIPT = "/opt/rpibuild/src/torch-debian/compile.sh"
LABEL = "io.rpibuild.torch-compile"


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


def compile_lock_name(profile: Profile) -> str:
    """The host lock a compile into the profile's folders holds while it runs."""
    return f"torch-compile-{compile_folders(profile).tag}"


def compile_wheel(
    engine: Engine,
    image: str,
    profile: Profile,
    out: Path,
    *,
    key: str,
    fresh: bool,
    on_line: Callable[[str], None],
    on_wait: Callable[[], None] | None = None,
) -> int:
    """Run the compile in ``image`` (the torch-source stage); the wheel and its package list go
    to ``out``. Returns compile.sh's exit code. ``key`` is the wheel's content key
    (rpibuild.torch_routes.debian.wheel_key): its build folder is the one resumed.

    ``fresh`` starts over in an empty build folder (ccache keeps every object it made). One
    compile per folder at a time: a host lock, and a container left running by a killed
    rpibuild process is removed before a new one starts.
    """
    folders = compile_folders(profile)
    with host_lock(compile_lock_name(profile), on_wait=on_wait):
        stale = engine.remove_labelled_containers(f"{LABEL}={folders.tag}")
        if stale:
            on_line(f"compile: removed {len(stale)} compile container(s) an earlier rpibuild left running")
        work = folders.build / key
        # One build folder, the key's: others (another version or patch set) are gigabytes
        # no build will use again.
        for other in folders.build.glob("*"):
            if other != work or fresh:
                shutil.rmtree(other, ignore_errors=True)
        for folder in (work, folders.ccache, out):
            folder.mkdir(parents=True, exist_ok=True)
        environment = {"MAX_JOBS": str(profile.torch.max_jobs)}
        if os.getuid() != 0:
            environment["HOME"] = "/tmp"  # the host user's id has no home in the image
        return engine.run_streaming(
            image,
            ["bash", COMPILE_SCRIPT, profile.target.elf_spec],
            on_line=on_line,
            volumes={
                str(work): {"bind": BUILD_MOUNT, "mode": "rw"},
                str(folders.ccache): {"bind": CCACHE_MOUNT, "mode": "rw"},
                str(out): {"bind": OUT_MOUNT, "mode": "rw"},
            },
            environment=environment,
            # The host user's own ids: the folders stay theirs to read, copy and delete.
            user=f"{os.getuid()}:{os.getgid()}",
            network=False,  # everything it needs is in the image
            labels={LABEL: folders.tag},
        )


def discard_build_folder(profile: Profile, key: str) -> None:
    """Remove the key's build folder once its wheel is stored (gigabytes no build needs again:
    a build with this key takes the stored wheel, another key gets a folder of its own);
    ccache stays, so a changed key recompiles only what changed."""
    folders = compile_folders(profile)
    with host_lock(compile_lock_name(profile)):
        shutil.rmtree(folders.build / key, ignore_errors=True)
