"""The build-platform side of a cross build (``build.cross``): which platform it is, its base.

Whether a build crosses at all, and what cannot, is a stage decision (rpibuild.planning.stages).

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


def cross_base_profile(profile: Profile) -> Profile:
    """The profile whose base is the build platform's: same suite, mirror and packages.

    Only the base is taken from it (``rpibuild.build.base.ensure_base``), so its content hash and
    tag follow the same rules as the target's base.
    """
    return profile.model_copy(update={"platform": build_platform()})
