"""``rpibuild rootfs``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from rpibuild.cli.options import emit_json, json_option, output_path, profile_options

if TYPE_CHECKING:
    from rpibuild.export.rootfs import NfsInstructions


def human_bytes(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GB"


@click.command()
@profile_options
@json_option
@click.argument("out", type=click.Path(path_type=Path), callback=output_path)
@click.option(
    "--nfs-host",
    metavar="HOST",
    envvar="RPIBUILD_NFS_HOST",
    show_envvar=True,
    help="Address the Pi mounts the root from [default: this host's address on its default route].",
)
@click.option(
    "--client",
    default="*",
    show_default=True,
    metavar="SPEC",
    help="Who may mount it, in /etc/exports syntax (e.g. 192.168.1.0/24).",
)
def rootfs(
    profile: str | None,
    overrides: tuple[str, ...],
    as_json: bool,
    out: Path,
    nfs_host: str | None,
    client: str,
) -> None:
    """Export the built image of PROFILE as a Pi's root filesystem into OUT.

    OUT is a folder (new or empty; needs root, to keep owners, setuid bits and file
    capabilities) or a tarball named *.tar, *.tar.gz or *.tar.zst. Numeric owners, modes,
    hard links, symlinks and xattrs are kept; QEMU binaries, build proxies, the host's
    resolv.conf and docker's placeholders are stripped (listed in the summary). Prints the
    /etc/exports line and the chroot workflow: a Pi running its own OS from its SD card
    mounts the tree over NFS and chroots into it (the image has no init, kernel or modules
    to boot from).
    """
    from rich.markup import escape

    from rpibuild import console
    from rpibuild.config import load_profile
    from rpibuild.engine import DockerEngine
    from rpibuild.export.rootfs import export_profile

    prof = load_profile(profile, overrides).profile
    engine = DockerEngine.connect()
    with console.status(f"exporting {prof.name}") as update:
        result = export_profile(
            prof,
            engine,
            out,
            host=nfs_host,
            client=client,
            progress=lambda read, written: update(f"{human_bytes(written)} written"),
        )
    if as_json:
        emit_json(result.as_dict())
        return
    stats = result.stats
    console.info(
        f"[green]exported[/green] {result.image} to {out}: {stats.members} entries, "
        f"{human_bytes(stats.bytes_out)} of tar in {result.seconds:.0f}s"
    )
    for path, why in stats.stripped:
        console.info(f"  [dim]stripped[/dim] /{escape(path)}: {why}")
    click.echo(pi_usage(result.nfs))


def pi_usage(nfs: NfsInstructions) -> str:
    """How the exported tree is used: served over NFS to a Pi that booted its own OS from its
    SD card, which mounts it and chroots in (the image has no init, kernel or modules to boot)."""
    lines = ["# On the NFS server:"]
    if nfs.extract:
        lines.append(f"#   unpack the tarball (as root, keeping owners and capabilities):\n{nfs.extract}")
    lines += [
        f"#   /etc/exports (then: sudo exportfs -ra):\n{nfs.exports}",
        "# On the Pi, running Raspberry Pi OS from its SD card: mount the tree, bind /dev (the",
        "# GPU's /dev/vcio and /dev/mem), /proc and /sys, chroot in, and undo it all on exit",
        "# (scripts/pi-chroot.sh from this repository; scripts/pi-check.sh runs the checks):",
        nfs.chroot,
        "#   or mount it by hand, then bind /dev, /proc and /sys under it and chroot:",
        nfs.mount,
        "# The tree is not a boot root: it has no init, no kernel and no kernel modules.",
    ]
    return "\n".join(lines)
