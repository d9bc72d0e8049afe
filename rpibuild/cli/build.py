"""``rpibuild build``."""

from __future__ import annotations

from contextlib import nullcontext
from typing import TYPE_CHECKING

import click

from rpibuild.cli.options import (
    emit_json,
    image_tag_reference,
    json_option,
    profiles_option,
    push_options,
)
from rpibuild.cli.reporter import progress_option
from rpibuild.planning.stages import CROSS_STAGES, TARGET_STAGES

if TYPE_CHECKING:
    from rpibuild.build.pipeline import BuildOutcome
    from rpibuild.config.loader import LoadedProfile
    from rpibuild.engine import DockerEngine


@click.command()
@profiles_option(
    "Profile name from configs/ or a path to a YAML file; repeat with --push --tag for one "
    "multi-platform tag [default: pi3b-arm64]."
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="FIELD=VALUE",
    help="Override a profile field, e.g. --set torch.version=2.6.0 (repeatable).",
)
@json_option
@progress_option
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
@push_options("With --push: ")
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
    progress: str,
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

    \b
    Stages (a cross build, the default; `rpibuild plan` shows a profile's own):
      base                                  bootstrapped (the target's packages in it) or pulled
      cross, torch-source, torch-c10        build platform: Debian's cross toolchain, torch's source
      torch-compile, distcc-helper          build platform: the torch compile's image (it runs on
                                              the builder's engine), a distcc helper's (--target)
      torch-install, qpulib-build,          build platform, native: C++ cross-compiled,
        extension-build                       wheels installed for the target
      system, torch, qpulib, extension      the target platform: files copied in
      verify-torch, verify                  the target, as the Pi's own core (QEMU_CPU)
      runtime                               the image that is tagged

    BuildKit builds them for the profile's platform (a native node of the builder runs
    the target's stages without QEMU). Tags move only when every stage passed. The log is
    named when it opens; --progress picks how progress shows; --json prints a summary
    (an error object on failure) on stdout for CI.

    --push pushes only after every build passed (a failed verify pushes nothing), like
    `rpibuild push`; several -p with --push --tag REG/NAME:TAG make one multi-platform tag.
    """
    from rpibuild import console
    from rpibuild.config import load_profile
    from rpibuild.config.checks import check_buildable
    from rpibuild.errors import ConfigError

    if progress == "rawjson":  # stderr holds JSON events only (and a failure's message)
        console.set_verbosity(min(console.verbosity(), -1))
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
    options = (progress, target, no_cache, refresh_base, builder, cache_from, cache_to)
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

            def push_progress(line: str) -> None:
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
                on_progress=push_progress,
            )
        pushed = [r.as_dict() for r in results]
    for outcome in outcomes:
        _warn_unshared(outcome)
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
    progress: str,
    target: str | None,
    no_cache: bool,
    refresh_base: bool,
    builder: str | None,
    cache_from: tuple[str, ...],
    cache_to: tuple[str, ...],
) -> tuple[BuildOutcome, DockerEngine]:
    """One profile's build with its progress; returns its outcome and the engine holding it."""
    from rpibuild import console
    from rpibuild.build.pipeline import build_profile, with_build_options
    from rpibuild.cli.reporter import Reporter
    from rpibuild.engine import DockerEngine
    from rpibuild.errors import RpibuildError

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
    return outcome, engine


def _wheel_sha(outcome: BuildOutcome) -> str | None:
    """The sha256 of the torch wheel the build installed, where rpibuild had the wheel."""
    return str(outcome.torch_wheel["sha256"]) if outcome.torch_wheel else None


def _warn_unshared(outcome: BuildOutcome) -> None:
    """torch.wheel_store: registry, and the push failed: the build stands, the wheel is stored
    here, and the next build pushes it; said on stderr whatever the output mode."""
    from rpibuild import console

    shared = (outcome.torch_wheel or {}).get("registry")
    if isinstance(shared, dict) and shared.get("error"):
        message = (
            f"the torch wheel was not pushed to {shared['reference']}: {shared['error']}; "
            "it is stored here, and the next build pushes it"
        )
        console.warn(console.escape(message))


def _report(outcome: BuildOutcome) -> None:
    from rpibuild import console

    for role, base in outcome.bases.items():
        state = "reused" if base["cached"] else "built"
        console.info(f"{'base':>9}  {state} {base['image']} ({role})")
    for stage in outcome.stages:
        cached = " [dim](cached)[/dim]" if stage.cached else ""
        console.info(f"{stage.name:>9}  {stage.seconds:7.1f}s{cached}")
    wheel = outcome.torch_wheel
    if wheel:
        shared = wheel.get("registry")
        remote = shared if isinstance(shared, dict) else {}
        how = {
            "compile": "compiled now",
            "registry": f"fetched from {remote.get('reference')}",
        }.get(str(wheel.get("from")), "from the store")
        console.info(f"{'torch':>9}  {console.escape(str(wheel['path']))} ({console.escape(how)})")
        console.info(f"{'':>9}  sha256 {wheel['sha256']}")
        if remote.get("pushed"):
            console.info(f"{'':>9}  pushed to {console.escape(remote['reference'])}@{remote['digest']}")
        elif remote and not remote.get("error") and wheel.get("from") != "registry":
            console.info(f"{'':>9}  in the registry already: {console.escape(remote['reference'])}")
    console.info(f"[green]done[/green] in {outcome.seconds:.0f}s: {', '.join(outcome.tags)}")
    console.info(f"log: {console.escape(outcome.log_file)}")
    click.echo(outcome.image)
