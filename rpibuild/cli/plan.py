"""``rpibuild plan``."""

from __future__ import annotations

import click

from rpibuild.cli.options import emit_json, json_option, profile_options


@click.command()
@profile_options
@json_option
def plan(profile: str | None, overrides: tuple[str, ...], as_json: bool) -> None:
    """Print what a build of PROFILE will do, before it does it (no engine needed).

    The stages in order and where each runs (the build platform natively, or the target
    under QEMU), the base images, the torch route, the pinned sources, the BuildKit secrets
    (names only), the cache keys, the tags and the labels. --json prints it as data.
    """
    from rpibuild.config import load_profile
    from rpibuild.config.checks import check_buildable
    from rpibuild.planning.plan import make_plan
    from rpibuild.planning.stages import check_cross

    loaded = load_profile(profile, overrides)
    check_buildable(loaded)
    check_cross(loaded.profile)
    made = make_plan(loaded.profile)
    if as_json:
        emit_json(made.as_dict())
    else:
        for line in made.lines():
            click.echo(line)
