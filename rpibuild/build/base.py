"""The base image of a profile: pulled, or bootstrapped with mmdebstrap (or debootstrap).

A bootstrapped base is tagged by a hash of everything that produced it, so the same
profile finds it again in seconds and a changed suite or package list makes a new one. The
packages every build of a profile installs are folded into its bases (rpibuild.planning.bases),
so no build stage runs an emulated ``apt-get``: mmdebstrap solves and downloads natively and
QEMU runs only dpkg and the maintainer scripts.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import tarfile
import tempfile
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rpibuild.build import base_finish
from rpibuild.build.sources import cache_dir, file_sha256
from rpibuild.config.model import Profile
from rpibuild.errors import BuildError, EngineError, HostSetupError
from rpibuild.host import qemu
from rpibuild.host.locks import host_lock
from rpibuild.redact import mask_urls

if TYPE_CHECKING:
    from rpibuild.engine import Engine, ImageInfo

BASE_REPOSITORY = "rpibuild/base"
# Where the bootstrap tool runs: "auto" (the host when it has the tool, else a helper
# container), "host" or "container"; the helper image must be local or pullable.
DEBOOTSTRAP_MODE_ENV = "RPIBUILD_DEBOOTSTRAP"
HELPER_IMAGE_ENV = "RPIBUILD_HELPER_IMAGE"
DEFAULT_HELPER_IMAGE = "debian:bookworm-slim"
# Bump when the bootstrap recipe itself changes, so old bases are not reused.
RECIPE_VERSION = 3
# mmdebstrap's own hook (shipped with it) that runs dpkg under eatmydata: no fsync, which under
# QEMU costs most of an install (HOSTS.md); the tree is packed into an image right after.
EATMYDATA_HOOK = Path("/usr/share/mmdebstrap/hooks/eatmydata")
# What dpkg leaves out of an mmdebstrap base (and of packages installed in it later: the
# options stay in /etc/dpkg/dpkg.cfg.d), as Debian's slim container images do: documentation,
# manual pages, translations. Copyright files stay (the SBOM reads their licences). Less for
# the emulated dpkg to write, and a leaner runtime image.
DPKG_EXCLUDES = (
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/lintian/*",
)


def base_key(profile: Profile) -> str:
    """Content hash of what produces the base (platform, suite, mirror, variant, packages and
    the keyring's bytes: a keyring file replaced in place is another base).

    The recipe (the tool's command line, the tidying, the archive's config) is code in this
    module; RECIPE_VERSION stands for it. A base whose bootstrap defers work to the build
    platform (rpibuild.build.base_finish) is also keyed by that hook's and finisher's bytes."""
    bootstrap = profile.base.bootstrap
    payload: dict[str, object] = {
        "recipe": RECIPE_VERSION,
        "platform": profile.platform,
        "bootstrap": bootstrap.model_dump() if bootstrap else None,
    }
    if base_finish.defers(profile):
        payload["deferred"] = base_finish.recipe_digest()
    keyring = Path(bootstrap.keyring) if bootstrap and bootstrap.keyring else None
    if keyring is not None and keyring.is_file():  # a missing one is refused by config.checks
        payload["keyring_sha256"] = file_sha256(keyring)
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def base_reference(profile: Profile) -> str:
    """The image a build starts FROM: the pulled reference, or the bootstrapped base's tag."""
    if profile.base.image:
        return profile.base.image
    bootstrap = profile.base.bootstrap
    assert bootstrap is not None  # the model guarantees one of the two
    return f"{BASE_REPOSITORY}:{bootstrap.suite}-{profile.target.slug}-{base_key(profile)[:16]}"


# ---------------------------------------------------------------- producing the base

BOOTSTRAP_HINTS = (
    ("Exec format error", "no binfmt handler for this architecture: run `rpibuild qemu install`"),
    ("Failed getting release file", "the suite or mirror is wrong, or the mirror is unreachable"),
    ("Couldn't download", "the mirror is unreachable (check network.http_proxy / base.bootstrap.mirror)"),
    ("Failed to fetch", "the mirror is unreachable (check network.http_proxy / base.bootstrap.mirror)"),
    ("No space left", "the disk is full: free space or set RPIBUILD_CACHE to a bigger disk"),
    ("Release signed by unknown key", "give base.bootstrap.keyring (Raspbian needs its own keyring)"),
    ("NO_PUBKEY", "give base.bootstrap.keyring (Raspbian needs its own keyring)"),
    ("No such script", "debootstrap does not know this suite (base.bootstrap.suite)"),
    ("does not have a Release file", "the suite is not on the mirror (base.bootstrap.suite)"),
)
# apt's words for a package the suite does not have (mmdebstrap), and debootstrap's.
_MISSING_PACKAGE = re.compile(
    r"E: Unable to locate package (\S+)|E: Package '([^']+)' has no installation candidate"
    r"|Couldn't find these debs: (\S+)"
)


@dataclass(frozen=True)
class BaseImage:
    """The base a build starts from."""

    image: str
    id: str
    platform: str
    cached: bool

    def as_dict(self) -> dict[str, object]:
        return {"image": self.image, "id": self.id, "platform": self.platform, "cached": self.cached}


def ensure_base(
    profile: Profile,
    engine: Engine,
    *,
    refresh: bool = False,
    progress: Callable[[str], None] | None = None,
    on_log: Callable[[str], None] | None = None,
    finisher: Profile | None = None,
) -> BaseImage:
    """Reuse, pull or bootstrap the profile's base image and return it.

    ``finisher``: the profile whose base does a foreign bootstrap's deferred work
    (rpibuild.build.base_finish; default: the build platform's base of ``profile``). A caller
    whose ``profile`` has the target's packages folded in passes the unfolded profile's, so
    the build platform's own base is reused rather than another one made."""
    reference = base_reference(profile)
    platform = profile.target
    found = None if refresh else _existing(profile, engine, reference)
    if found is not None:
        return found
    if profile.base.image:
        image_id = engine.pull(reference, platform=platform.name)
        pulled = engine.image(image_id)
        if pulled is None or not _matches(pulled, profile):
            got = pulled.platform if pulled else "nothing"
            raise HostSetupError(
                f"{reference} is {got}, not {platform.name}",
                hint="pin the image by a digest of the right platform, or bootstrap instead",
            )
        return BaseImage(reference, pulled.id, pulled.platform, cached=False)
    # Two builds needing the same new base (CI jobs on one host) bootstrap it once: the
    # second waits for the first, then finds the image.
    say = progress or (lambda _line: None)
    with host_lock(
        bootstrap_name(profile),
        on_wait=lambda: say(f"waiting: another rpibuild is bootstrapping {reference}"),
    ):
        found = None if refresh else _existing(profile, engine, reference)
        if found is not None:
            return found
        image_id = bootstrap_base(
            profile, engine, reference, progress=progress, on_log=on_log, finisher=finisher
        )
    return BaseImage(reference, image_id, platform.name, cached=False)


def _existing(profile: Profile, engine: Engine, reference: str) -> BaseImage | None:
    """The base already on the engine, if it is for the profile's platform."""
    image = engine.image(reference)
    if image is None or not _matches(image, profile):
        return None
    return BaseImage(reference, image.id, image.platform, cached=True)


def bootstrap_name(profile: Profile) -> str:
    """``base-<key>``: the name of a bootstrap's host lock and log file."""
    return f"base-{base_key(profile)[:16]}"


def _matches(image: ImageInfo, profile: Profile) -> bool:
    target = profile.target
    return (
        image.os == target.os
        and image.architecture == target.architecture
        and (target.variant is None or image.variant == target.variant)
    )


def log_dir() -> Path:
    return cache_dir() / "logs"


def bootstrap_command(profile: Profile, target: Path, recipe: Path | None = None) -> list[str]:
    """The bootstrap tool's command line for ``profile``'s base, into the folder ``target``;
    ``recipe``: where the tool sees rpibuild's hooks (default: this host's copy)."""
    bootstrap = profile.base.bootstrap
    assert bootstrap is not None
    if bootstrap.tool == "debootstrap":
        return _debootstrap_command(profile, target)
    command = [
        "mmdebstrap",
        "--mode=root",
        "--format=directory",
        f"--architectures={profile.target.debian_arch}",
        f"--variant={'important' if bootstrap.variant == 'default' else bootstrap.variant}",
        f"--components={','.join(bootstrap.components)}",
        '--aptopt=Acquire::Languages "none"',
        *(f"--dpkgopt={option}" for option in DPKG_EXCLUDES),
    ]
    if bootstrap.packages:
        command.append(f"--include={','.join(bootstrap.packages)}")
    if bootstrap.keyring:
        command.append(f"--keyring={bootstrap.keyring}")
    command.append(f"--hook-dir={EATMYDATA_HOOK}")
    if base_finish.defers(profile):
        command += base_finish.hook_options(recipe or base_finish.recipe_dir())
    command += [bootstrap.suite, str(target)]
    if bootstrap.mirror:
        command.append(bootstrap.mirror)
    return command


def _debootstrap_command(profile: Profile, target: Path) -> list[str]:
    bootstrap = profile.base.bootstrap
    assert bootstrap is not None
    command = [
        "debootstrap",
        f"--arch={profile.target.debian_arch}",
        f"--variant={bootstrap.variant}" if bootstrap.variant != "default" else "",
        f"--components={','.join(bootstrap.components)}",
    ]
    if bootstrap.packages:
        command.append(f"--include={','.join(bootstrap.packages)}")
    if bootstrap.keyring:
        command.append(f"--keyring={bootstrap.keyring}")
    command += [bootstrap.suite, str(target)]
    if bootstrap.mirror:
        command.append(bootstrap.mirror)
    return [part for part in command if part]


def _bootstrap_failed(profile: Profile, where: str, code: int, tail: list[str], log_path: Path) -> BuildError:
    """The error of a failed bootstrap: a missing package named (a profile mistake), else the
    tool's last lines and a hint matched from them."""
    bootstrap = profile.base.bootstrap
    assert bootstrap is not None
    text = "\n".join(tail)
    missing = next((m for m in map(_MISSING_PACKAGE.search, tail) if m), None)
    if missing:
        package = next(group for group in missing.groups() if group)
        return BuildError(
            f"package {package!r} is not in {bootstrap.suite} for {profile.target.debian_arch}: "
            f"the base cannot be bootstrapped",
            stage="base",
            log_tail=list(tail),
            log_file=str(log_path),
            hint="check the package name in apt.packages, apt.runtime_packages or base.bootstrap.packages",
        )
    return BuildError(
        f"{bootstrap.tool} failed{where} (exit {code})",
        stage="base",
        log_tail=list(tail),
        log_file=str(log_path),
        hint=next((h for needle, h in BOOTSTRAP_HINTS if needle in text), None),
    )


def bootstrap_on_host(tool: str = "mmdebstrap") -> bool:
    """Whether the bootstrap tool runs on this host (else in a helper container), by
    ``RPIBUILD_DEBOOTSTRAP``: auto takes the host when it has the tool and rpibuild runs as
    root (bootstrapping needs mknod and chroot); a CI job's non-root user gets the container."""
    mode = os.environ.get(DEBOOTSTRAP_MODE_ENV, "auto")
    if mode not in ("auto", "host", "container"):
        raise HostSetupError(f"{DEBOOTSTRAP_MODE_ENV}={mode}: expected auto, host or container")
    if mode == "host" and shutil.which(tool) is None:
        raise HostSetupError(f"{tool} is not installed", hint=f"apt-get install -y {tool}")
    return mode == "host" or (mode == "auto" and shutil.which(tool) is not None and os.geteuid() == 0)


def bootstrap_base(
    profile: Profile,
    engine: Engine,
    reference: str,
    *,
    progress: Callable[[str], None] | None = None,
    on_log: Callable[[str], None] | None = None,
    finisher: Profile | None = None,
) -> str:
    """Bootstrap into a temporary folder, then load it as an image with true metadata.

    Nothing is tagged until the image is complete: an interrupted or failed bootstrap leaves
    no image, and its temporary folder (after unmounting anything the tool mounted in it)
    is removed.
    """
    platform = profile.target
    if platform.binfmt and not qemu.status(platform.binfmt).usable:
        raise HostSetupError(
            f"this host cannot run {platform.name} binaries: qemu-{platform.binfmt} is "
            f"{qemu.status(platform.binfmt).problem()}",
            hint="rpibuild qemu install",
        )
    bootstrap = profile.base.bootstrap
    assert bootstrap is not None
    on_host = bootstrap_on_host(bootstrap.tool)
    log_dir().mkdir(parents=True, exist_ok=True)
    log_path = log_dir() / f"{bootstrap_name(profile)}.log"
    if on_log is not None:
        on_log(str(log_path))
    work_parent = cache_dir() / "tmp"
    work_parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="base-", dir=work_parent))
    try:
        rootfs = work / "rootfs"
        if on_host:
            _run_logged(profile, bootstrap_command(profile, rootfs), log_path, progress)
        else:
            _bootstrap_in_container(profile, engine, work, log_path, progress)
        if base_finish.defers(profile) and base_finish.has_deferred_work(rootfs):
            finishing = finisher or base_finish.finishing_profile(profile)
            _finish(finishing, engine, rootfs, log_path, progress)
        _tidy_rootfs(rootfs)
        archive = _docker_archive(profile, rootfs, work, reference)
        shutil.rmtree(rootfs, ignore_errors=True)
        ids = engine.load(archive)
    finally:
        _unmount_below(work)
        shutil.rmtree(work, ignore_errors=True)
    loaded = engine.image(reference)
    if loaded is None:
        raise EngineError(f"the engine loaded {ids} but {reference} is not there")
    return loaded.id


