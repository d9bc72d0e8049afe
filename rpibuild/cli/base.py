"""``rpibuild base``."""

from __future__ import annotations

from contextlib import nullcontext
from functools import partial

import click

from rpibuild.cli.options import emit_json, json_option, profile_options
from rpibuild.cli.reporter import progress_option


@click.command()
@profile_options
@json_option
@progress_option
@click.option("--refresh", is_flag=True, help="Rebuild (or re-pull) even if a matching base exists.")
@click.option(
    "--build-platform",
    is_flag=True,
    help="The base of the cross build's build-platform stages (same suite, this host's architecture).",
)
def base(
    profile: str | None,
    overrides: tuple[str, ...],
    as_json: bool,
    progress: str,
    refresh: bool,
    build_platform: bool,
) -> None:
    """Produce the profile's base image: bootstrapped (mmdebstrap by default) or pulled.

    A bootstrapped base holds the packages every build of the profile installs on the target
    (`rpibuild plan` lists them under bases) and is tagged by a hash of what produced it
    (platform, suite, mirror, variant, tool, packages, the keyring's bytes), so the next run
    reuses it. A profile whose target compiles also gets a runtime base (without the
    compilers). Prints the image reference of the build stages' base.
    """
    from rpibuild import console
    from rpibuild.build.base import ensure_base
    from rpibuild.build.base_finish import finishing_profile
    from rpibuild.cli.reporter import Reporter
    from rpibuild.config import load_profile
    from rpibuild.engine import DockerEngine
    from rpibuild.host.build_platform import cross_base_profile
    from rpibuild.planning.plan import make_plan
    from rpibuild.planning.stages import check_cross

    if progress == "rawjson":  # stderr holds JSON events only (and a failure's message)
        console.set_verbosity(min(console.verbosity(), -1))
    loaded = load_profile(profile, overrides)
    target = loaded.profile
    finisher = finishing_profile(target) if not build_platform else None
    extra = []
    if build_platform:
        check_cross(target.model_copy(update={"build": target.build.model_copy(update={"cross": True})}))
        target = cross_base_profile(target)
    else:
        bases = make_plan(target).base_profiles
        target = bases.build
        extra = [bases.runtime] if bases.runtime is not bases.build else []
    engine = DockerEngine.connect()
    title = f"base image for {loaded.profile.name} ({target.platform})"
    live = progress == "auto" and console.is_live()
    with (
        console.step(title),
        console.status("bootstrapping") if live else nullcontext(None) as update,
        Reporter(progress, title, update).running() as report,
    ):
        ensure = partial(
            ensure_base, refresh=refresh, progress=report.line, on_log=report.log_file, finisher=finisher
        )
        result = ensure(target, engine)
        for other in extra:  # the runtime base of a target that compiles
            made = ensure(other, engine)
            console.info(f"runtime base {'reused' if made.cached else 'built'}: {made.image}")
    if as_json:
        emit_json(result.as_dict())
    else:
        state = "reused" if result.cached else "built"
        console.info(f"{state} {result.image} ({result.id[:19]}, {result.platform})")
        click.echo(result.image)
