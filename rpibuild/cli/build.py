"""``rpibuild build``."""

from __future__ import annotations

import re
import time

import click

from rpibuild.cli.options import emit_json, json_option, profile_options
from rpibuild.planning.stages import CROSS_STAGES, TARGET_STAGES

# BuildKit mount flags (caches, secrets) are noise in a one-line progress view.
MOUNT_FLAG = re.compile(r"--mount=\S+\s+")


@click.command()
@profile_options
@json_option
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
    profile: str | None,
    overrides: tuple[str, ...],
    as_json: bool,
    target: str | None,
    no_cache: bool,
    refresh_base: bool,
    builder: str | None,
    cache_from: tuple[str, ...],
    cache_to: tuple[str, ...],
) -> None:
    """Build, verify and tag the image of PROFILE (default pi3b-arm64).

    Stages: base -> system -> torch -> qpulib -> extension -> verify -> runtime, built by
    BuildKit for the profile's platform; C++ is cross-compiled on the build platform and only
    the target's stages run under QEMU (unless the builder has a native node for it); verify
    runs as the Pi's own core (QEMU_CPU). `rpibuild plan` shows the stages first. Tags move
    only when every stage passed. The full log is kept; --json prints a summary for CI.
    """
    from rpibuild import console
    from rpibuild.build.pipeline import build_profile, with_build_options
    from rpibuild.config import load_profile
    from rpibuild.config.checks import check_buildable
    from rpibuild.engine import BuildEvent, DockerEngine
    from rpibuild.engine.progress import CompileMeter

    loaded = load_profile(profile, overrides)
    check_buildable(loaded)
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
    if as_json:
        emit_json(outcome.as_dict())
        return
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
