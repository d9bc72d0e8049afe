#!/usr/bin/env python3
"""Download and install wheels for the target's venv with the build platform's pip and CPython.

Why: under QEMU, pip unzipping torch (hundreds of MB) and byte-compiling its thousands of modules
takes many minutes of emulated Python; nothing in it needs the target's CPU. The build platform's
pip picks the target's wheels by tag, and its CPython, of the same version (same Debian suite),
writes the same .pyc files natively. The result is an overlay of the target venv
(bin/ and lib/pythonX.Y/site-packages/) that a target stage COPYs in place.

  target_site.py download --machine aarch64 --dest DIR REQUIREMENT...
  target_site.py install --machine aarch64 --venv /opt/rpibuild/venv --overlay DIR \\
      [--skip NAME]... [--no-deps] WHEEL...
  target_site.py install --machine aarch64 --venv /opt/rpibuild/venv --overlay DIR REQUIREMENT...
"""

from __future__ import annotations

import argparse
import compileall
import csv
import email.parser
import os
import py_compile
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from packaging.requirements import Requirement

# Machines manylinux2014 (PEP 599) names; others only have the PEP 600 tags.
MANYLINUX2014 = {"x86_64", "i686", "aarch64", "armv7l", "ppc64le", "s390x"}
FIRST_MANYLINUX_GLIBC = 17


class Failure(Exception):
    """A message for the build log, without a traceback."""


def glibc_minor() -> int:
    """The glibc minor version of the build platform, the target's too (one Debian suite)."""
    name, _, version = (os.confstr("CS_GNU_LIBC_VERSION") or "").partition(" ")
    match = re.fullmatch(r"2\.(\d+)", version)
    if name != "glibc" or not match:
        raise Failure(f"cannot tell the C library version (CS_GNU_LIBC_VERSION={name} {version})")
    return int(match.group(1))


def platform_tags(machine: str, glibc: int) -> list[str]:
    """Every platform tag a wheel for ``machine`` may carry on this glibc, newest first."""
    tags = [f"manylinux_2_{minor}_{machine}" for minor in range(glibc, FIRST_MANYLINUX_GLIBC - 1, -1)]
    if machine in MANYLINUX2014:
        tags.append(f"manylinux2014_{machine}")
    tags.append(f"linux_{machine}")
    return tags


def target_options(machine: str) -> list[str]:
    """pip's options that make it choose wheels for the target instead of this interpreter."""
    version = python_version("")
    options = ["--only-binary=:all:", "--implementation", "cp", "--python-version", version]
    options += ["--abi", f"cp{version}", "--abi", "abi3", "--abi", "none"]
    for tag in platform_tags(machine, glibc_minor()):
        options += ["--platform", tag]
    return options


def pip(*args: str) -> None:
    command = [sys.executable, "-m", "pip", *args]
    quiet = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_ROOT_USER_ACTION": "ignore"}
    if subprocess.run(command, check=False, env=quiet).returncode != 0:
        raise Failure(f"pip {args[0]} failed (see above)")


def check_target_python(triplet: str | None) -> None:
    """The target's Python (multiarch headers and sysconfig) must be this interpreter's version."""
    if triplet is None:
        return
    version = python_version()
    sysconfig_data = Path(f"/usr/lib/python{version}/_sysconfigdata__linux_{triplet}.py")
    if not sysconfig_data.is_file():
        raise Failure(
            f"the target's Python is not {version} ({sysconfig_data} is missing): the build "
            "platform's base must be of the same Debian suite as the target's"
        )


def normalized(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def python_version(separator: str = ".") -> str:
    return f"{sys.version_info.major}{separator}{sys.version_info.minor}"


def distribution_files(site: Path, dist_info: Path) -> list[Path]:
    """The files a distribution installed under ``site``, from its RECORD (scripts land in bin/)."""
    files = []
    with (dist_info / "RECORD").open(encoding="utf-8", newline="") as record:
        names = [row[0] for row in csv.reader(record) if row and row[0]]
    for name in names:
        path = Path(os.path.normpath(site / name))
        if not path.is_relative_to(site):  # a script: pip --target puts it in <target>/bin
            path = site / "bin" / path.name
        files.append(path)
    return files


def prune(site: Path, skip: set[str]) -> list[str]:
    """Remove the distributions the venv already has (pip, setuptools...): the overlay would
    otherwise put a second copy of them over the venv's own."""
    removed = []
    for dist_info in sorted(site.glob("*.dist-info")):
        name = normalized(dist_info.name.removesuffix(".dist-info").rsplit("-", 1)[0])
        if name not in skip:
            continue
        for path in distribution_files(site, dist_info):
            path.unlink(missing_ok=True)
        shutil.rmtree(dist_info, ignore_errors=True)
        removed.append(dist_info.name)
    for directory in sorted((p for p in site.rglob("*") if p.is_dir()), reverse=True):
        if not any(directory.iterdir()):
            directory.rmdir()
    return removed


def fix_scripts(bin_dir: Path, venv: str) -> None:
    """Console scripts name the interpreter that installed them; point them at the venv's."""
    for script in bin_dir.iterdir():
        lines = script.read_bytes().split(b"\n", 1)
        if lines[0].startswith(b"#!") and b"python" in lines[0]:
            script.write_bytes(
                f"#!{venv}/bin/python".encode() + b"\n" + (lines[1] if len(lines) > 1 else b"")
            )


def target_requirements(wheel: Path, machine: str) -> list[str]:
    """The wheel's dependencies that apply on the target (no extras asked for).

    pip evaluates markers for the interpreter running it: torch's ``platform_machine ==
    "x86_64"`` CUDA dependencies would be installed for an aarch64 target. Here the markers
    are evaluated for the target's machine instead."""
    with zipfile.ZipFile(wheel) as archive:
        name = next((n for n in archive.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n)), None)
        if name is None:
            raise Failure(f"{wheel.name} is not a wheel: it has no .dist-info/METADATA")
        metadata = email.parser.BytesHeaderParser().parsebytes(archive.read(name))
    wanted = []
    for line in metadata.get_all("Requires-Dist") or []:
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate(
            {"platform_machine": machine, "extra": ""}
        ):
            requirement.marker = None
            wanted.append(str(requirement))
    return wanted


