"""A foreign base's file-placing work done on the build platform instead of under QEMU.

A foreign-architecture bootstrap runs every maintainer script under QEMU, and most of its
minutes go to two kinds that only write files: byte-compiling Python and building the CA
bundle (measured on the default arm64 base: 156 s and 56 s of 322 s). mmdebstrap runs
``images/base/defer.sh`` as hooks, which puts no-op stand-ins in their place while the
packages install and the real programs back at the end; ``images/base/finish.py`` then does
that work in a container of the build platform's base (same suite, so the same Python minor
version and the same CA script), with the target's tree mounted. The base ends up with the
same files a plain bootstrap leaves.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from collections.abc import Callable
from pathlib import Path

from rpibuild.config.model import Profile
from rpibuild.engine import Engine
from rpibuild.errors import BuildError
from rpibuild.host.build_platform import cross_base_profile
from rpibuild.resources import images_dir

# Where the hook and the finisher are mounted in a helper or finishing container.
MOUNTED = Path("/opt/rpibuild/base")


def recipe_dir() -> Path:
    return images_dir() / "base"


def recipe_digest() -> str:
    """The hook's and the finisher's bytes: part of a base's key (editing either is another
    base)."""
    digest = hashlib.sha256()
    for path in sorted(recipe_dir().iterdir()):
        if path.is_file():
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def defers(profile: Profile) -> bool:
    """Whether this base's bootstrap defers work to the build platform: mmdebstrap (whose
    hooks make it possible) on a foreign architecture (a native one has no QEMU to avoid)."""
    bootstrap = profile.base.bootstrap
    return bootstrap is not None and bootstrap.tool == "mmdebstrap" and profile.target.binfmt is not None


def hook_options(recipe: Path) -> list[str]:
    """mmdebstrap's options that run the defer hook, ``recipe`` being where the tool sees it."""
    script = shlex.quote(str(recipe / "defer.sh"))
    return [f'--essential-hook=sh {script} divert "$1"', f'--customize-hook=sh {script} restore "$1"']


def finishing_profile(profile: Profile) -> Profile:
    """The profile whose base runs the finisher: the build platform's, which has Python (the
    cross stage runs its helpers with it); python3 is added for a profile without it."""
    native = cross_base_profile(profile)
    bootstrap = native.base.bootstrap
    assert bootstrap is not None
    if "python3" in bootstrap.packages:
        return native
    packages = [*bootstrap.packages, "python3"]
    return native.model_copy(
        update={
            "base": native.base.model_copy(
                update={"bootstrap": bootstrap.model_copy(update={"packages": packages})}
            )
        }
    )


def has_deferred_work(rootfs: Path) -> bool:
    """A tree with a Python interpreter or the CA script has work left (a bare one has none,
    and needs no build-platform base)."""
    return (
        any((rootfs / "usr/lib").glob("python3.*/os.py"))
        or (rootfs / "usr/sbin/update-ca-certificates").is_file()
    )


def finish_on_build_platform(
    engine: Engine,
    image: str,
    rootfs: Path,
    *,
    on_line: Callable[[str], None],
    progress: Callable[[str], None] | None,
) -> list[dict[str, object]]:
    """Run the finisher in ``image`` (the finishing profile's base) on ``rootfs``; returns its
    step records. A failure is the base's, with the finisher's last lines."""
    steps: list[dict[str, object]] = []
    tail: list[str] = []

    def line(text: str) -> None:
        on_line(text)
        tail[:] = [*tail[-19:], text]
        try:
            record = json.loads(text)
        except ValueError:
            return
        if isinstance(record, dict) and "step" in record:
            steps.append(record)
            if progress:
                where, seconds = record.get("where"), record.get("seconds")
                progress(f"{record['step']}: {record.get('files')} files on the {where} in {seconds} s")

    code = engine.run_streaming(
        image,
        ["python3", str(MOUNTED / "finish.py"), "/target"],
        on_line=line,
        volumes={
            str(rootfs): {"bind": "/target", "mode": "rw"},
            str(recipe_dir()): {"bind": str(MOUNTED), "mode": "ro"},
        },
        network=False,
    )
    if code != 0:
        raise BuildError(
            f"finishing the base on the build platform failed (exit {code})",
            stage="base",
            log_tail=tail,
            hint="rerun with -v; the log file has the finisher's output",
        )
    return steps
