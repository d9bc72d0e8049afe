"""``rpibuild build``: base -> system -> torch -> qpulib -> extension -> verify -> runtime.

One multi-stage Dockerfile, built by BuildKit (the profile's buildx builder) as the build plan
(rpibuild.planning.plan) says: C++ on the build platform, the target's stages for the profile's
platform, under QEMU unless the builder has a native node for it. The image is
tagged only after every stage (verify included) has passed, so a failure never moves a tag.
"""

from __future__ import annotations

import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from pydantic import ValidationError

from rpibuild.build import wheel_share
from rpibuild.build.base import BaseImage, base_reference, ensure_base
from rpibuild.build.base_finish import finishing_profile
from rpibuild.build.context import fetch_sources
from rpibuild.build.sources import cache_dir
from rpibuild.build.wheel_share import Shared
from rpibuild.config.model import Build, Profile
from rpibuild.engine import BuildEvent, BuildRequest, BuildResult, Engine, StageTiming
from rpibuild.engine.progress import TAIL_LINES, compile_status
from rpibuild.errors import BuildError, ConfigError
from rpibuild.planning.plan import COMPILE, REGISTRY, Plan, make_plan, render_planned
from rpibuild.planning.render import Rendered
from rpibuild.planning.stages import TORCH_BUILD_STAGES, check_cross
from rpibuild.redact import mask_urls
from rpibuild.torch_routes.compile_place import bring_image, compile_place, distcc_helpers
from rpibuild.torch_routes.debian import COMPILE_STAGE, StoredWheel, store
from rpibuild.torch_routes.debian_compile import compile_wheel, discard_build_folder

FAILURE_HINTS = (
    ("CERTIFICATE_VERIFY_FAILED", "TLS interception: set network.ca_bundle (default 'host')"),
    ("sha256sum: WARNING", "the wheel's sha256 differs from torch.sha256: check the pin"),
    (
        "Illegal instruction",
        "a binary uses an instruction the Pi's core lacks (QEMU_CPU is the "
        "Pi's core): pick another torch version",
    ),
    ("exec format error", "no binfmt handler for this platform: run `rpibuild qemu install`"),
    ("Exec format error", "no binfmt handler for this platform: run `rpibuild qemu install`"),
    ("Temporary failure resolving", "the container cannot resolve names: check network.*_proxy"),
    ("Could not find a version", "the package index has no such version for this platform"),
    ("No space left on device", "the disk is full: docker system prune, or free space"),
)


@dataclass
class BuildOutcome:
    image: str
    id: str
    tags: list[str]
    platform: str
    base: BaseImage  # the target's build stages' base
    bases: dict[str, dict[str, object]] = field(default_factory=dict)  # every base, by role
    places: dict[str, str] = field(default_factory=dict)  # where each stage ran
    stages: list[StageTiming] = field(default_factory=list)
    log_file: str = ""
    seconds: float = 0.0
    # torch.source debian: the stored wheel (path, sha256, compiled now or reused)
    torch_wheel: dict[str, object] | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "image": self.image,
            "id": self.id,
            "tags": self.tags,
            "platform": self.platform,
            "base": self.base.as_dict(),
            "bases": self.bases,
            "stages": [
                {
                    "name": s.name,
                    "seconds": round(s.seconds, 1),
                    "cached": s.cached,
                    "place": self.places.get(s.name, "build platform, native"),
                }
                for s in self.stages
            ],
            "seconds": round(self.seconds, 1),
            "log_file": self.log_file,
            "torch_wheel": self.torch_wheel,
        }


def proxy_buildargs(profile: Profile) -> dict[str, str]:
    """Proxies as the engine's predefined build args: usable by RUN, kept out of history."""
    network = profile.network
    values = {
        "HTTP_PROXY": network.http_proxy,
        "HTTPS_PROXY": network.https_proxy,
        "NO_PROXY": network.no_proxy,
    }
    args: dict[str, str] = {}
    for name, value in values.items():
        if value:
            args[name] = value
            args[name.lower()] = value
    return args


def with_build_options(
    profile: Profile, builder: str | None, cache_from: tuple[str, ...], cache_to: tuple[str, ...]
) -> Profile:
    """The profile with the command line's builder and caches applied to its ``build`` section."""
    if not (builder or cache_from or cache_to):
        return profile
    merged = profile.build.model_dump()
    if builder:
        merged["builder"] = builder
    merged["cache_from"] = [*merged["cache_from"], *cache_from]
    merged["cache_to"] = [*merged["cache_to"], *cache_to]
    try:
        settings = Build.model_validate(merged)
    except ValidationError as exc:
        problem = exc.errors()[0]
        option = "--" + str(problem["loc"][0]).replace("_", "-")
        raise ConfigError(str(problem["msg"]).removeprefix("Value error, "), field=option) from None
    return profile.model_copy(update={"build": settings})


