"""torch from Debian's source package (``torch.source: debian``): the build's key and the wheel store.

The compile takes hours on a small host, so a finished wheel is kept under rpibuild's cache,
named by a key over everything that goes into it; a build with the same key copies the stored
wheel instead of compiling. The key hashes the rendered stages that build the wheel
(``torch-source`` and every stage it is built from: the cross toolchain, the package lists,
the base's reference, which carries the base's own key) and every file those stages copy in
(fetch.sh, build.sh, compile.sh, the patches, the ELF check...), found by reading the stages
(rpibuild.planning.keys), never a hand-kept list: a missed input would silently reuse a wheel built
from other ones. The same key names the compile's build folder (rpibuild.torch_routes.debian_compile),
where an interrupted compile resumes; a changed key recompiles through ccache.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rpibuild.build import sources  # a module: config -> torch_routes -> here -> sources -> config
from rpibuild.planning import keys
from rpibuild.resources import images_dir
from rpibuild.torch_routes.route import BUILD_PLATFORM, RouteFiles, TorchRoute, package_list

if TYPE_CHECKING:
    from rpibuild.config.model import Profile, Torch

RUNTIME_PACKAGES = "torch-runtime-packages.txt"
# The stage whose rendering (with every stage it is built from) the wheel's key hashes.
WHEEL_STAGE = "torch-source"
# The stage whose image the compile runs in (rpibuild.torch_routes.debian_compile): torch-source
# plus distcc's client, outside the key.
COMPILE_STAGE = "torch-compile"
# Context files the wheel's stages copy that cannot change the wheel: the CA bundle only
# lets the fetch through a TLS-intercepting proxy (the source is checked by Debian's
# signatures and checksums), and with `ca_bundle: host` it changes with every update of the
# host's ca-certificates, which must not throw away hours of compiling.
TRANSPORT_ONLY = frozenset({"rpibuild/ca-bundle.pem"})
# Bind mounts of a local source mirror (its pip/ and debian/ folders): how files arrive, not
# what is built (left out of the wheel's key, so a host building from a gathered mirror folder
# has the same key as the host that gathered it).
TRANSPORT_MOUNT = re.compile(r"\s*--mount=type=bind,source=(?:pip-mirror|debian-archive),target=\S+")
# Bump when what the compile does changes in a way neither the stages nor their files show
# (the compile container's command line is built in rpibuild.torch_routes.debian_compile).
RECIPE_VERSION = 2
# The build-platform stages that compile the wheel (left out once it is stored).
COMPILE_STAGES = ("torch-source", "torch-c10", "torch-compile", "distcc-helper")
# What Debian's pytorch source needs on the build platform (tools) and for the target
# (libraries through multiarch); `apt-get build-dep -a` does not resolve for armhf, so named.
TORCH_BUILD_PACKAGES = (
    "dpkg-dev",
    "xz-utils",
    "patch",
    "cmake",
    "ninja-build",
    "pkgconf",
    "python3-dev",
    "python3-yaml",
    "python3-typing-extensions",
    "flatbuffers-compiler",
    "protobuf-compiler",
    "pybind11-dev",
    "nlohmann-json3-dev",
    "libeigen3-dev",
    "libsleef-dev:{arch}",
    "libonnx-dev:{arch}",
    "libprotobuf-dev:{arch}",
    "libfmt-dev:{arch}",
    "libcpuinfo-dev:{arch}",
    "libpthreadpool-dev:{arch}",
    "libfxdiv-dev:{arch}",
    "libfp16-dev:{arch}",
    "libpsimd-dev:{arch}",
    "libflatbuffers-dev:{arch}",
    "libopenblas-dev:{arch}",
    "libblas-dev:{arch}",
    "liblapack-dev:{arch}",
    "libcpp-httplib-dev:{arch}",
    "python3-numpy-dev:{arch}",
)


def rpibuild_patches() -> dict[str, str]:
    """rpibuild's own patches on Debian's pytorch source (applied after Debian's series), each
    with its sha256, from images/torch-debian/patches/series."""
    folder = images_dir() / "torch-debian" / "patches"
    try:
        lines = (folder / "series").read_text(encoding="utf-8").splitlines()
    except OSError:
        return {}
    names = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    return {
        f"patch {name}": hashlib.sha256((folder / name).read_bytes()).hexdigest()
        for name in names
        if (folder / name).is_file()
    }


class DebianRoute(TorchRoute):
    """Debian's pytorch source, cross-compiled once on the build platform into a wheel that
    carries its runtime package list; stored by its content key and reused."""

    name = "debian"
    compiled_on = BUILD_PLATFORM
    carries_package_list = True
    needs_system_pybind11 = True

    def required(self, torch: Torch) -> str | None:
        if torch.version:
            return None
        return "torch.source 'debian' needs torch.version (the Debian version, e.g. 2.6.0+dfsg-7)"

    def origin(self, torch: Torch) -> tuple[str, str]:
        return f"Debian's pytorch {torch.version} source", "the archive's signatures"

    def debian_source(self, torch: Torch) -> tuple[str, str] | None:
        return ("pytorch", torch.version or "")

    def pinned_sources(self, torch: Torch) -> list[dict[str, str]]:
        entry = {"name": "pytorch (Debian source)", "version": torch.version or ""}
        entry.update(rpibuild_patches())
        return [entry]

    def build_platform_stages(self, *, stored: bool) -> tuple[str, ...]:
        return () if stored else COMPILE_STAGES

    def context(self, profile: Profile, images: Path, stored: Path | None) -> RouteFiles:
        files = {"rpibuild/wheel_packages.py": images / "torch-debian" / "wheel_packages.py"}
        if stored is not None:
            inside = f"torch/{stored.name}"
            return RouteFiles({**files, inside: stored}, wheel=inside)
        return RouteFiles(
            files, {"torch-debian": images / "torch-debian", "torch-compile": images / "torch-compile"}
        )

    def debian_packages(self, profile: Profile, stored: Path | None) -> tuple[str, ...] | None:
        """The list stored beside the wheel; unknown until the wheel is compiled."""
        if stored is None:
            return None
        return package_list((stored.parent / RUNTIME_PACKAGES).read_text(encoding="utf-8"))

    def cross_values(self, profile: Profile, torch_key: str) -> dict[str, object]:
        arch = profile.target.debian_arch
        # The c10 check's build folder and ccache: its own, locked (a second check waits).
        # Shared with the small QPULib/extension compiles, BuildKit once came to hold several
        # copies of one ccache id, later builds getting whichever it found first.
        mounts = " ".join(
            f"--mount=type=cache,id=rpibuild-{name}-{arch},target={folder},sharing=locked"
            for name, folder in (
                ("torch-c10-build", "/var/cache/rpibuild/torch"),
                ("torch-c10-ccache", "/var/cache/rpibuild/ccache"),
            )
        )
        return {
            "torch_build_packages": [p.format(arch=arch) for p in TORCH_BUILD_PACKAGES],
            "torch_build_key": torch_key,
            "torch_c10_mounts": mounts,
        }


ROUTE = DebianRoute()


def wheel_key(profile: Profile, dockerfile: str, files: Mapping[str, Path], dirs: Mapping[str, Path]) -> str:
    """The wheel's content key, from the rendered Dockerfile and its context (not from how fast
    it is compiled: MAX_JOBS is left out)."""
    # Where the source package comes from (the mirror, or a gathered archive mounted into the
    # fetch) is transport: apt checks it against the same signed index either way.
    chain = {
        name: [TRANSPORT_MOUNT.sub("", text) for text in texts]
        for name, texts in keys.stage_chain(dockerfile, WHEEL_STAGE).items()
    }
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
    return sources.cache_dir() / "torch"


@dataclass(frozen=True)
class StoredWheel:
    """A wheel built earlier with the same key, and the Debian packages its libraries need."""

    wheel: Path
    runtime_packages: Path

    @property
    def sha256(self) -> str:
        return sources.file_sha256(self.wheel)


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