def _run_logged(
    profile: Profile, command: list[str], log_path: Path, progress: Callable[[str], None] | None
) -> None:
    tail: deque[str] = deque(maxlen=40)
    with log_path.open("w", encoding="utf-8") as log:
        log.write(mask_urls("$ " + " ".join(command)) + "\n")
        log.flush()
        # Its own process group: on an interrupt the tool and everything it started (apt,
        # dpkg, maintainer scripts) stop before the temporary folder is removed.
        with subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        ) as process:
            try:
                assert process.stdout is not None
                for line in process.stdout:
                    log.write(mask_urls(line))
                    tail.append(line.rstrip())
                    if progress and line.startswith(("I: ", "W: ", "E: ")):
                        progress(line[3:].strip())
                code = process.wait()
            except BaseException:
                _stop_group(process)
                raise
    if code != 0:
        raise _bootstrap_failed(profile, "", code, list(tail), log_path)


def _finish(
    finishing: Profile, engine: Engine, rootfs: Path, log_path: Path, progress: Callable[[str], None] | None
) -> None:
    """The work the bootstrap deferred, done on the build platform (rpibuild.build.base_finish)
    in the base of ``finishing``, which is reused or bootstrapped (natively, in seconds) first."""
    finisher = ensure_base(finishing, engine, progress=progress)
    if progress:
        progress(f"finishing on the build platform in {finisher.image}")
    with log_path.open("a", encoding="utf-8") as log:
        log.write(f"$ (in {finisher.image}) python3 finish.py /target\n")

        def to_log(line: str) -> None:
            log.write(line + "\n")

        base_finish.finish_on_build_platform(
            engine, finisher.image, rootfs, on_line=to_log, progress=progress
        )