def build_profile(
    profile: Profile,
    engine: Engine,
    *,
    target: str | None = None,
    no_cache: bool = False,
    refresh_base: bool = False,
    on_event: Callable[[BuildEvent], None] | None = None,
    on_base_progress: Callable[[str], None] | None = None,
    on_log: Callable[[str], None] | None = None,
) -> BuildOutcome:
    """Build (and verify) the profile's image; tag it only when everything passed."""
    started = time.monotonic()
    engine.builder.require_cache_export(profile.build.cache_to)
    check_cross(profile)
    facts = engine.builder
    plan = make_plan(profile, target=target, builder=facts)
    if target is not None and target not in plan.stages.targets:
        raise ConfigError(
            f"unknown stage {target!r} (stages: {', '.join(plan.stages.names)})", field="--target"
        )
    if plan.torch_key:
        distcc_helpers(profile)  # a bad helper list fails now, not after the bases
    # Pinned sources first: an unreachable or tampered archive fails in seconds, not after
    # minutes of bootstrapping.
    sources = fetch_sources(profile)

    announce = on_event or (lambda _event: None)
    # torch.wheel_store: registry: another host may have compiled this key already. Asked
    # before any base is bootstrapped, so a registry that fails does so in seconds too.
    torch_stages: list[StageTiming] = []
    wheel_from = plan.torch_wheel_from
    shared: Shared | None = None
    if plan.torch_wheel is None and plan.torch_key and target not in TORCH_BUILD_STAGES:
        fetched, shared, fetch_timing = wheel_share.fetch(profile, plan.torch_key, announce)
        torch_stages += [fetch_timing] if fetch_timing else []
        if fetched is not None:
            wheel_from = REGISTRY
            plan = make_plan(profile, target=target, builder=facts)
    # A foreign base's deferred work runs in the build platform's own base (not one with the
    # target's folded packages).
    finisher = finishing_profile(profile)

    def ensure_bases(roles: tuple[str, ...]) -> dict[str, BaseImage]:
        """Reuse or bootstrap these bases, announced as a stage like BuildKit's (bootstraps take
        minutes, and a CI log says when they end)."""
        wanted = [(role, p) for role, p in plan.base_profiles.roles() if role in roles]
        if not wanted:
            return {}
        started = time.monotonic()
        names = ", ".join(base_reference(p) for _, p in wanted)
        announce(BuildEvent("base", 1, 1, f"reuse or bootstrap {names}", True))
        made = {
            role: ensure_base(
                p,
                engine,
                refresh=refresh_base,
                progress=on_base_progress,
                on_log=on_log,
                finisher=finisher,
            )
            for role, p in wanted
        }
        cached = all(image.cached for image in made.values())
        timing = StageTiming("base", time.monotonic() - started, steps=1, cached_steps=int(cached))
        announce(BuildEvent("base", 0, 0, "", False, finished=timing))
        return made

    # The build platform's base first: the torch compile needs it; the target's bases after it,
    # when the wheel's Debian packages (folded into them) are known.
    bases = ensure_bases(("build platform",))
    torch_wheel = plan.torch_wheel
    if torch_wheel is None and plan.torch_key and target not in TORCH_BUILD_STAGES:
        # The long compile first, on its own: its wheel goes to the store, then the image
        # build below copies it like any stored wheel (and later builds skip the compile).
        torch_wheel, compile_stages = _build_torch_wheel(
            profile, engine, plan, no_cache=no_cache, on_event=on_event, on_log=on_log
        )
        torch_stages += compile_stages
        wheel_from = COMPILE
        plan = make_plan(profile, target=target, builder=facts)
    bases.update(ensure_bases(("target", "runtime")))
    base = bases["target"]
    rendered = render_planned(profile, plan, base_ref=base.image, qpulib_src=sources.qpulib)
    platform = plan.stages.platform_of(target)
    names = plan.stages.names
    request = BuildRequest(
        context=Path(),  # set by _run_build
        platform=platform,
        target=target,
        no_cache=no_cache,
        build_args=proxy_buildargs(profile),
        cache_from=tuple(profile.build.cache_from),
        cache_to=tuple(profile.build.cache_to),
        stages=names[: names.index(target) + 1] if target in names else names,
    )
    result, log_path = _run_build(profile, engine, rendered, request, on_event, on_log)
    image = engine.image(result.image_id)
    if image is None or image.platform.removesuffix("/v8") != platform:
        got = image.platform if image else "nothing"
        raise BuildError(
            f"the build produced {got}, not {platform}",
            stage=target or "runtime",
            hint="the engine ignored the platform: check `rpibuild doctor`",
        )
    tags = list(rendered.tags)
    if target not in (None, "runtime"):
        tags = [f"{tag}-{target}" for tag in tags]
    for tag in tags:
        engine.tag(result.image_id, tag)
    after: list[StageTiming] = []
    if torch_wheel is not None and shared is None:
        # After the build passed: the wheel the registry lacks goes there for the next host.
        shared, push_timing = wheel_share.publish(profile, plan.torch_key, torch_wheel, announce)
        after += [push_timing] if push_timing else []
    return BuildOutcome(
        image=tags[0],
        id=result.image_id,
        tags=tags,
        platform=profile.platform,
        base=base,
        bases={role: image.as_dict() for role, image in bases.items()},
        places={stage.name: stage.place for stage in plan.stages.stages},
        stages=[*torch_stages, *result.stages, *after],
        log_file=str(log_path),
        seconds=time.monotonic() - started,
        torch_wheel=None
        if torch_wheel is None
        else {
            "path": str(torch_wheel.wheel),
            "sha256": torch_wheel.sha256,
            "compiled": wheel_from == COMPILE,
            "from": wheel_from,
            "registry": shared.as_dict() if shared else None,
        },
    )


