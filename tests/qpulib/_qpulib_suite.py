"""Helpers of the QPULib suite: build libqpu.so with images/qpulib/build.sh, compile and
run QPULib's test programs against it with the flags its build-info records."""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD_SH = REPO / "images" / "qpulib" / "build.sh"


# UndefinedBehaviorSanitizer: what test_ubsan.py and the qpusim extension build compile with, and
# what a report looks like (the first one aborts: -fno-sanitize-recover).
SANITIZE = "-fsanitize=undefined -fno-sanitize-recover=all"
UBSAN_ENV = {"UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1"}
REPORT = "runtime error:"


def read_build_info(prefix: Path) -> dict[str, str]:
    """PREFIX/share/qpulib/build-info as a dict (key=value lines)."""
    lines = (prefix / "share" / "qpulib" / "build-info").read_text(encoding="utf-8").splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def qpulib_source() -> Path:
    """The QPULib tree named by RPIBUILD_QPULIB_SRC; fails the test when there is none."""
    value = os.environ.get("RPIBUILD_QPULIB_SRC", "").strip()
    if not value:
        pytest.fail(
            "RPIBUILD_QPULIB_SRC is not set: QPULib's own test suite needs a QPULib source tree "
            "(scripts/test.sh fetches the pinned one: "
            "RPIBUILD_QPULIB_SRC=$(python3 -m rpibuild sources fetch))",
            pytrace=False,
        )
    src = Path(value)
    for needed in ("Lib/QPULib.h", "Tests/AutoTest.cpp"):
        if not (src / needed).is_file():
            pytest.fail(f"RPIBUILD_QPULIB_SRC={src} is not a QPULib tree: {needed} missing", pytrace=False)
    return src


def cxx_compiler() -> str:
    """The C++ compiler build.sh uses (CXX, default g++); fails the test when it is missing."""
    cxx = os.environ.get("CXX", "g++")
    if shutil.which(cxx) is None:
        pytest.fail(
            f"C++ compiler {cxx!r} not found: QPULib's test suite needs one (apt-get install g++)",
            pytrace=False,
        )
    return cxx


def run_build_sh(
    src: Path, prefix: Path, extra_env: dict[str, str] | None = None, mode: str = "emulation"
) -> dict[str, str]:
    """Build a libqpu.so (default: emulation mode) into ``prefix`` with build.sh; return its build-info."""
    env = {**os.environ, "CXX": cxx_compiler(), **(extra_env or {})}
    result = subprocess.run(
        ["bash", str(BUILD_SH), str(src), str(prefix), mode],
        capture_output=True,
        text=True,
        env=env,
    )
    if result.returncode != 0:
        pytest.fail(f"images/qpulib/build.sh failed (exit {result.returncode}):\n{result.stderr[-4000:]}")
    info = read_build_info(prefix)
    if "cxxflags" not in info:
        pytest.fail(f"{prefix}/share/qpulib/build-info has no cxxflags= line (build.sh too old?)")
    return info


@dataclass
class QPULibBuild:
    """An installed QPULib prefix and the flags it was built with."""

    src: Path
    prefix: Path
    info: dict[str, str]
    workdir: Path
    _programs: dict[str, Path] = field(default_factory=dict)

    def compile(self, name: str, source: Path | None = None) -> Path:
        """Compile a test program (default Tests/<name>.cpp) against the library, once."""
        if name in self._programs:
            return self._programs[name]
        source = source or self.src / "Tests" / f"{name}.cpp"
        exe = self.workdir / name
        lib = self.prefix / "lib"
        command = [
            cxx_compiler(),
            *shlex.split(self.info["cxxflags"]),
            "-I",
            str(self.prefix / "include" / "qpulib"),
            str(source),
            "-o",
            str(exe),
            f"-L{lib}",
            "-lqpu",
            f"-Wl,-rpath,{lib}",
            *shlex.split(self.info.get("ldflags", "")),
        ]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            pytest.fail(f"compiling {source.name} failed:\n{shlex.join(command)}\n{result.stderr[-4000:]}")
        self._programs[name] = exe
        return exe

    def run(
        self,
        exe: Path,
        timeout: float = 300,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
    ) -> str:
        """Run a compiled program; fail on a non-zero exit; return its stdout."""
        started = time.monotonic()
        result = subprocess.run(
            [str(exe), *(args or [])],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
        )
        seconds = time.monotonic() - started
        assert result.returncode == 0, f"{exe.name} exited {result.returncode}:\n{result.stderr[-4000:]}"
        print(f"{exe.name}: ran in {seconds:.2f} s")
        return result.stdout


