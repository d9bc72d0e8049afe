"""``rpibuild build``: base -> system -> torch -> qpulib -> extension -> verify -> runtime.

One multi-stage Dockerfile, built by BuildKit (the profile's buildx builder) for the
profile's platform, under QEMU unless the builder has a native node for it. The image is
tagged only after every stage (verify included) has passed, so a failure never moves a tag.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from rpibuild.base import BaseImage, ensure_base
from rpibuild.config.model import Build, Profile
from rpibuild.context import fetch_sources
from rpibuild.engine import BuildEvent, BuildRequest, Engine, StageTiming
from rpibuild.errors import BuildError, ConfigError
from rpibuild.redact import mask_urls
from rpibuild.render import STAGES, render
from rpibuild.sources import cache_dir

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
    base: BaseImage
    stages: list[StageTiming] = field(default_factory=list)
    log_file: str = ""
    seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "image": self.image,
            "id": self.id,
            "tags": self.tags,
            "platform": self.platform,
            "base": self.base.as_dict(),
            "stages": [
                {"name": s.name, "seconds": round(s.seconds, 1), "cached": s.cached} for s in self.stages
            ],
            "seconds": round(self.seconds, 1),
            "log_file": self.log_file,
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
) -> BuildOutcome:
    """Build (and verify) the profile's image; tag it only when everything passed."""
    if target is not None and target not in STAGES:
        raise ConfigError(f"unknown stage {target!r} (stages: {', '.join(STAGES)})", field="--target")
    started = time.monotonic()
    engine.builder.require_cache_export(profile.build.cache_to)
    # Pinned sources first: an unreachable or tampered archive fails in seconds, not after
    # minutes of bootstrapping.
    sources = fetch_sources(profile)
    base = ensure_base(profile, engine, refresh=refresh_base, progress=on_base_progress)
    logs = cache_dir() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"build-{profile.name}-{time.strftime('%Y%m%d-%H%M%S')}.log"
    with (
        tempfile.TemporaryDirectory(prefix="rpibuild-context-") as tmp,
        log_path.open("w", encoding="utf-8") as log,
    ):
        context = Path(tmp) / "context"
        rendered = render(profile, base_ref=base.image, qpulib_src=sources.qpulib)
        rendered.write(context)
        secrets = Path(tmp) / "secrets"
        secrets.mkdir(mode=0o700)
        request = BuildRequest(
            context=context,
            platform=profile.platform,
            target=target,
            no_cache=no_cache,
            build_args=proxy_buildargs(profile),
            secrets=rendered.write_secrets(secrets),
            cache_from=tuple(profile.build.cache_from),
            cache_to=tuple(profile.build.cache_to),
            stages=STAGES[: STAGES.index(target) + 1] if target else STAGES,
        )
        try:
            result = engine.build(
                request, on_event=on_event, log=lambda line: log.write(mask_urls(line) + "\n")
            )
        except BuildError as exc:
            text = "\n".join(exc.log_tail)
            exc.hint = exc.hint or next((h for needle, h in FAILURE_HINTS if needle in text), None)
            exc.log_file = str(log_path)
            raise
    image = engine.image(result.image_id)
    if image is None or image.platform.removesuffix("/v8") != profile.platform:
        got = image.platform if image else "nothing"
        raise BuildError(
            f"the build produced {got}, not {profile.platform}",
            stage=target or "runtime",
            hint="the engine ignored the platform: check `rpibuild doctor`",
        )
    tags = list(rendered.tags)
    if target not in (None, "runtime"):
        tags = [f"{tag}-{target}" for tag in tags]
    for tag in tags:
        engine.tag(result.image_id, tag)
    return BuildOutcome(
        image=tags[0],
        id=result.image_id,
        tags=tags,
        platform=profile.platform,
        base=base,
        stages=result.stages,
        log_file=str(log_path),
        seconds=time.monotonic() - started,
    )
