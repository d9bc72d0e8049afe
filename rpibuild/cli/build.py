"""``rpibuild build``."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

import click

from rpibuild.cli.options import emit_json, image_tag_reference, json_option, profile_name_callback
from rpibuild.planning.stages import CROSS_STAGES, TARGET_STAGES

if TYPE_CHECKING:
    from rpibuild.build.pipeline import BuildOutcome
    from rpibuild.config.loader import LoadedProfile
    from rpibuild.engine import BuildEvent, DockerEngine

# BuildKit mount flags (caches, secrets) are noise in a one-line progress view.
MOUNT_FLAG = re.compile(r"--mount=\S+\s+")


@click.command()
@click.option(
    "-p",
    "--profile",
    "profiles",
    multiple=True,
    envvar="RPIBUILD_PROFILE",
    show_envvar=True,
    callback=profile_name_callback,
    metavar="NAME|PATH",
    help="Profile name from configs/ or a path to a YAML file; repeat with --push --tag for one "
    "multi-platform tag [default: pi3b-arm64].",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="FIELD=VALUE",
    help="Override a profile field, e.g. --set torch.version=2.6.0 (repeatable).",
)
@json_option
@click.option(
    "--push",
    is_flag=True,
    help="After every build (verify included) passed, push: the --tag references, else the "
    "profile's tags to its registry.url; each read back and checked. Log in first.",
)
@click.option(
    "-t",
    "--tag",
    "tags",
    multiple=True,
    metavar="[REGISTRY/]NAME:TAG",
    callback=image_tag_reference,
    help="Extra tag (repeatable). Locally without --push; with --push the reference pushed "
    "(a NAME without registry goes to registry.url/namespace).",
)
@click.option(
    "--sbom/--no-sbom",
    default=True,
    show_default=True,
    help="With --push: attach each pushed image's SBOM (CycloneDX) as an OCI artifact referring to it.",
)
@click.option(
    "--retries",
    type=click.IntRange(0, 10),
    default=3,
    show_default=True,
    help="With --push: retries of transient registry failures (backoff 2, 4, 8... s).",
)
@click.option(
    "--target",
    type=click.Choice((*TARGET_STAGES, *CROSS_STAGES)),
    help="Stop after this stage (tagged TAG-STAGE).",
)
@click.option(
    "--no-cache",
    is_flag=True,
    help="Rebuild every stage (the base image is kept). A torch compile from Debian's source "
    "starts over in a clean build folder, reusing ccache; a stored wheel is still used.",
)
@click.option("--refresh-base", is_flag=True, help="Bootstrap or pull the base image again.")
@click.option(
    "--builder",
    envvar="RPIBUILD_BUILDER",
    show_envvar=True,
    metavar="NAME",
    help="buildx builder to build with (docker buildx ls) [default: build.builder, else the current one].",
)
@click.option(
    "--cache-from",
    multiple=True,
    metavar="SPEC",
    help="Import a build cache, e.g. type=registry,ref=HOST/NAME:cache (repeatable).",
)
@click.option(
    "--cache-to",
    multiple=True,
    metavar="SPEC",
    help="Export the build cache, e.g. type=local,dest=DIR,mode=max (needs a docker-container builder).",
)
def build(
    profiles: tuple[str, ...],
    overrides: tuple[str, ...],
    as_json: bool,
    push: bool,
    tags: tuple[str, ...],
    sbom: bool,
    retries: int,
    target: str | None,
    no_cache: bool,
    refresh_base: bool,
    builder: str | None,
    cache_from: tuple[str, ...],
    cache_to: tuple[str, ...],
) -> None:
    """Build, verify and tag the image of PROFILE (default pi3b-arm64); optionally push it.

    Stages: base -> system -> torch -> qpulib -> extension -> verify -> runtime, built by
    BuildKit for the profile's platform; C++ is cross-compiled on the build platform and only
    the target's stages run under QEMU (unless the builder has a native node for it); verify
    runs as the Pi's own core (QEMU_CPU). `rpibuild plan` shows the stages first. Tags move
    only when every stage passed. The full log is kept; --json prints a summary for CI.

    --push pushes only after every build passed (a failed verify pushes nothing), like
    `rpibuild push`; several -p with --push --tag REG/NAME:TAG make one multi-platform tag.
    """
    from rpibuild import console
    from rpibuild.config import load_profile
    from rpibuild.config.checks import check_buildable
    from rpibuild.errors import ConfigError

    loaded = [load_profile(p, overrides) for p in profiles or (None,)]
    for item in loaded:
        check_buildable(item)
    if target and push:
        raise ConfigError("--push pushes whole images: drop --target", field="--push")
    if len(loaded) > 1 and tags and not push:
        raise ConfigError("one local tag cannot hold several platforms: add --push", field="--tag")
    if len(loaded) > 1 and push and not tags:
        raise ConfigError("several profiles make one multi-platform tag: give --tag REGISTRY/NAME:TAG",
                          field="--tag")  # fmt: skip
    options = (target, no_cache, refresh_base, builder, cache_from, cache_to)
    built = [(item, _build_one(item, *options)) for item in loaded]
    outcomes = [outcome for _, (outcome, _) in built]
    if tags and not push:
        engine = built[0][1][1]
        for tag in tags:
            engine.tag(outcomes[0].id, tag)
        outcomes[0].tags.extend(tags)
    pushed: list[dict[str, object]] = []
    if push:
        from rpibuild.publish.release import publish_built

        engine = built[-1][1][1]
        with console.status("pushing") as update:

            def progress(line: str) -> None:
                update(console.escape(line))
                if "retry" in line:
                    console.warn(console.escape(line))

            results = publish_built(
                engine,
                [(item.profile, outcome.tags[0]) for item, (outcome, _) in built],
                tags,
                retries=retries,
                sbom=sbom,
                torch_wheel_sha256=[_wheel_sha(o) for o in outcomes],
                on_progress=progress,
            )
        pushed = [r.as_dict() for r in results]
    if as_json:
        if len(outcomes) == 1:
            data = outcomes[0].as_dict()
            if push:
                data["pushed"] = pushed
            emit_json(data)
        else:
            emit_json({"builds": [o.as_dict() for o in outcomes], **({"pushed": pushed} if push else {})})
        return
    for outcome in outcomes:
        _report(outcome)
    for ref in pushed:
        console.info(f"[green]pushed[/green] {ref['reference']} ({ref['platform']})")
        click.echo(f"{ref['reference']}@{ref['digest']}")


def _build_one(
    loaded: LoadedProfile,
    target: str | None,
    no_cache: bool,
    refresh_base: bool,
    builder: str | None,
    cache_from: tuple[str, ...],
    cache_to: tuple[str, ...],
) -> tuple[BuildOutcome, DockerEngine]:
    """One profile's build with live progress; returns its outcome and the engine holding it."""
    from rpibuild import console
    from rpibuild.build.pipeline import build_profile, with_build_options
    from rpibuild.engine import DockerEngine
    from rpibuild.engine.progress import CompileMeter

    prof = with_build_options(loaded.profile, builder, cache_from, cache_to)
    if prof.qpulib.enabled is False:
        console.warn("QPULib is disabled: the extension gets only its cpu backend")
    engine = DockerEngine.connect(builder=prof.build.builder)
    console.info(f"[bold]building {prof.name}[/bold] ({prof.platform}) from {console.escape(loaded.path)}")

    meter = CompileMeter()
    reported: list[float | None] = [None]  # when a plain compile progress line was last printed
    with console.status(f"{prof.name}") as update:

        def on_event(event: BuildEvent) -> None:
            if event.compiled:
                done, total = event.compiled
                elapsed, left = meter.update(time.monotonic(), done, total)
                eta = f", about {_minutes(left)} left" if left is not None else ""
                message = (
                    f"[{event.stage}] compiling {done}/{total} ({100 * done // max(total, 1)}%), "
                    f"{_minutes(elapsed)} elapsed{eta}"
                )
                update(message)
                now = time.monotonic()
                if not console.is_live() and (
                    reported[0] is None or now - reported[0] >= PLAIN_PROGRESS_EVERY
                ):
                    reported[0] = now  # a CI log gets a plain line now and then, never silence
                    console.info(console.escape(message))
                console.detail(console.escape(event.line))
            elif event.is_step:
                shown = MOUNT_FLAG.sub("", event.line)
                update(console.escape(f"[{event.stage}] step {event.step}/{event.total}: {shown}"))
                line = console.escape(shown[:110])
                console.info(f"[cyan]{event.stage:>9}[/cyan] {event.step:>2}/{event.total} {line}")
            else:
                console.detail(console.escape(event.line))

        outcome = build_profile(
            prof,
            engine,
            target=target,
            no_cache=no_cache,
            refresh_base=refresh_base,
            on_event=on_event,
            on_base_progress=lambda line: update(console.escape(f"[base] {line}")),
        )
    return outcome, engine


