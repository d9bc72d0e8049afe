"""Gather every third-party file a build of a profile downloads into one folder: a mirror.

A host without GitHub or the package index builds from that folder, given as
``RPIBUILD_SOURCE_MIRROR``: the pinned archives lie at its top under their forge names
(``QPULib-<commit>.tar.gz``), as ``sources.mirrored_url`` looks them up, and the Python
packages the target's venv gets lie in ``pip/``, which a build mounts for its pip steps
with no package index at all (``render.pip_conf``). Debian's pytorch source (``torch.source:
debian``) lies in ``debian/`` as a small Debian archive: the source package and the suite's
signed InRelease and Sources index, so the build's apt checks it offline exactly as it checks
the mirror (``images/torch-debian/fetch.sh``); it is gathered through ``network.apt_mirror``
when set, as builds reach Debian. Debian's binary packages keep coming from the apt mirror
settings.

The wheels are chosen on this host by the target's tags (``pip download --platform ...
--only-binary=:all:``): the target's CPython version and glibc follow from its Debian suite.
"""

from __future__ import annotations

import email.parser
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.requirements import Requirement

from rpibuild import resources
from rpibuild.build import sources
from rpibuild.config.model import Profile
from rpibuild.errors import ConfigError, DownloadError
from rpibuild.redact import mask_urls
from rpibuild.torch_routes import route_of

if TYPE_CHECKING:
    from rpibuild.engine import Engine

# What each Debian suite's python3 is, and its glibc minor: the tags of the wheels it takes.
SUITE_PYTHON: dict[str, tuple[str, int]] = {
    "bookworm": ("3.11", 36),
    "trixie": ("3.13", 41),
}
# Platform tags of the oldest manylinux (PEP 600 counts from glibc 2.17).
FIRST_MANYLINUX_GLIBC = 17
MANYLINUX2014 = {"x86_64", "i686", "aarch64", "armv7l"}
# Test requirements the verify stage installs (dockerfiles/stages/verify.j2).
VERIFY_REQUIREMENTS = ("pytest", "hypothesis")
# What the venv is upgraded with (dockerfiles/stages/system.j2).
VENV_REQUIREMENTS = ("pip>=23", "wheel", "setuptools")


@dataclass
class Gathered:
    """What went into the mirror folder, and what a build still takes from elsewhere."""

    folder: str
    archives: list[str] = field(default_factory=list)
    wheels: list[str] = field(default_factory=list)
    elsewhere: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def requirements(profile: Profile) -> list[str]:
    """The Python packages a build of ``profile`` installs from the package index."""
    wanted = list(VENV_REQUIREMENTS)
    wanted += route_of(profile.torch.source).index_requirements(profile.torch)
    if profile.verify.enabled:
        wanted += VERIFY_REQUIREMENTS
    return wanted


def target_python(profile: Profile) -> tuple[str, int]:
    """(CPython version, glibc minor) of the profile's target, from its Debian suite."""
    bootstrap = profile.base.bootstrap
    suite = bootstrap.suite if bootstrap else None
    if suite not in SUITE_PYTHON:
        raise ConfigError(
            f"cannot tell which Python the suite {suite or '(a pulled base image)'} has, so not "
            "which wheels its venv takes",
            field="base.bootstrap.suite",
            hint=f"known suites: {', '.join(SUITE_PYTHON)}",
        )
    return SUITE_PYTHON[suite]


def pip_download_options(profile: Profile) -> list[str]:
    """pip's options that choose the target's wheels instead of this host's."""
    version, glibc = target_python(profile)
    machine = profile.target.uname
    short = version.replace(".", "")
    options = ["--only-binary=:all:", "--implementation", "cp", "--python-version", version]
    options += ["--abi", f"cp{short}", "--abi", "abi3", "--abi", "none"]
    tags = [f"manylinux_2_{minor}_{machine}" for minor in range(glibc, FIRST_MANYLINUX_GLIBC - 1, -1)]
    if machine in MANYLINUX2014:
        tags.append(f"manylinux2014_{machine}")
    tags += [f"linux_{machine}", "any"]
    for tag in tags:
        options += ["--platform", tag]
    return options


