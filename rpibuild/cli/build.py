"""``rpibuild build``."""

from __future__ import annotations

from contextlib import nullcontext

import click

from rpibuild.cli.options import emit_json, json_option, profile_options
from rpibuild.cli.reporter import progress_option
from rpibuild.stages import CROSS_STAGES, TARGET_STAGES


@click.command()
@profile_options
@json_option
@progress_option
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
    progress: str,
    target: str | None,
    no_cache: bool,
    refresh_base: bool,
    builder: str | None,
    cache_from: tuple[str, ...],
    cache_to: tuple[str, ...],
) -> None:
    """Build, verify and tag the image of PROFILE (default pi3b-arm64).

    \b
    Stages (a cross build, the default; `rpibuild plan` shows a profile's own):
      base                                  bootstrapped or pulled first, then reused
      cross, torch-source, torch-c10        build platform: Debian's cross toolchain, torch's source
      torch-install, qpulib-build,          build platform, native: C++ cross-compiled,
        extension-build                       wheels for the target
      system, torch, qpulib, extension      the target platform: installs (under QEMU on x86)
      verify                                the target, as the Pi's own core (QEMU_CPU)
      runtime                               the image that is tagged

    BuildKit builds them for the profile's platform (a native node of the builder runs
    the target's stages without QEMU). Tags move only when every stage passed. The log is
    named when it opens; --progress picks how progress shows; --json prints a summary
    (an error object on failure) on stdout for CI.
    """
    from rpibuild import console
    from rpibuild.build import build_profile, with_build_options
    from rpibuild.cli.reporter import Reporter
    from rpibuild.config import load_profile
    from rpibuild.config.checks import check_buildable
    from rpibuild.engine import DockerEngine
    from rpibuild.errors import RpibuildError

    if progress == "rawjson":  # stderr holds JSON events only (and a failure's message)
        console.set_verbosity(min(console.verbosity(), -1))
    loaded = load_profile(profile, overrides)
    check_buildable(loaded)
    prof = with_build_options(loaded.profile, builder, cache_from, cache_to)
    if prof.qpulib.enabled is False:
        console.warn("QPULib is disabled: the extension gets only its cpu backend")
    engine = DockerEngine.connect(builder=prof.build.builder)
    console.info(f"[bold]building {prof.name}[/bold] ({prof.platform}) from {console.escape(loaded.path)}")

    live = progress == "auto" and console.is_live()
    status = console.status(prof.name) if live else nullcontext(None)
    with status as update, Reporter(progress, prof.name, update).running() as report:
        try:
            outcome = build_profile(
                prof,
                engine,
                target=target,
                no_cache=no_cache,
                refresh_base=refresh_base,
                on_event=report.event,
                on_base_progress=report.line,
                on_log=report.log_file,
            )
        except RpibuildError as exc:
            report.failed(getattr(exc, "stage", None))
            raise
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
    if as_json:
        emit_json(outcome.as_dict())
    else:
        click.echo(outcome.image)
