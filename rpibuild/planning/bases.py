"""The bases a build starts from, and the Debian packages folded into them.

What a profile's stages would install on the target in the same way on every build (the
build stages' ``apt.packages``, the compilers when the target compiles, the runtime image's
``apt.runtime_packages``, the Debian packages a torch wheel links) goes into content-addressed
bootstrapped bases instead: bootstrapped once (mmdebstrap: apt natively, QEMU only for dpkg
and the maintainer scripts), found again by their key, and no stage runs an emulated
``apt-get update``. A target that compiles nothing (a cross build) has one base with both lists:
each emulated bootstrap costs minutes, and the build stages' extra packages are a few MB of
Python tooling. A target that compiles gets two, so the runtime image never carries the
compilers. A pulled base cannot be changed that way: its stages install the packages as before.
"""

from __future__ import annotations

from dataclasses import dataclass

from rpibuild.config.model import Profile
from rpibuild.host.build_platform import cross_base_profile
from rpibuild.planning.stages import StagePlan
from rpibuild.torch_routes.route import TARGET


@dataclass(frozen=True)
class Bases:
    """The profiles whose bases a build needs (each names its base by ``base.base_reference``)."""

    build: Profile  # the target's build stages start from its base
    runtime: Profile  # the runtime image starts from its base
    build_platform: Profile | None  # a cross build's build-platform stages
    # The target's packages are in the bases (bootstrapped); else the stages install them.
    packages_folded: bool
    # The torch wheel's Debian packages are in the bases (its list was known when planning).
    wheel_packages_folded: bool

    def roles(self) -> list[tuple[str, Profile]]:
        """(role, profile) of each distinct base, in the order a build needs them."""
        out = [("target", self.build)]
        if self.runtime is not self.build:
            out.append(("runtime", self.runtime))
        if self.build_platform is not None:
            out.append(("build platform", self.build_platform))
        return out


def with_packages(profile: Profile, packages: list[str]) -> Profile:
    """``profile`` whose bootstrap also installs ``packages`` (in order, each once)."""
    bootstrap = profile.base.bootstrap
    assert bootstrap is not None
    merged = list(dict.fromkeys([*bootstrap.packages, *packages]))
    return profile.model_copy(
        update={
            "base": profile.base.model_copy(
                update={"bootstrap": bootstrap.model_copy(update={"packages": merged})}
            )
        }
    )


def plan_bases(profile: Profile, stages: StagePlan, wheel_packages: tuple[str, ...] | None) -> Bases:
    """The bases of a build of ``profile`` with these stage decisions; ``wheel_packages``: the
    Debian packages the torch wheel links (None: not known before the build)."""
    cross = cross_base_profile(profile) if stages.cross else None
    if profile.base.bootstrap is None:
        return Bases(profile, profile, cross, packages_folded=False, wheel_packages_folded=False)
    apt = profile.apt
    compiles = stages.compiles_on_target or stages.route.compiled_on == TARGET
    compilers = apt.compiler_packages if compiles else []
    wheel = list(wheel_packages or ())
    runtime = [*apt.runtime_packages, *wheel]
    if profile.image.keep_build_tools:  # compilers included: the image is for building on the Pi
        runtime += [*apt.packages, *apt.compiler_packages]
    if not compilers:
        both = with_packages(profile, [*apt.packages, *runtime])
        return Bases(
            both, both, cross, packages_folded=True, wheel_packages_folded=wheel_packages is not None
        )
    return Bases(
        build=with_packages(profile, [*apt.packages, *compilers, *wheel]),
        runtime=with_packages(profile, runtime),
        build_platform=cross,
        packages_folded=True,
        wheel_packages_folded=wheel_packages is not None,
    )