def _wheel_sha(outcome: BuildOutcome) -> str | None:
    """The sha256 of the torch wheel the build installed, where rpibuild had the wheel."""
    return str(outcome.torch_wheel["sha256"]) if outcome.torch_wheel else None


def _report(outcome: BuildOutcome) -> None:
    from rpibuild import console

    state = "reused" if outcome.base.cached else "built"
    console.info(f"{'base':>9}  {state} {outcome.base.image}")
    for stage in outcome.stages:
        cached = " [dim](cached)[/dim]" if stage.cached else ""
        console.info(f"{stage.name:>9}  {stage.seconds:7.1f}s{cached}")
    if outcome.torch_wheel:
        how = "compiled now" if outcome.torch_wheel["compiled"] else "from the store"
        console.info(f"{'torch':>9}  {console.escape(str(outcome.torch_wheel['path']))} ({how})")
        console.info(f"{'':>9}  sha256 {outcome.torch_wheel['sha256']}")
    console.info(f"[green]done[/green] in {outcome.seconds:.0f}s: {', '.join(outcome.tags)}")
    console.info(f"log: {console.escape(outcome.log_file)}")
    click.echo(outcome.image)


# Without a live status line (a CI log, a redirected stderr), a compile's progress is printed
# as a plain line at most this often: hours of compiling are never silent.
PLAIN_PROGRESS_EVERY = 60.0


def _minutes(seconds: float) -> str:
    """``42s``, ``7m``, ``2h05m``: compact enough for a status line."""
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes = int(seconds // 60)
    return f"{minutes}m" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"