def _log_path(profile: Profile, what: str) -> Path:
    """A new log file under rpibuild's cache, named by profile, target and time."""
    logs = cache_dir() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    return logs / f"build-{profile.name}-{what}-{time.strftime('%Y%m%d-%H%M%S')}.log"


def _run_build(
    profile: Profile,
    engine: Engine,
    rendered: Rendered,
    request: BuildRequest,
    on_event: Callable[[BuildEvent], None] | None,
    on_log: Callable[[str], None] | None = None,
) -> tuple[BuildResult, Path]:
    """One buildx run of a rendered context: logged (credentials masked), failures hinted."""
    log_path = _log_path(profile, request.target or "image")
    if on_log is not None:
        on_log(str(log_path))
    with (
        tempfile.TemporaryDirectory(prefix="rpibuild-context-") as tmp,
        log_path.open("w", encoding="utf-8") as log,
    ):
        context = rendered.write(Path(tmp) / "context")
        secrets = Path(tmp) / "secrets"
        secrets.mkdir(mode=0o700)
        request = replace(request, context=context, secrets=rendered.write_secrets(secrets))
        try:
            result = engine.build(
                request, on_event=on_event, log=lambda line: log.write(mask_urls(line) + "\n")
            )
        except BuildError as exc:
            text = "\n".join(exc.log_tail)
            exc.hint = exc.hint or next((h for needle, h in FAILURE_HINTS if needle in text), None)
            exc.log_file = str(log_path)
            raise
    return result, log_path


def _build_torch_wheel(
    profile: Profile,
    engine: Engine,
    plan: Plan,
    *,
    no_cache: bool,
    on_event: Callable[[BuildEvent], None] | None,
    on_log: Callable[[str], None] | None = None,
) -> tuple[StoredWheel, list[StageTiming]]:
    """Compile torch from Debian's source (hours; resumes from its host folders) into the store.

    buildx builds the ``torch-compile`` stage (the verified, patched source, the cross
    toolchain and distcc); the compile runs in a container of it (``rpibuild.torch_routes.debian_compile``)
    on the engine behind the builder (``compile_place``), logged like a build, and its wheel and
    runtime package list land in rpibuild's wheel store.
    """
    key = plan.torch_key
    rendered = render_planned(profile, plan)
    request = BuildRequest(
        context=Path(),
        platform=plan.stages.platform_of("torch-source"),
        target=COMPILE_STAGE,
        no_cache=no_cache,
        build_args=proxy_buildargs(profile),
        cache_from=tuple(profile.build.cache_from),
        cache_to=tuple(profile.build.cache_to),
        stages=("cross", "torch-source", COMPILE_STAGE),
    )
    place = compile_place(engine, profile)
    source, _ = _run_build(profile, engine, rendered, request, on_event, on_log)
    log_path = _log_path(profile, "torch-build")
    if on_log is not None:
        on_log(str(log_path))
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    started = time.monotonic()
    cache_dir().mkdir(parents=True, exist_ok=True)
    # Beside the store (same file system), so storing the wheel is a rename.
    with (
        tempfile.TemporaryDirectory(prefix="rpibuild-torch-", dir=cache_dir()) as tmp,
        log_path.open("w", encoding="utf-8") as log,
    ):

        def on_line(line: str) -> None:
            log.write(mask_urls(line) + "\n")  # as buildx's logs, though the compile has no network
            tail.append(line)
            if on_event is not None:
                on_event(BuildEvent("torch-build", 1, 1, line, False, compile_status(line)))

        def on_wait() -> None:
            on_line("waiting: another rpibuild is compiling torch in the same folder")

        out = Path(tmp) / "out"
        bring_image(engine, place, source.image_id, on_line)
        code = compile_wheel(
            place, source.image_id, profile, out, key=key, fresh=no_cache, on_line=on_line, on_wait=on_wait
        )
        if code != 0:
            raise BuildError(
                f"the torch compile failed (exit code {code}); run the build again to resume",
                stage="torch-build",
                log_tail=list(tail),
                log_file=str(log_path),
                hint=next((h for needle, h in FAILURE_HINTS if any(needle in t for t in tail)), None),
            )
        try:
            stored = store(key, profile.torch.version, out)
        except (OSError, FileNotFoundError) as exc:
            raise BuildError(f"the torch wheel could not be stored: {exc}", stage="torch-build") from None
    discard_build_folder(profile, key, place)
    timing = StageTiming("torch-build", time.monotonic() - started, steps=1)
    if on_event is not None:
        on_event(BuildEvent("torch-build", 0, 0, "", False, finished=timing))
    return stored, [*source.stages, timing]
