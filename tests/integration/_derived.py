"""Small images derived from the bootstrapped armhf base, built by the real engine under QEMU.

Shared by the rootfs and artifacts tests; every image made here is removed by its fixture.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from rpibuild.engine import BuildRequest, Engine


def build_derived(
    engine: Engine,
    context: Path,
    dockerfile: str,
    tag: str,
    files: dict[str, Path] | None = None,
) -> str:
    """Build ``dockerfile`` (with ``files`` copied into the context) for linux/arm/v7, tag it."""
    context.mkdir(parents=True, exist_ok=True)
    (context / "Dockerfile").write_text(dockerfile, encoding="utf-8")
    for name, source in (files or {}).items():
        target = context / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    result = engine.build(BuildRequest(context=context, platform="linux/arm/v7"))
    engine.tag(result.image_id, tag)
    return result.image_id


@contextlib.contextmanager
def _created_container(image: str) -> Iterator[str]:
    """A created (never started) container of ``image`` via the docker CLI, always removed.

    The CLI, not rpibuild's engine module, so these references are independent of the code
    under test.
    """
    cid = subprocess.run(
        ["docker", "create", "--platform", "linux/arm/v7", image, "/bin/true"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    try:
        yield cid
    finally:
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True, check=False)


def copy_from_image(image: str, path: str, destination: Path) -> Path:
    """``docker cp`` one file out of an image (through a created container, then removed)."""
    with _created_container(image) as cid:
        subprocess.run(["docker", "cp", "-L", f"{cid}:{path}", str(destination)], check=True)
    return destination


def docker_export(image: str, destination: Path) -> Path:
    """The reference: the docker CLI's own ``docker export`` of a created container of ``image``."""
    with _created_container(image) as cid:
        subprocess.run(["docker", "export", "-o", str(destination), cid], check=True)
    return destination


def capability_tar(directory: Path, name: str, capability: str = "cap_net_raw+ep") -> Path:
    """A tar holding one file with a file capability (set with the host's setcap), for ADD.

    The engine applies PAX xattrs when it unpacks an ADDed tar, so the image gets a real
    security.capability xattr without any tool inside the (minbase) image.
    """
    work = directory / "captar"
    work.mkdir(parents=True, exist_ok=True)
    target = work / name
    target.write_bytes(b"#!/bin/sh\necho capable\n")
    target.chmod(0o755)
    subprocess.run(["setcap", capability, str(target)], check=True)
    archive = directory / "caps.tar"
    subprocess.run(
        ["tar", "--xattrs", "--xattrs-include=*", "-C", str(work), "-cf", str(archive), name],
        check=True,
    )
    return archive