def _stop_group(process: subprocess.Popen[str]) -> None:
    """Stop a process and its whole group: politely, then for good; wait until it is gone."""
    for sig, grace in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def _bootstrap_in_container(
    profile: Profile,
    engine: Engine,
    work: Path,
    log_path: Path,
    progress: Callable[[str], None] | None,
) -> None:
    """Run the bootstrap tool in a helper container (a host without it).

    It gets CAP_SYS_ADMIN (to mount /proc in the target) rather than --privileged, which
    sandboxed engines refuse.

    The target tree is written into ``work`` through a bind mount at /bootstrap; foreign-architecture
    binaries in its second stage run through the host's binfmt handlers (F flag).
    """
    image = os.environ.get(HELPER_IMAGE_ENV, DEFAULT_HELPER_IMAGE)
    bootstrap = profile.base.bootstrap
    assert bootstrap is not None
    tool = bootstrap.tool
    if engine.image(image) is None:
        try:
            engine.pull(image)
        except EngineError as exc:
            raise HostSetupError(
                f"{tool} is not on this host and the helper image {image} cannot be had: {exc.message}",
                hint=f"apt-get install -y {tool}, or set {HELPER_IMAGE_ENV} to a local Debian image",
            ) from None
    volumes = {
        str(work): {"bind": "/bootstrap", "mode": "rw"},
        str(base_finish.recipe_dir()): {"bind": str(base_finish.MOUNTED), "mode": "ro"},
    }
    binfmt = profile.target.binfmt
    emulator = Path(f"/usr/bin/qemu-{binfmt}-static") if binfmt else None
    if tool == "mmdebstrap" and emulator is not None and emulator.is_file():
        # mmdebstrap looks for the emulator by path for a foreign architecture (the binfmt
        # handler runs it either way): the host's, statically linked, read-only.
        volumes[str(emulator)] = {"bind": str(emulator), "mode": "ro"}
    if bootstrap.keyring:
        volumes[bootstrap.keyring] = {"bind": bootstrap.keyring, "mode": "ro"}
    command = bootstrap_command(profile, Path("/bootstrap/rootfs"), base_finish.MOUNTED)
    inner = " ".join(shlex.quote(part) for part in command)
    # The helper's own tool (the image is Debian: its apt installs it; its hooks come with it;
    # mmdebstrap wants arch-test for a foreign architecture, its eatmydata hook dpkg-architecture).
    needs = f"{tool} arch-test dpkg-dev" if tool == "mmdebstrap" else tool
    script = (
        "set -e; export DEBIAN_FRONTEND=noninteractive; "
        f"command -v {tool} >/dev/null || "
        "{ apt-get update -qq && "
        f"apt-get install -y -qq --no-install-recommends {needs} ca-certificates; }}; " + inner
    )
    tail: deque[str] = deque(maxlen=40)
    with log_path.open("w", encoding="utf-8") as log:
        log.write(mask_urls(f"$ (in {image}) {inner}") + "\n")

        def on_line(line: str) -> None:
            log.write(mask_urls(line) + "\n")
            tail.append(line)
            if progress and line.startswith(("I: ", "W: ", "E: ")):
                progress(line[3:].strip())

        code = engine.run_streaming(
            image, ["sh", "-c", script], on_line=on_line, volumes=volumes, cap_add=["SYS_ADMIN"]
        )
    if code != 0:
        raise _bootstrap_failed(profile, f" in the helper container {image}", code, list(tail), log_path)


