"""Host checks: is everything a build of this profile needs here, and if not, how to fix it."""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rpibuild.config.model import Profile
from rpibuild.errors import ConfigError, EngineError, HostSetupError
from rpibuild.host import qemu
from rpibuild.planning.plan import Plan, make_plan

if TYPE_CHECKING:
    from rpibuild.torch_routes.compile_place import CompilePlace

MIN_FREE_GIB = 10


@dataclass(frozen=True)
class Check:
    """One check's result. ``skipped``: it could not run (the engine is down): not a failure
    of its own, and never shown as OK with empty details."""

    name: str
    ok: bool
    detail: str
    fix: str | None = None
    skipped: bool = False

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def skipped(name: str, why: str) -> Check:
    return Check(name, True, why, skipped=True)


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
    name = f"qemu-{arch}-static"  # one per architecture: names are unique in --json
    try:
        line = qemu.handler_line(arch)
    except HostSetupError as exc:
        return Check(name, False, exc.message, qemu.INSTALL_HINT)
    interpreter = line.split(":")[6]
    if not Path(interpreter).exists():
        return Check(name, False, f"{interpreter} is missing", qemu.INSTALL_HINT)
    return Check(name, True, interpreter)


def check_buildx() -> Check:
    """The buildx plugin: every build goes through it."""
    from rpibuild.engine import buildx

    found = buildx.version()
    if found is None:
        return Check("buildx", False, "the docker buildx plugin is missing", buildx.INSTALL_HINT)
    shown = ".".join(map(str, found))
    if found < buildx.MIN_VERSION:
        wanted = ".".join(map(str, buildx.MIN_VERSION))
        return Check("buildx", False, f"buildx {shown} is older than {wanted}", buildx.INSTALL_HINT)
    return Check("buildx", True, f"buildx {shown}")


def check_builder(name: str | None, platform: str | None) -> Check:
    """The selected builder: its driver, nodes, platforms, and whether it exports caches."""
    from rpibuild.engine import buildx
    from rpibuild.errors import RpibuildError

    try:
        builder = buildx.select_builder(name)
    except RpibuildError as exc:
        return Check("builder", False, exc.message, exc.hint)
    nodes = "; ".join(
        f"{node.name} ({node.endpoint}, {node.status}): {', '.join(node.platforms) or 'no platforms'}"
        for node in builder.nodes
    )
    cache = "exports build caches" if builder.exports_cache else "no cache export (--cache-to needs "
    if not builder.exports_cache:
        cache += "a docker-container builder)"
    detail = f"{builder.name}, driver {builder.driver}, {cache}; nodes: {nodes or 'none'}"
    if platform and builder.platforms and platform not in builder.platforms:
        return Check(
            "builder",
            False,
            f"{detail}; it cannot build {platform}",
            "rpibuild qemu install (then `docker buildx ls` lists the arm platforms), or add a native node",
        )
    return Check("builder", True, detail)


def check_bootstrap_tool(tool: str = "mmdebstrap") -> Check:
    """Where bases are bootstrapped, decided as a bootstrap decides it (bootstrap_on_host):
    the host's tool, or a helper container when rpibuild is not root or the tool is absent."""
    from rpibuild.build.base import DEBOOTSTRAP_MODE_ENV, bootstrap_on_host

    try:
        on_host = bootstrap_on_host(tool)
    except HostSetupError as err:
        return Check(tool, False, err.message, err.hint)
    if on_host:
        return Check(tool, True, str(shutil.which(tool)))
    mode = os.environ.get(DEBOOTSTRAP_MODE_ENV, "auto")
    if mode == "container":
        why = f"{DEBOOTSTRAP_MODE_ENV}=container"
    elif os.geteuid() != 0:
        why = "not root"
    else:
        why = "not installed"
    return Check(tool, True, f"not used ({why}): bases are bootstrapped in a helper container")


def check_disk(root: str | None) -> Check:
    """Free space where the engine keeps images and build caches (its data root), which is
    what a build fills; not the working directory, often another file system."""
    if root is None:
        return skipped("disk", "the engine is unreachable, so its data root is unknown")
    target = Path(root)
    try:
        usage = shutil.disk_usage(target)
    except OSError:
        return skipped("disk", f"the engine's data root {root} is not on this host (a remote engine)")
    free_gib = usage.free / 2**30
    detail = f"{free_gib:.1f} GiB free on {target} (the engine's data root)"
    if free_gib < MIN_FREE_GIB:
        return Check(
            "disk",
            False,
            detail + f" (a build wants {MIN_FREE_GIB} GiB)",
            "free some space (docker system df shows what the engine holds)",
        )
    return Check("disk", True, detail)


def check_root() -> Check:
    """Root is needed only to register binfmt handlers (``sudo rpibuild qemu install``) and
    to debootstrap on the host; without it a base is bootstrapped in a helper container."""
    if os.geteuid() == 0:
        return Check("privileges", True, "root")
    return Check(
        "privileges",
        True,
        "not root: bases are bootstrapped in a helper container; binfmt handlers are "
        "registered with `sudo rpibuild qemu install`",
    )