def gather(profile: Profile, folder: Path, engine: Engine | None = None) -> Gathered:
    """Fill ``folder`` (new or empty) with the profile's archives, its wheels in ``pip/`` and
    its Debian source package in ``debian/`` (fetched by ``engine``, in the build platform's
    base: apt of the target's suite)."""
    if folder.exists() and any(folder.iterdir()):
        raise ConfigError(f"output folder {folder} is not empty", field="--output")
    folder.mkdir(parents=True, exist_ok=True)
    result = Gathered(folder=str(folder.resolve()))
    _archives(profile, folder, result)
    _wheels(profile, folder / "pip", result)
    _debian_source(profile, folder, result, engine)
    elsewhere = route_of(profile.torch.source).fetched_elsewhere(profile.torch)
    if elsewhere:
        result.elsewhere.append(mask_urls(elsewhere))
    result.elsewhere.append("Debian packages: the apt mirror (network.apt_mirror, base.bootstrap.mirror)")
    return result


def _archives(profile: Profile, folder: Path, result: Gathered) -> None:
    """The pinned QPULib archive, under its forge name, checked like a build checks it."""
    qpulib = profile.qpulib
    if not qpulib.enabled:
        return
    if qpulib.path:
        result.elsewhere.append("QPULib: the local tree qpulib.path names")
        return
    name = f"QPULib-{qpulib.commit}.tar.gz"
    url = sources.mirrored_url(qpulib.url.format(commit=qpulib.commit), name)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        archive = Path(tmp, name)
        sources.download(url, archive)
        sources.unpack_checked(archive, Path(tmp, "tree"), url, qpulib.tree_sha256)
        archive.rename(folder / name)
    result.archives.append(name)


def _debian_source(profile: Profile, folder: Path, result: Gathered, engine: Engine | None) -> None:
    """The route's Debian source package, with the signed indexes of its suite, as the small
    archive ``debian/`` (``fetch.sh --gather``, run by apt of the suite in the build platform's
    base, which it checks as it downloads)."""
    wanted = route_of(profile.torch.source).debian_source(profile.torch)
    if wanted is None:
        return
    package, version = wanted
    bootstrap = profile.base.bootstrap
    if bootstrap is None or engine is None:
        raise ConfigError(
            f"Debian's {package} source is gathered with apt of the target's suite in a bootstrapped base",
            field="base.bootstrap",
        )
    from rpibuild.build.base import ensure_base
    from rpibuild.build.pipeline import proxy_buildargs
    from rpibuild.host.build_platform import cross_base_profile

    helper = ensure_base(cross_base_profile(profile), engine)
    images = resources.images_dir()
    lines: list[str] = []
    owner = f"{os.getuid()}:{os.getgid()}"
    script = 'bash /opt/rpibuild/torch-debian/fetch.sh --gather "$@" && chown -R "$OWNER" /out/debian'
    volumes = {
        str(folder.resolve()): {"bind": "/out", "mode": "rw"},
        str(images / "torch-debian"): {"bind": "/opt/rpibuild/torch-debian", "mode": "ro"},
    }
    with tempfile.TemporaryDirectory(prefix="rpibuild-gather-") as private:
        if profile.network.apt_mirror:
            # As a build's stages do: apt reaches Debian through the mirror. It may carry
            # credentials: a file mounted for this container only, never its command or env.
            mirror = Path(private, "apt-mirror")
            mirror.write_text(profile.network.apt_mirror + "\n", encoding="utf-8")
            mirror.chmod(0o600)
            volumes[str(mirror)] = {"bind": "/etc/rpibuild/apt-mirror", "mode": "ro"}
            volumes[str(images / "gather")] = {"bind": "/opt/rpibuild/gather", "mode": "ro"}
            script = f"bash /opt/rpibuild/gather/apt-mirror.sh /etc/rpibuild/apt-mirror && {script}"
        command = ["sh", "-c", script, "gather", package, version, bootstrap.suite, "/out/debian"]
        code = engine.run_streaming(
            helper.image,
            command,
            on_line=lines.append,
            volumes=volumes,
            environment={"OWNER": owner, **proxy_buildargs(profile)},  # apt's proxies, as a build's
        )
    if code != 0:
        raise DownloadError(
            f"Debian's {package} {version} source could not be gathered (exit {code})",
            stage="sources",
            log_tail=[mask_urls(line) for line in lines[-20:]],
            hint="check torch.version against the suite's archive and the apt mirror setting",
        )
    result.archives.append(f"debian/ ({package} {version} source, signed indexes of {bootstrap.suite})")


