"""Finish a foreign-architecture base on the build platform: the work its bootstrap deferred.

rpibuild runs this in a container of the build platform's base (the same Debian suite as the
target) with the target's tree at ROOT, after mmdebstrap ran with defer.sh. It byte-compiles
the Python files the target's packages own and builds the CA bundle, natively: the same files
the maintainer scripts would have written under QEMU, in seconds instead of minutes. What
cannot be done natively (a Python minor version the build platform lacks, CA hooks of the
target's own) runs in the tree under QEMU instead, so the result is the same either way.

Prints one JSON object a line per step: {"step", "where", "files", "failed", "seconds"}.
Standard library only: it runs on a bare Debian base.

Usage: python3 finish.py ROOT
"""

from __future__ import annotations

import json
import os
import py_compile
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

NATIVE = f"{sys.version_info.major}.{sys.version_info.minor}"
STDLIB = re.compile(r"^/usr/lib/python(3\.\d+)/")
# Where Debian's py3compile byte-compiles a package's public modules.
PUBLIC = ("/usr/lib/python3/dist-packages/", "/usr/share/python3/")
QEMU = "target under QEMU"
BUILD_PLATFORM = "build platform"


def report(step: str, where: str, files: int, failed: int, started: float) -> None:
    record = {"step": step, "where": where, "files": files, "failed": failed}
    print(json.dumps({**record, "seconds": round(time.monotonic() - started, 1)}), flush=True)


def packaged_sources(root: Path) -> dict[str, list[str]]:
    """Python version -> the .py files the installed packages own that Debian byte-compiles
    for it (the interpreter's own library, and the public module folders for every version)."""
    versions = sorted(
        p.name.removeprefix("python") for p in (root / "usr/lib").glob("python3.*") if (p / "os.py").is_file()
    )
    own: dict[str, set[str]] = {version: set() for version in versions}
    public: set[str] = set()
    for listing in (root / "var/lib/dpkg/info").glob("*.list"):
        for line in listing.read_text(encoding="utf-8", errors="replace").splitlines():
            if not line.endswith(".py"):
                continue
            if line.startswith(PUBLIC):
                public.add(line)
            elif (match := STDLIB.match(line)) and match.group(1) in own:
                own[match.group(1)].add(line)
    return {version: sorted(own[version] | public) for version in versions}


def _compile_one(job: tuple[str, str]) -> bool:
    root, path = job
    source = os.path.join(root, path.lstrip("/"))
    if not os.path.isfile(source):  # a file the package ships elsewhere (diverted, alternatives)
        return True
    try:
        py_compile.compile(
            source,
            dfile=path,  # tracebacks on the Pi name the Pi's path, not this container's
            doraise=True,
            invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP,  # what Debian writes
        )
    except (py_compile.PyCompileError, SyntaxError, UnicodeDecodeError):
        return False
    return True


def byte_compile(root: Path, version: str, files: list[str]) -> None:
    started = time.monotonic()
    if version == NATIVE:
        with ProcessPoolExecutor() as pool:
            results = list(pool.map(_compile_one, [(str(root), path) for path in files], chunksize=64))
        report("byte-compile", BUILD_PLATFORM, len(files), results.count(False), started)
        return
    # Another minor version writes other byte code: the target's own interpreter does it.
    done = subprocess.run(
        ["chroot", str(root), f"/usr/bin/python{version}", "-E", "-S", "-m", "py_compile", "-"],
        input="\n".join(files),
        text=True,
        check=False,
    )
    report("byte-compile", QEMU, len(files), 0 if done.returncode == 0 else 1, started)


def ca_bundle(root: Path) -> None:
    """The CA bundle and /etc/ssl/certs links, by the target's own update-ca-certificates
    (an arch-independent shell script) run with the build platform's sh, sed and openssl."""
    script = root / "usr/sbin/update-ca-certificates"
    if not script.is_file():
        return
    started = time.monotonic()
    certs = root / "etc/ssl/certs"
    hooks = root / "etc/ca-certificates/update.d"
    text = script.read_text(encoding="utf-8", errors="replace")
    native = (
        shutil.which("openssl") is not None
        and "--etccertsdir" in text
        and "--hooksdir" in text
        and not (hooks.is_dir() and any(hooks.iterdir()))  # hooks of the target's own run there
    )
    if not native:
        subprocess.run(["chroot", str(root), "/usr/sbin/update-ca-certificates"], check=True)
        report("ca-certificates", QEMU, len(list(certs.glob("*.pem"))), 0, started)
        return
    with tempfile.TemporaryDirectory() as no_hooks:
        subprocess.run(
            [
                "sh",
                str(script),
                "--certsconf",
                str(root / "etc/ca-certificates.conf"),
                "--certsdir",
                str(root / "usr/share/ca-certificates"),
                "--localcertsdir",
                str(root / "usr/local/share/ca-certificates"),
                "--etccertsdir",
                str(certs),
                "--hooksdir",
                no_hooks,
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    # Its links name the certificates by this container's path to the tree: make them the
    # paths the target sees.
    prefix = str(root) + "/"
    for link in certs.iterdir():
        if link.is_symlink() and (target := os.readlink(link)).startswith(prefix):
            link.unlink()
            link.symlink_to("/" + target.removeprefix(prefix))
    report("ca-certificates", BUILD_PLATFORM, len(list(certs.glob("*.pem"))), 0, started)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not Path(argv[1]).is_dir():
        print("usage: finish.py ROOT", file=sys.stderr)
        return 2
    root = Path(argv[1]).resolve()
    for version, files in packaged_sources(root).items():
        byte_compile(root, version, files)
    ca_bundle(root)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
