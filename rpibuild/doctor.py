"""Host checks: is everything a build of this profile needs here, and if not, how to fix it."""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from rpibuild import qemu
from rpibuild.config.model import Profile
from rpibuild.errors import EngineError, HostSetupError

MIN_FREE_GIB = 10


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def check_engine() -> tuple[Check, str | None]:
    """Reach the engine; returns the check and its root dir (for the disk check)."""
    from rpibuild.engine import START_HINT, DockerEngine

    try:
        engine = DockerEngine.connect(timeout=10)
        version = engine.version()
        root = engine.info().get("DockerRootDir")
    except EngineError as exc:
        return Check("engine", False, exc.message, START_HINT), None
    detail = f"Docker {version.get('Version', '?')} (API {version.get('ApiVersion', '?')})"
    return Check("engine", True, detail), root


def check_binfmt(arch: str) -> Check:
    name = f"binfmt qemu-{arch}"
    if not qemu.is_mounted():
        return Check(name, False, "binfmt_misc is not mounted", "rpibuild qemu install")
    handler = qemu.status(arch)
    problem = handler.problem()
    if problem:
        return Check(name, False, problem, "rpibuild qemu install")
    return Check(name, True, f"enabled, flags {handler.flags}, {handler.interpreter}")


def check_qemu_user_static(arch: str) -> Check:
    try:
        line = qemu.handler_line(arch)
    except HostSetupError as exc:
        return Check("qemu-user-static", False, exc.message, qemu.INSTALL_HINT)
    interpreter = line.split(":")[6]
    if not Path(interpreter).exists():
        return Check("qemu-user-static", False, f"{interpreter} is missing", qemu.INSTALL_HINT)
    return Check("qemu-user-static", True, interpreter)


def check_debootstrap() -> Check:
    path = shutil.which("debootstrap")
    if path is None:
        return Check(
            "debootstrap",
            False,
            "not installed (a helper container would be needed)",
            "apt-get install -y debootstrap",
        )
    return Check("debootstrap", True, path)


def check_disk(path: str | None) -> Check:
    target = Path(path) if path and Path(path).exists() else Path.cwd()
    usage = shutil.disk_usage(target)
    free_gib = usage.free / 2**30
    detail = f"{free_gib:.1f} GiB free on {target}"
    if free_gib < MIN_FREE_GIB:
        return Check("disk", False, detail + f" (a build wants {MIN_FREE_GIB} GiB)", "free some space")
    return Check("disk", True, detail)


def check_root() -> Check:
    if os.geteuid() == 0:
        return Check("privileges", True, "root")
    return Check("privileges", False, "not root: binfmt and debootstrap need root", "run rpibuild as root")


def check_registry(profile: Profile) -> Check:
    """The profile's registry answers /v2/ and takes the credentials docker has stored for it."""
    from rpibuild import registry

    ok, detail, fix = registry.check_registry(profile)
    return Check("registry", ok, detail, fix)


def run_checks(profile: Profile | None) -> list[Check]:
    """Every check that matters for ``profile`` (all ARM handlers when no profile is given)."""
    checks = [check_root()]
    engine, root = check_engine()
    checks.append(engine)
    arches = (
        [profile.target.binfmt]
        if profile and profile.target.binfmt
        else []
        if profile
        else list(qemu.HANDLERS)
    )
    for arch in arches:
        assert arch is not None
        checks.append(check_qemu_user_static(arch))
        checks.append(check_binfmt(arch))
    if profile is None or profile.base.bootstrap is not None:
        checks.append(check_debootstrap())
    checks.append(check_disk(root))
    if profile is not None and profile.registry.url:
        checks.append(check_registry(profile))
    return checks
