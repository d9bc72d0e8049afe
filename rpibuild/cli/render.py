"""``rpibuild render``."""

from __future__ import annotations

from pathlib import Path

import click

from rpibuild.cli.options import output_path, profile_options


@click.command()
@profile_options
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    callback=output_path,
    help="Write the whole build context (Dockerfile and the files it copies) to this new folder.",
)
def render(profile: str | None, overrides: tuple[str, ...], output: Path | None) -> None:
    """Print the Dockerfile a build of PROFILE would use (a dry run: no engine needed).

    With -o, also fetch the pinned sources and write the complete build context.
    """
    from rpibuild import console
    from rpibuild.build.context import prepare_context
    from rpibuild.config import load_profile
    from rpibuild.config.checks import check_buildable
    from rpibuild.planning.plan import make_plan, render_planned

    loaded = load_profile(profile, overrides)
    check_buildable(loaded)
    if output is None:
        click.echo(render_planned(loaded.profile, make_plan(loaded.profile)).dockerfile, nl=False)
        return
    prepare_context(loaded.profile, output)
    console.info(f"build context written to {console.escape(output)}")