# ---- VC4C (the VideoCore IV emulator behind qpusim mode) --------------------------------

VC4C_DIR = REPO / "images" / "vc4c"


def vc4c_build_key() -> str:
    """What a VC4C build depends on: the pinned archives, build.sh, the patches, LLVM."""
    from rpibuild.build.sources import VC4C_ARCHIVES

    digest = hashlib.sha256()
    for key, archive in sorted(VC4C_ARCHIVES.items()):
        digest.update(f"{key} {archive.repo} {archive.commit} {archive.tree_sha256}\n".encode())
    for path in [VC4C_DIR / "build.sh", *sorted((VC4C_DIR / "patches").glob("*.patch"))]:
        digest.update(path.name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    llvm_config = os.environ.get("LLVM_CONFIG", "llvm-config-14")
    if shutil.which(llvm_config):
        version = subprocess.run([llvm_config, "--version"], capture_output=True, text=True).stdout
        digest.update(f"llvm {version.strip()}\n".encode())
    return digest.hexdigest()


def vc4c_prefix() -> Path:
    """VC4C's library built by images/vc4c/build.sh from the pinned archives, cached.

    The cache (rpibuild's cache dir, ``vc4c/<key>``) is keyed by ``vc4c_build_key``: a second
    run, or another session, reuses it. Missing sources or tools fail the test with the reason.
    """
    from rpibuild.build.sources import MIRROR_ENV, VC4C_ARCHIVES, cache_dir
    from rpibuild.errors import BuildError

    key = vc4c_build_key()
    prefix = cache_dir() / "vc4c" / key[:24]
    if (prefix / "share" / "vc4c" / "build-info").is_file() and (prefix / "lib" / "libVC4CC.so").exists():
        print(f"vc4c: cached build {prefix}")
        return prefix
    trees: dict[str, Path] = {}
    failure = ""
    try:
        trees = {name: archive.fetch() for name, archive in VC4C_ARCHIVES.items()}
    except BuildError as err:
        failure = str(err)
    if failure:  # failed outside the except block: no chained traceback
        pytest.fail(
            f"VC4C's pinned sources cannot be fetched: {failure}; qpusim mode needs them "
            f"(set {MIRROR_ENV} to a folder holding the archives, as scripts/test.sh does)",
            pytrace=False,
        )
    prefix.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{prefix.name}.", dir=prefix.parent))
    args = [trees["vc4c"], trees["cpplog"], trees["spirv-headers"], trees["variant"], staging]
    env = {**os.environ, "VC4C_COMMIT": VC4C_ARCHIVES["vc4c"].commit, "JOBS": os.environ.get("JOBS", "2")}
    started = time.monotonic()
    result = subprocess.run(
        ["bash", str(VC4C_DIR / "build.sh"), *map(str, args)], capture_output=True, text=True, env=env
    )
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        pytest.fail(
            f"images/vc4c/build.sh failed (exit {result.returncode}); qpusim mode needs VC4C's library "
            f"(scripts/setup-host.sh installs cmake, llvm-14-dev and clang-14):\n{result.stderr[-4000:]}",
            pytrace=False,
        )
    print(f"vc4c: built in {time.monotonic() - started:.0f} s")
    if prefix.exists():  # another session finished first
        shutil.rmtree(staging, ignore_errors=True)
    else:
        staging.rename(prefix)
    return prefix