def _wheels(profile: Profile, pip_folder: Path, result: Gathered) -> None:
    """The requirements' wheels for the target's tags, then their dependencies.

    pip evaluates a requirement's markers for the interpreter running it (this x86_64 host):
    torch's CUDA dependencies (``platform_machine == "x86_64"``) would be fetched for an ARM
    target. So the requirements come without dependencies first, and their dependencies
    follow with the markers evaluated for the target, as the build's target_site.py does.
    """
    pip_folder.mkdir()
    wanted = requirements(profile)
    _pip_download(profile, pip_folder, ["--no-deps", *wanted])
    dependencies = target_dependencies(profile, sorted(pip_folder.glob("*.whl")))
    if dependencies:
        _pip_download(profile, pip_folder, dependencies)
    torch = profile.torch
    from_index = any(r.startswith("torch==") for r in route_of(torch.source).index_requirements(torch))
    if from_index and torch.sha256:
        found = [p for p in pip_folder.glob("torch-*.whl") if sources.file_sha256(p) == torch.sha256]
        if not found:
            raise DownloadError(
                f"no torch wheel in {pip_folder} has the pinned sha256 {torch.sha256}",
                stage="sources",
                hint="the index served another build of the wheel: check torch.sha256",
            )
    result.wheels = sorted(p.name for p in pip_folder.iterdir() if p.is_file())


def target_dependencies(profile: Profile, wheels: list[Path]) -> list[str]:
    """The wheels' dependencies that apply on the profile's target (no extras asked for)."""
    version, _ = target_python(profile)
    environment = {"platform_machine": profile.target.uname, "python_version": version, "extra": ""}
    found: list[str] = []
    for wheel in wheels:
        for requirement in _requires(wheel):
            if requirement.marker is None or requirement.marker.evaluate(environment):
                requirement.marker = None
                found.append(str(requirement))
    return list(dict.fromkeys(found))


def _requires(wheel: Path) -> list[Requirement]:
    """A wheel's Requires-Dist, from its METADATA."""
    with zipfile.ZipFile(wheel) as archive:
        name = next((n for n in archive.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n)), None)
        if name is None:
            raise DownloadError(
                f"{wheel.name} is not a wheel: it has no .dist-info/METADATA", stage="sources"
            )
        metadata = email.parser.BytesHeaderParser().parsebytes(archive.read(name))
    return [Requirement(line) for line in metadata.get_all("Requires-Dist") or []]


def _pip_download(profile: Profile, pip_folder: Path, arguments: list[str]) -> None:
    """``pip download`` into ``pip_folder`` for the target's tags, with the profile's index."""
    command = [sys.executable, "-m", "pip", "download", "--dest", str(pip_folder)]
    command += pip_download_options(profile)
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    with tempfile.TemporaryDirectory(prefix="rpibuild-pip-") as tmp:
        # The profile's index settings may carry credentials: a private config file, never argv.
        lines = []
        if profile.network.pip_index_url:
            lines.append(f"index-url = {profile.network.pip_index_url}")
        if profile.network.pip_extra_index_url:
            lines.append(f"extra-index-url = {profile.network.pip_extra_index_url}")
        if lines:
            config = Path(tmp, "pip.conf")
            config.touch(mode=0o600)
            config.write_text("[global]\n" + "\n".join(lines) + "\n", encoding="utf-8")
            env["PIP_CONFIG_FILE"] = str(config)
        done = subprocess.run([*command, *arguments], capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        tail = [mask_urls(line) for line in (done.stdout + done.stderr).splitlines()[-15:]]
        wanted = [a for a in arguments if not a.startswith("-")]
        raise DownloadError(
            f"pip could not download the target's packages ({', '.join(wanted)})",
            stage="sources",
            log_tail=tail,
            hint="check the package index (network.pip_index_url) and that the versions exist "
            f"for {profile.platform}",
        )
