"""``rpibuild image``: build, push, list and remove the images rpibuild made (docker-shaped).

``image build`` and ``image push`` are the top-level ``build`` and ``push`` under the name
the design card gives them; both spellings stay.
"""

from __future__ import annotations

import click

from rpibuild.cli import build as build_cmd
from rpibuild.cli import push as push_cmd
from rpibuild.cli.options import emit_json, json_option, profile_name_callback


@click.group()
def image() -> None:
    """Images rpibuild built: build, push, ls, rm.

    Only images carrying rpibuild's io.rpibuild.profile label are listed or removed; other
    images on the engine are never touched.
    """


image.add_command(build_cmd.build, "build")
image.add_command(push_cmd.push, "push")


@image.command("ls")
@click.option(
    "-p",
    "--profile",
    callback=profile_name_callback,
    metavar="NAME",
    help="Only this profile's images (the io.rpibuild.profile label).",
)
@json_option
def ls(profile: str | None, as_json: bool) -> None:
    """List rpibuild's images: profile, platform, tags, size, torch and QPULib versions.

    The versions come from the image's labels (io.rpibuild.torch.version,
    io.rpibuild.qpulib.commit), so they say what the image was built with.
    """
    from rpibuild import console
    from rpibuild.engine import DockerEngine
    from rpibuild.publish.images import human_size, list_built

    rows = list_built(DockerEngine.connect(), profile)
    if as_json:
        emit_json([r.as_dict() for r in rows])
        return
    if not rows:
        console.info("no images built by rpibuild on this engine")
        return
    header = ("PROFILE", "PLATFORM", "TORCH", "QPULIB", "SIZE", "TAGS")
    table = [header] + [
        (r.profile, r.platform, r.torch, r.qpulib[:12], human_size(r.size), ", ".join(r.tags)) for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    for row in table:
        padded = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        click.echo("  ".join([*padded, row[-1]]))


@image.command("rm")
@click.argument("references", nargs=-1, metavar="[NAME:TAG]...")
@click.option(
    "-p",
    "--profile",
    callback=profile_name_callback,
    metavar="NAME",
    help="Remove every tag of this profile's images (the io.rpibuild.profile label).",
)
def rm(references: tuple[str, ...], profile: str | None) -> None:
    """Remove tags of images rpibuild built (the image goes with its last tag).

    Every tag is checked first (it exists, it carries the io.rpibuild.profile label), so a
    typo removes nothing. The build cache is kept: a rebuild is fast.
    """
    from rpibuild import console
    from rpibuild.engine import DockerEngine
    from rpibuild.publish.images import list_built, remove_tags

    if not references and not profile:
        raise click.UsageError("name the tags to remove, or a profile with -p")
    engine = DockerEngine.connect()
    wanted = list(references)
    if profile:
        wanted += [tag for row in list_built(engine, profile) for tag in row.tags]
    for reference in remove_tags(engine, list(dict.fromkeys(wanted))):
        console.info(f"[green]removed[/green] {console.escape(reference)}")
