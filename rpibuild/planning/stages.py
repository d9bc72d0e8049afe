"""Which stages a build has, where each runs, and what the torch route asks of them.

Decided once here from the profile and the host's facts, so that rendering, building,
doctor and the printed plan (rpibuild.planning.plan) read one answer instead of each asking the
profile again (``wants_cross``, "does this route install natively", "which stages"...).
Pure: no engine, no rendering; rpibuild.planning.render and rpibuild.planning.plan sit above it.
"""

from __future__ import annotations

from dataclasses import dataclass

from rpibuild.config.model import Profile
from rpibuild.errors import ConfigError
from rpibuild.host import build_platform as cross
from rpibuild.torch_routes import route_of
from rpibuild.torch_routes.route import BUILD_PLATFORM, TorchRoute

# The target's stages, in build order.
# verify-torch (torch's checks and op sweep, from the torch stage) is cached apart from the
# extension: an extension edit reruns only verify.
TARGET_STAGES = ("system", "torch", "qpulib", "extension", "verify-torch", "verify", "runtime")
# Stages on the build platform (build.cross): compiled there, installed into a target stage.
CROSS_STAGES = (
    "cross",
    "torch-source",
    "torch-c10",
    "torch-compile",
    "distcc-helper",
    "torch-install",
    "qpulib-build",
    "extension-build",
)
# Build-platform stages about torch's compile itself: a build that stops at one of them never
# takes the wheel from the store, nor compiles it (rpibuild/torch_routes/debian_compile.py does, in a
# container of torch-source).
TORCH_BUILD_STAGES = ("cross", "torch-source", "torch-c10", "torch-compile", "distcc-helper")


@dataclass(frozen=True)
class Stage:
    """One Dockerfile stage and where it runs."""

    name: str
    platform: str  # the OCI platform it runs as
    emulated: bool  # under QEMU (binfmt) on this host

    @property
    def on_build_platform(self) -> bool:
        return self.name in CROSS_STAGES

    @property
    def place(self) -> str:
        """Where it runs, in words (the rendered Dockerfile's header says it too)."""
        if self.on_build_platform:
            return "build platform, native"
        return self.platform + (" under QEMU" if self.emulated else "")


@dataclass(frozen=True)
class StagePlan:
    """The stage decisions of one build."""

    cross: bool  # C++ compiled on the build platform (build.cross and something to compile)
    build_platform: str | None  # the host's OCI platform, when cross
    route: TorchRoute
    torch_installed_natively: bool  # torch-install: the wheel installed by the build platform's pip
    compiles_on_target: bool  # the target's stages compile C++ (no cross build)
    torch_stored: bool  # torch.source debian: the wheel is in the store already
    stages: tuple[Stage, ...]
    # Every stage a build may stop at (--target), the torch compile's stages included even
    # when the wheel is stored.
    targets: tuple[str, ...]
    verify_cpu: str | None  # the QEMU CPU verify runs as: the Pi's own core
    emulator_tests: bool  # verify also runs the extension's emulator tests

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(stage.name for stage in self.stages)

    def platform_of(self, stage: str | None) -> str:
        """The platform a build stopping at ``stage`` produces (a build-platform stage is an
        image of the build platform; asked for the target's, BuildKit would mislabel it)."""
        if stage in CROSS_STAGES and self.build_platform:
            return self.build_platform
        return next((s.platform for s in self.stages if s.name == "runtime"), "")


def compiles(profile: Profile) -> bool:
    """Whether the build compiles C++ at all: QPULib, torch from Debian's source, or the
    extension's operators (built against torch: without torch it is a pure-Python wheel)."""
    route = route_of(profile.torch.source)
    operators = profile.extension.enabled and route.installs_torch
    return profile.qpulib.enabled or operators or route.compiled_on == BUILD_PLATFORM


def wants_cross(profile: Profile) -> bool:
    """Whether the build has anything to compile on the build platform for a foreign target
    (a target this host runs natively, such as host-emulator's amd64, compiles in place)."""
    foreign = profile.target.binfmt is not None
    return profile.build.cross and compiles(profile) and foreign


def check_cross(profile: Profile) -> None:
    """Refuse cross settings that cannot work, before anything runs."""
    route = route_of(profile.torch.source)
    if route.compiled_on == BUILD_PLATFORM and not profile.build.cross:
        raise ConfigError(
            f"torch.source {route.name!r} is cross-compiled: it needs build.cross: true",
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
    cross.build_platform()


def plan_stages(profile: Profile, *, torch_stored: bool = False, native: tuple[str, ...] = ()) -> StagePlan:
    """Decide the stages of ``profile`` (``torch_stored``: its Debian wheel is in the store;
    ``native``: the platforms the builder runs without QEMU, when known)."""
    target = profile.target
    is_cross = wants_cross(profile)
    route = route_of(profile.torch.source)
    natively = is_cross and route.wheel_before_target
    on_build = cross.build_platform() if is_cross else None

    def names(stored: bool) -> tuple[str, ...]:
        if not is_cross:
            return TARGET_STAGES
        extra = ["cross"]
        extra += route.build_platform_stages(stored=stored)
        if natively:
            extra.append("torch-install")
        if profile.qpulib.enabled:
            extra.append("qpulib-build")
        if profile.extension.enabled:
            extra.append("extension-build")
        return (*extra, *TARGET_STAGES)

    stages = tuple(
        Stage(name, on_build, emulated=False)
        if name in CROSS_STAGES and on_build
        else Stage(
            name, profile.platform, emulated=target.binfmt is not None and profile.platform not in native
        )
        for name in names(torch_stored)
    )
    verify = profile.verify
    return StagePlan(
        cross=is_cross,
        build_platform=on_build,
        route=route,
        torch_installed_natively=natively,
        compiles_on_target=not is_cross and compiles(profile),
        torch_stored=torch_stored,
        stages=stages,
        targets=tuple(dict.fromkeys((*names(torch_stored), *names(False)))),
        verify_cpu=verify.qemu_cpu or target.qemu_cpu,
        emulator_tests=(
            verify.enabled and verify.emulator and profile.extension.enabled and profile.qpulib.enabled
        ),
    )