def check_registry(profile: Profile) -> Check:
    """The profile's registry is reachable and takes the login docker has stored for it."""
    from rpibuild.publish import registry

    ok, detail, fix = registry.check_registry(profile)
    return Check("registry", ok, detail, fix)


def check_torch_wheel(profile: Profile, plan: Plan, place: CompilePlace | None = None) -> Check:
    """torch.source debian: whether the compiled wheel is in the store, the team's registry
    (check_shared_wheel), or the next build compiles it (hours), and how far a compile at
    ``place`` has got (running now, or a build folder it resumes). Information, never a
    failure, but for a registry that cannot be asked."""
    from rpibuild.torch_routes.debian_compile import compile_folders, compile_state

    key = plan.torch_key
    if plan.torch_wheel is not None:
        return Check("torch wheel", True, f"stored: {plan.torch_wheel.wheel}")
    shared = check_shared_wheel(profile, plan)
    if shared is not None:
        return shared
    state = compile_state(profile, key, place)
    where = "on this host" if place is None or place.engine.is_local else f"at {place.engine.address}"
    if state.running:
        return Check(
            "torch wheel",
            True,
            f"not compiled yet (key {key}): a compile is running now {where}; "
            "a build started meanwhile waits for it",
        )
    if state.started is not None:
        return Check(
            "torch wheel",
            True,
            f"not compiled yet (key {key}): a compile was started in {state.started}; "
            "the next build resumes it",
        )
    kept = compile_folders(profile).root if place is None or place.host_folders else "its volumes there"
    return Check(
        "torch wheel",
        True,
        f"not compiled yet (key {key}): the next build compiles torch {profile.torch.version} "
        f"from Debian's source, hours on a small host; an interrupted compile resumes from {kept}",
    )


def check_shared_wheel(profile: Profile, plan: Plan) -> Check | None:
    """torch.wheel_store: registry and no stored wheel: whether the registry has it (the next
    build fetches it) or cannot be asked (the build would stop, exit 6: a failure here). None
    when the registry has no such wheel (the build compiles, as check_torch_wheel says)."""
    from rpibuild.build import wheel_share
    from rpibuild.planning.plan import REGISTRY, REGISTRY_OR_COMPILE

    plan = wheel_share.resolve(profile, plan)
    remote, note = plan.torch_wheel_remote, plan.torch_wheel_note
    if plan.torch_wheel_from == REGISTRY:
        detail = f"not stored here: the next build fetches it from {remote} ({note})"
        return Check("torch wheel", True, detail)
    if plan.torch_wheel_from == REGISTRY_OR_COMPILE:
        return Check(
            "torch wheel",
            False,
            f"not stored here (key {plan.torch_key}), and {note}",
            "a build stops at this (exit 6) rather than compile for hours: fix the registry, "
            "or compile here with --set torch.wheel_store=local",
        )
    return None


def check_torch_compile(profile: Profile, builder: str | None) -> tuple[Check, CompilePlace | None]:
    """torch.source debian: where the compile will run (the engine behind the builder), with
    how many jobs and which distcc helpers; a helper list that does not parse fails here."""
    from rpibuild.engine import DockerEngine
    from rpibuild.errors import RpibuildError
    from rpibuild.torch_routes.compile_place import compile_place

    try:
        place = compile_place(DockerEngine.connect(builder=builder, timeout=10), profile)
    except RpibuildError as exc:
        return Check("torch compile", False, exc.message, exc.hint), None
    folders = "host folders" if place.host_folders else "named volumes there"
    return Check("torch compile", True, f"on {place.describe()}; build folder and ccache in {folders}"), place


def run_checks(profile: Profile | None, builder: str | None = None) -> list[Check]:
    """Every check that matters for ``profile`` (all ARM handlers when no profile is given).

    ``builder``: the --builder option or RPIBUILD_BUILDER, as build takes them; else the
    profile's build.builder; else the current builder.
    """
    checks = [check_root()]
    engine, root = check_engine()
    checks.append(engine)
    buildx_check = check_buildx()
    checks.append(buildx_check)
    if not engine.ok:
        checks.append(skipped("builder", "the engine is unreachable"))
    elif buildx_check.ok:
        chosen = builder or (profile.build.builder if profile else None)
        checks.append(check_builder(chosen, profile.platform if profile else None))
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
        tool = profile.base.bootstrap.tool if profile and profile.base.bootstrap else "mmdebstrap"
        checks.append(check_bootstrap_tool(tool))
    checks.append(check_disk(root))
    plan = None
    if profile is not None:
        try:
            plan = make_plan(profile)
        except ConfigError as exc:  # e.g. a cross build on a host that is not x86_64
            checks.append(Check("build plan", False, exc.reason, exc.hint))
    if profile is not None and plan is not None and plan.torch_key:
        compile_check, place = None, None
        if plan.torch_wheel is None and engine.ok:
            compile_check, place = check_torch_compile(profile, builder or profile.build.builder)
        checks.append(check_torch_wheel(profile, plan, place))
        if compile_check is not None:
            checks.append(compile_check)
    if profile is not None and profile.registry.url:
        checks.append(check_registry(profile))
    return checks
