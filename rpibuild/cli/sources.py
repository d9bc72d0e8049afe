"""``rpibuild sources``: fetch and check a profile's pinned third-party sources ahead of a build."""

from __future__ import annotations

import click

from rpibuild.cli.options import emit_json, json_option, profile_options


@click.group()
def sources() -> None:
    """Third-party sources (QPULib): fetched once, checked by content hash, cached.

    Set RPIBUILD_SOURCE_MIRROR to a folder or URL holding the pinned archives under their
    forge names (QPULib-<commit>.tar.gz) on hosts that cannot reach GitHub.
    """


@sources.command()
@profile_options
@json_option
def fetch(profile: str | None, overrides: tuple[str, ...], as_json: bool) -> None:
    """Fetch and check PROFILE's sources; print the path of each checked tree."""
    from rpibuild import console
    from rpibuild.build.context import qpulib_tree
    from rpibuild.config import load_profile

    loaded = load_profile(profile, overrides)
    tree = qpulib_tree(loaded.profile)
    found = {"qpulib": str(tree) if tree else None}
    if as_json:
        emit_json(found)
        return
    if tree is None:
        console.info("qpulib is disabled in this profile: nothing to fetch")
        return
    click.echo(str(tree))