def install(args: argparse.Namespace) -> None:
    check_target_python(args.triplet)
    overlay = Path(args.overlay)
    site_dest = overlay / "lib" / f"python{python_version()}" / "site-packages"
    options = ["--no-compile", "--no-warn-script-location", *target_options(args.machine)]
    with tempfile.TemporaryDirectory(prefix="target-site-") as temp:
        site, dependencies = Path(temp) / "site", Path(temp) / "dependencies"
        wheels = [Path(wheel) for wheel in args.wheels if wheel.endswith(".whl")]
        # Requirements (not wheel files) are resolved by pip from the index, for the target.
        named = [r for r in args.wheels if not r.endswith(".whl")]
        if wheels:
            pip("install", "--no-deps", "--target", str(site), *options, *map(str, wheels))
        wanted = [] if args.no_deps else [r for w in wheels for r in target_requirements(w, args.machine)]
        wanted = list(dict.fromkeys([*wanted, *named]))
        site.mkdir(exist_ok=True)
        if wanted:
            # Their own dependencies' markers are pip's to evaluate (pure Python ones here).
            pip("install", "--target", str(dependencies), *options, *wanted)
            shutil.copytree(dependencies, site, symlinks=True, dirs_exist_ok=True)
        removed = prune(site, {normalized(name) for name in args.skip})
        if removed:
            print("target_site: left to the venv:", " ".join(removed))
        scripts = site / "bin"
        if scripts.is_dir():
            fix_scripts(scripts, args.venv)
            (overlay / "bin").mkdir(parents=True, exist_ok=True)
            for script in scripts.iterdir():
                shutil.move(script, overlay / "bin" / script.name)
            scripts.rmdir()
        # Hash-checked .pyc files: valid whatever mtimes the COPY into the target leaves.
        compiled = compileall.compile_dir(
            site, quiet=2, workers=0, invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH
        )
        if not compiled:
            raise Failure("byte-compiling the installed modules failed")
        site_dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(site, site_dest, symlinks=True, dirs_exist_ok=True)
    names = sorted(p.name.removesuffix(".dist-info") for p in site_dest.glob("*.dist-info"))
    print(f"target_site: {len(names)} distributions for {args.machine}: {' '.join(names)}")


def download(args: argparse.Namespace) -> None:
    pip("download", "--no-deps", "--dest", args.dest, *target_options(args.machine), *args.requirements)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    fetch = commands.add_parser("download", help="download the target's wheels (no dependencies)")
    fetch.add_argument("--machine", required=True, help="the target's uname -m, e.g. aarch64, armv7l")
    fetch.add_argument("--dest", required=True)
    fetch.add_argument("requirements", nargs="+")
    fetch.set_defaults(run=download)
    put = commands.add_parser("install", help="install wheels and their dependencies into an overlay")
    put.add_argument("--machine", required=True, help="the target's uname -m, e.g. aarch64, armv7l")
    put.add_argument("--triplet", help="the target's GNU triplet: check its Python is this version")
    put.add_argument("--venv", required=True, help="the venv's path in the target image")
    put.add_argument("--overlay", required=True, help="where bin/ and lib/pythonX.Y/ go")
    put.add_argument("--skip", action="append", default=[], help="a distribution the venv already has")
    put.add_argument("--no-deps", action="store_true", help="the venv has the dependencies already")
    put.add_argument(
        "wheels", nargs="+", help="wheel files or requirements; dependencies come from the index"
    )
    put.set_defaults(run=install)
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except Failure as failure:
        print(f"target_site: error: {failure}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