def _tidy_rootfs(rootfs: Path) -> None:
    """Drop what must not be baked into an image: host resolv.conf, package caches."""
    for relative in ("etc/resolv.conf", "etc/hostname"):
        path = rootfs / relative
        if path.is_file() or path.is_symlink():
            path.unlink()
    for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for entry in (rootfs / cache).glob("*"):
            if entry.is_file() and entry.name != "lock":
                entry.unlink()


def _unmount_below(directory: Path) -> None:
    """Unmount anything the bootstrap left mounted under ``directory`` (deepest first)."""
    prefix = str(directory.resolve()) + "/"
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return
    points = [line.split()[1] for line in mounts if len(line.split()) > 1]
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


def _docker_archive(profile: Profile, rootfs: Path, work: Path, reference: str) -> Path:
    """Write a ``docker load`` archive whose config carries the true os/architecture/variant.

    ``docker import`` would mark the image amd64; writing the config ourselves is the one
    way to get arm/v7 or arm64 metadata without a registry.
    """
    layer = work / "layer.tar"
    subprocess.run(
        [
            "tar",
            "--numeric-owner",
            "--xattrs",
            "--xattrs-include=*",
            "-C",
            str(rootfs),
            "-cf",
            str(layer),
            ".",
        ],
        check=True,
        capture_output=True,
    )
    diff_id = "sha256:" + file_sha256(layer)
    platform = profile.target
    bootstrap = profile.base.bootstrap
    config = {
        "architecture": platform.architecture,
        "os": platform.os,
        **({"variant": platform.variant} if platform.variant else {}),
        "created": _EPOCH,
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"],
            "Cmd": ["/bin/bash"],
            "Labels": {
                "io.rpibuild.base.key": base_key(profile),
                "io.rpibuild.base.suite": bootstrap.suite if bootstrap else "",
                "io.rpibuild.platform": platform.name,
            },
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [
            {
                "created": _EPOCH,
                "created_by": "rpibuild base: "
                + mask_urls(" ".join(bootstrap_command(profile, ROOT, base_finish.MOUNTED))),
            }
        ],
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    layer_name = diff_id.removeprefix("sha256:") + "/layer.tar"
    manifest = [{"Config": config_name, "RepoTags": [reference], "Layers": [layer_name]}]
    archive = work / "image.tar"
    with tarfile.open(archive, "w") as tar:
        _add_bytes(tar, config_name, config_bytes)
        _add_bytes(tar, "manifest.json", json.dumps(manifest).encode())
        tar.add(layer, arcname=layer_name)
    layer.unlink()
    return archive


_EPOCH = "1970-01-01T00:00:00Z"
ROOT = Path("/rootfs")  # where the history says the tree was bootstrapped


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))
