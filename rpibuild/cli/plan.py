"""``rpibuild plan``."""

from __future__ import annotations

import click

from rpibuild.cli.options import emit_json, json_option, profile_options


@click.command()
@profile_options
@click.option(
    "--builder",
    envvar="RPIBUILD_BUILDER",
    show_envvar=True,
    metavar="NAME",
    help="The buildx builder to plan for (its native platforms decide what runs under QEMU) "
    "[default: build.builder, else the current one].",
)
@json_option
def plan(profile: str | None, overrides: tuple[str, ...], builder: str | None, as_json: bool) -> None:
    """Print what a build of PROFILE will do, before it does it (no engine needed).

    The builder it will use and the platforms it runs natively, the stages in order and where
    each runs (the build platform natively, the target under QEMU or on a native node), the
    base images, the torch route, the pinned sources, the BuildKit secrets (names only), the
    cache keys, the tags and the labels. --json prints it as data. Without buildx the plan is
    still printed, assuming the target's stages run under QEMU. A torch wheel compiled from
    source is said to come from the store, the registry (torch.wheel_store: registry, which is
    asked) or a compile.
    """
    from rpibuild.build import wheel_share
    from rpibuild.config import load_profile
    from rpibuild.config.checks import check_buildable
    from rpibuild.engine import buildx
    from rpibuild.errors import HostSetupError
    from rpibuild.planning.plan import make_plan
    from rpibuild.planning.stages import check_cross

    loaded = load_profile(profile, overrides)
    check_buildable(loaded)
    check_cross(loaded.profile)
    facts, unknown = None, ""
    try:
        facts = buildx.select_builder(builder or loaded.profile.build.builder)
    except HostSetupError as exc:  # no buildx or no engine: plan anyway, and say so
        unknown = exc.message
    made = make_plan(loaded.profile, builder=facts, builder_unknown=unknown)
    made = wheel_share.resolve(loaded.profile, made)  # torch.wheel_store: registry: is it there?
    if as_json:
        emit_json(made.as_dict())
    else:
        for line in made.lines():
            click.echo(line)
