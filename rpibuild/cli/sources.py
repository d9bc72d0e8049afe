"""``rpibuild sources``: fetch and check a profile's pinned third-party sources ahead of a build."""

from __future__ import annotations

from pathlib import Path

import click

from rpibuild.cli.options import emit_json, json_option, output_path, profile_options


@click.group()
def sources() -> None:
    """Third-party sources (QPULib): fetched once, checked by content hash, cached.

    Set RPIBUILD_SOURCE_MIRROR to a folder or URL holding the pinned archives under their
    forge names (QPULib-<commit>.tar.gz) on hosts that cannot reach GitHub; `fetch --all -o
    DIR` makes such a folder, with the target's pip packages in DIR/pip/.
    """


@sources.command()
@profile_options
@json_option
@click.option(
    "--all",
    "gather_all",
    is_flag=True,
    help="Gather every third-party file a build downloads (archives, the pip packages of the "
    "target's venv) into -o DIR, a mirror for hosts without GitHub or the package index.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    callback=output_path,
    help="With --all: the new (or empty) folder to fill.",
)
def fetch(
    profile: str | None, overrides: tuple[str, ...], as_json: bool, gather_all: bool, output: Path | None
) -> None:
    """Fetch and check PROFILE's sources; print the path of each checked tree.

    With --all -o DIR: gather the pinned archives, in DIR/pip/ the wheels the target's venv
    installs (chosen by the target's tags), and in DIR/debian/ Debian's pytorch source with the
    signed indexes that vouch for it (torch.source debian); then build anywhere with
    RPIBUILD_SOURCE_MIRROR=DIR: pip steps use DIR/pip and no package index, apt takes the
    source package from DIR/debian and checks it as it would the mirror. Debian's binary
    packages still come from the apt mirror.
    """
    from rpibuild import console
    from rpibuild.build.context import qpulib_tree
    from rpibuild.config import load_profile

    if gather_all != (output is not None):
        raise click.UsageError("--all and -o/--output go together")
    loaded = load_profile(profile, overrides)
    if gather_all and output is not None:
        from rpibuild.build.offline import gather
        from rpibuild.engine import DockerEngine
        from rpibuild.torch_routes import route_of

        # An engine only for a Debian source package (apt of the target's suite runs in a base).
        torch = loaded.profile.torch
        engine = DockerEngine.connect() if route_of(torch.source).debian_source(torch) else None
        with console.step(f"gathering what a build of {loaded.profile.name} downloads"):
            gathered = gather(loaded.profile, output, engine)
        if as_json:
            emit_json(gathered.as_dict())
            return
        for name in gathered.archives:
            console.info(f"archive  {console.escape(name)}")
        console.info(f"pip/     {len(gathered.wheels)} wheels")
        for where in gathered.elsewhere:
            console.info(f"[dim]not in the folder:[/dim] {console.escape(where)}")
        click.echo(str(output))
        return
    tree = qpulib_tree(loaded.profile)
    found = {"qpulib": str(tree) if tree else None}
    if as_json:
        emit_json(found)
        return
    if tree is None:
        console.info("qpulib is disabled in this profile: nothing to fetch")
        return
    click.echo(str(tree))
