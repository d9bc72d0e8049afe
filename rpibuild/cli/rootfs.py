"""``rpibuild rootfs``."""

from __future__ import annotations

from pathlib import Path

import click

from rpibuild.cli.options import emit_json, json_option, output_path, profile_options


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
    /etc/exports line, the Pi's mount and chroot commands, and the cmdline.txt entries
    for booting the Pi with this root over NFS.
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
    nfs = result.nfs
    lines = ["# On the NFS server:"]
    if nfs.extract:
        lines.append(f"#   unpack the tarball (as root, keeping owners and capabilities):\n{nfs.extract}")
    lines += [
        f"#   /etc/exports (then: sudo exportfs -ra):\n{nfs.exports}",
        "# On the Pi (Raspberry Pi OS from its SD card): mount, bind /dev /proc /sys, chroot in,",
        "# and unmount it all on exit (the checks: scripts/pi-check.sh with the same argument):",
        nfs.chroot,
        "#   or just mount it by hand:",
        nfs.mount,
        "# Or boot the Pi with it as its root: in cmdline.txt on the SD card's boot partition,",
        "# replace root=... and rootfstype=... with (one line):",
        nfs.cmdline,
    ]
    if not stats.has_init:
        lines.append(
            "# note: this root has no init (systemd-sysv) and no kernel modules for the Pi's kernel;"
            " use the chroot way, or add them before booting from it"
        )
    click.echo("\n".join(lines))
