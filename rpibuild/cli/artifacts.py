"""``rpibuild artifacts``."""

from __future__ import annotations

from pathlib import Path

import click

from rpibuild.cli.options import emit_json, json_option, output_path, profile_options


@click.command()
@profile_options
@json_option
@click.argument("out", type=click.Path(path_type=Path), callback=output_path)
@click.option(
    "--rootfs", "with_rootfs", is_flag=True, help="Also export the root filesystem (rootfs/*.tar.zst)."
)
@click.option(
    "--no-build",
    is_flag=True,
    help="Use the existing TAG-extension image; fail if it is missing instead of building.",
)
def artifacts(
    profile: str | None,
    overrides: tuple[str, ...],
    as_json: bool,
    out: Path,
    with_rootfs: bool,
    no_build: bool,
) -> None:
    """Write the files a CI job uploads for PROFILE into OUT (a new or empty folder).

    lib/ and include/ (libqpu and its headers, when qpulib is enabled), wheels/ (the torch_qpu
    wheel, and the torch wheel the build made or downloaded), rootfs/ with --rootfs, and
    manifest.json: profile, platform, image ids and digests, versions, and the sha256, size
    and ELF machine of every file (for wheels, of the .so files inside). Fails (after writing
    the manifest) when an ELF file is not for the profile's platform. Builds the image up to
    the extension stage first; cache hits make that quick after `rpibuild build`.
    """
    from contextlib import nullcontext

    from rpibuild import console
    from rpibuild.cli.reporter import Reporter
    from rpibuild.cli.rootfs import human_bytes
    from rpibuild.config import load_profile
    from rpibuild.engine import DockerEngine
    from rpibuild.export.artifacts import collect

    prof = load_profile(profile, overrides).profile
    if not prof.qpulib.enabled:
        console.warn("QPULib is disabled in this profile: no libqpu (the manifest says so)")
    engine = DockerEngine.connect()
    live = console.is_live()
    status = console.status(f"artifacts of {prof.name}") if live else nullcontext(None)
    # The rebuild up to the extension stage reports as `build` does (stage lines, heartbeat in CI).
    with status as update, Reporter("auto", prof.name, update).running() as report:
        result = collect(
            prof,
            engine,
            out,
            build=not no_build,
            rootfs=with_rootfs,
            on_event=report.event,
            on_step=console.info,
            on_rootfs_progress=lambda read, written: (update or (lambda _m: None))(
                f"rootfs: {human_bytes(written)} written"
            ),
        )
    if as_json:
        emit_json(result.manifest)
        return
    manifest = result.manifest
    for entry in manifest["files"]:  # type: ignore[attr-defined]
        size = human_bytes(entry["size"]) if "size" in entry else f"-> {entry['symlink']}"
        console.info(f"  {console.escape(entry['path']):<60} {console.escape(size)}")
    check = manifest["elf_check"]
    if check["checked"]:  # type: ignore[index]
        console.info(f"[green]ok[/green]: {check['checked']} ELF file(s), all {check['expected']}")  # type: ignore[index]
    else:
        console.info(
            "[green]ok[/green]: no ELF files to check (a pure-python extension, no libqpu, no torch)"
        )
    click.echo(str(out / "manifest.json"))
