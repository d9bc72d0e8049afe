"""The build-platform side of a cross build (``build.cross``).

C++ for the Pi is compiled on the host's own architecture with Debian's cross toolchain
(``crossbuild-essential-<arch>``, the target's libraries through multiarch), which is 10-100x
faster than compiling under QEMU; QEMU then only runs what must execute target code
(installing into the image, verify). The build-platform base is bootstrapped the same
content-addressed way as the target's, from the same suite, so both sides have the same
compiler, glibc and Python.
"""

from __future__ import annotations

import platform as host

from rpibuild.config.model import Profile
from rpibuild.errors import ConfigError

# `uname -m` of this host -> the OCI platform BuildKit runs build-platform stages on.
_HOST_PLATFORMS = {"x86_64": "linux/amd64"}


def build_platform() -> str:
    """The OCI platform of this host (BuildKit's ``BUILDPLATFORM`` with the docker driver)."""
    machine = host.machine()
    try:
        return _HOST_PLATFORMS[machine]
    except KeyError:
        raise ConfigError(
            f"cross builds need an x86_64 host (this one is {machine})",
            field="build.cross",
            hint="--set build.cross=false builds everything under QEMU",
        ) from None


def compiles(profile: Profile) -> bool:
    """Whether the build compiles C++ at all: QPULib, torch from Debian's source, or the
    extension's operators (built against torch: without torch it is a pure-Python wheel)."""
    operators = profile.extension.enabled and profile.torch.source != "none"
    return profile.qpulib.enabled or operators or profile.torch.source == "debian"


def wants_cross(profile: Profile) -> bool:
    """Whether the build has anything to compile on the build platform for a foreign target
    (a target this host runs natively, such as host-emulator's amd64, compiles in place)."""
    foreign = profile.target.binfmt is not None
    return profile.build.cross and compiles(profile) and foreign


def check_cross(profile: Profile) -> None:
    """Refuse cross settings that cannot work, before anything runs."""
    if profile.torch.source == "debian" and not profile.build.cross:
        raise ConfigError(
            "torch.source 'debian' is cross-compiled: it needs build.cross: true",
            field="build.cross",
            hint="a torch compile under QEMU takes days; keep build.cross: true",
        )
    if not wants_cross(profile):
        return
    if not profile.target.cross:
        raise ConfigError(
            f"{profile.platform} has no Debian cross toolchain (armhf's emits ARMv7 code)",
            field="build.cross",
            hint="--set build.cross=false compiles under QEMU",
        )
    if profile.base.bootstrap is None:
        raise ConfigError(
            "build.cross needs base.bootstrap: the build-platform base is bootstrapped "
            "from the same Debian suite as the target",
            field="build.cross",
            hint="bootstrap the base, or --set build.cross=false",
        )
    build_platform()


def cross_base_profile(profile: Profile) -> Profile:
    """The profile whose base is the build platform's: same suite, mirror and packages.

    Only the base is taken from it (``rpibuild.base.ensure_base``), so its content hash and
    tag follow the same rules as the target's base.
    """
    return profile.model_copy(update={"platform": build_platform()})
