"""Build script for torch_qpu.

Three build modes, chosen by the environment (see README.md):

* ``QPULIB_PREFIX=/usr/local``: link against a QPULib installed by
  ``images/qpulib/build.sh`` (``lib/libqpu.so``, ``include/qpulib``); the
  mode (qpu/emulation/qpusim) is read from ``share/qpulib/build-info`` unless
  ``QPULIB_MODE`` says otherwise.  The extension gets an rpath to the prefix.
* ``RPIBUILD_QPULIB_SRC=/path/to/QPULib``: build QPULib first with
  ``../qpulib/build.sh`` (mode ``QPULIB_MODE``, default ``emulation``) into
  ``build/``, and bundle ``libqpu.so.1`` inside the package (rpath
  ``$ORIGIN``), so ``import torch_qpu`` needs no ldconfig.
* ``TORCH_QPU_CROSS=DIR`` (with either of the above): cross-compile on the build
  platform against the *target's* torch, copied to ``DIR/torch`` (include/, lib/)
  with ``DIR/torch-info.json`` (version, C++ ABI) written by the target; torch is not
  imported. The compiler, extension suffix and platform tag come from the target's
  sysconfig (``_PYTHON_SYSCONFIGDATA_NAME``, ``_PYTHON_HOST_PLATFORM``), as Debian's
  own cross builds of extensions do. rpibuild's cross stage sets all of it.
* neither: the operators with their cpu backend only (still compiled: the
  schemas and the cpu backend live in csrc/module.cpp, one source of truth).

The extension compiles against the torch that is *already installed* (the
target's, e.g. a community armv7 wheel), hence ``--no-build-isolation``;
without torch in the build environment (and no QPULib asked for) the package
has no operators and ``import torch_qpu`` says how to rebuild.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent
QPULIB_BUILD_SH = HERE.parent / "qpulib" / "build.sh"
SONAME = "libqpu.so.1"
# The defines each QPULib mode's headers expect (images/qpulib/build.sh). qpusim is for the host
# only (tests, benchmarks): QPU mode's encoded kernels on VC4C's emulator, never in Pi images.
MODES = {
    "qpu": ["QPU_MODE"],
    "emulation": ["EMULATION_MODE"],
    "qpusim": ["EMULATION_MODE", "QPUSIM_MODE"],
}


def fail(message: str) -> None:
    sys.stderr.write(f"torch_qpu setup.py: error: {message}\n")
    raise SystemExit(1)


def read_build_info(prefix: Path) -> dict[str, str]:
    """Parse PREFIX/share/qpulib/build-info (key=value lines) if present."""
    info = prefix / "share" / "qpulib" / "build-info"
    if not info.is_file():
        return {}
    pairs = (line.split("=", 1) for line in info.read_text().splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def qpulib_from_source(src: Path, mode: str) -> Path:
    """Build QPULib from a source tree into build/ with ../qpulib/build.sh."""
    if not (src / "Lib").is_dir():
        fail(f"RPIBUILD_QPULIB_SRC={src} has no Lib/ folder: not a QPULib source tree")
    if not QPULIB_BUILD_SH.is_file():
        fail(f"{QPULIB_BUILD_SH} not found: build from the rpibuild checkout (images/torch-qpu)")
    prefix = HERE / "build" / f"qpulib-{mode}"
    if prefix.exists():
        shutil.rmtree(prefix)
    # qpusim mode reads VC4C_PREFIX (VC4C's library, images/vc4c/build.sh) from the environment.
    result = subprocess.run(["bash", str(QPULIB_BUILD_SH), str(src), str(prefix), mode])
    if result.returncode != 0:
        fail(f"building QPULib from {src} failed (exit {result.returncode}); see above")
    return prefix


def resolve_qpulib() -> tuple[Path, str, bool] | None:
    """Return (prefix, mode, bundle_library) or None for a pure-Python build."""
    env_mode = os.environ.get("QPULIB_MODE", "").strip() or None
    if env_mode is not None and env_mode not in MODES:
        fail(f"QPULIB_MODE must be one of {sorted(MODES)}, not {env_mode!r}")
    prefix_env = os.environ.get("QPULIB_PREFIX", "").strip()
    src_env = os.environ.get("RPIBUILD_QPULIB_SRC", "").strip()
    if prefix_env:
        prefix = Path(prefix_env).resolve()
        if not (prefix / "lib" / "libqpu.so").exists():
            fail(f"QPULIB_PREFIX={prefix}: lib/libqpu.so not found (run images/qpulib/build.sh)")
        if not (prefix / "include" / "qpulib" / "QPULib.h").is_file():
            fail(f"QPULIB_PREFIX={prefix}: include/qpulib/QPULib.h not found")
        built_mode = read_build_info(prefix).get("mode")
        if env_mode and built_mode and env_mode != built_mode:
            # QPULib's headers change shape with the mode: a mismatch between
            # library and extension would crash at run time.
            fail(
                f"QPULIB_MODE={env_mode} but {prefix} holds a {built_mode}-mode QPULib "
                "(share/qpulib/build-info); rebuild it or drop QPULIB_MODE"
            )
        mode = env_mode or built_mode
        if mode not in MODES:
            fail(
                f"QPULIB_PREFIX={prefix}: mode unknown (no share/qpulib/build-info); "
                "set QPULIB_MODE=qpu, emulation or qpusim"
            )
        return prefix, mode, False
    if src_env:
        mode = env_mode or "emulation"
        return qpulib_from_source(Path(src_env).resolve(), mode), mode, True
    return None


MIN_TORCH = (2, 4)  # torch.library.register_fake / register_autograd / opcheck
GENERATED = HERE / "build" / "generated"


def generate_qpu_code() -> Path:
    """Assemble torch_qpu's hand-written QPU kernels (torch_qpu/qpukernels.py) into
    build/generated/qpu_code.h, which module.cpp embeds. Returns the include folder.

    The two modules are pure Python; they are loaded under a stand-in package so that
    torch_qpu/__init__.py (which imports torch, absent from cross builds) is not run.
    """
    import importlib
    import types

    saved = sys.modules.get("torch_qpu")
    stand_in = types.ModuleType("torch_qpu")
    stand_in.__path__ = [str(HERE / "torch_qpu")]
    sys.modules["torch_qpu"] = stand_in
    try:
        kernels = importlib.import_module("torch_qpu.qpukernels")
        qpuasm = importlib.import_module("torch_qpu.qpuasm")
        parts = [
            "// Generated by setup.py from torch_qpu/qpukernels.py: do not edit.",
            "#pragma once",
            "#include <cstdint>",
            "namespace torch_qpu::qpu_code {",
        ]
        for name, build in kernels.KERNELS.items():
            parts.append(qpuasm.c_array(f"k_{name}", build().assemble()))
        parts.append("}  // namespace torch_qpu::qpu_code\n")
    except Exception as exc:  # an assembler error names the kernel and instruction
        fail(f"assembling the QPU kernels failed: {exc}")
    finally:
        for name in ("torch_qpu.qpukernels", "torch_qpu.qpuasm"):
            sys.modules.pop(name, None)
        if saved is None:
            sys.modules.pop("torch_qpu", None)
        else:
            sys.modules["torch_qpu"] = saved
    GENERATED.mkdir(parents=True, exist_ok=True)
    header = GENERATED / "qpu_code.h"
    text = "\n".join(parts)
    if not header.is_file() or header.read_text() != text:
        header.write_text(text)
    return GENERATED


def torch_version() -> tuple[int, int]:
    import torch

    major, minor = (int(part) for part in torch.__version__.split("+")[0].split(".")[:2])
    return major, minor


def qpulib_record(prefix: Path, mode: str, bundle: bool) -> dict[str, str | None]:
    """What build_info() says of the QPULib an extension was built with (native or cross)."""
    info = read_build_info(prefix)
    return {
        "qpulib_mode": mode,
        "qpulib_commit": info.get("commit", "unknown"),
        "qpulib_prefix": "bundled" if bundle else str(prefix),
        "qpulib_compiler": info.get("compiler", "unknown"),
    }


def write_build_info(target_dir: Path, record: dict[str, str | None]) -> None:
    """Recorded for `python -m torch_qpu doctor` and torch_qpu.build_info()."""
    target_dir.mkdir(parents=True, exist_ok=True)
    (target_dir / "_build_info.py").write_text(
        f'"""Generated by setup.py: how this torch_qpu was built."""\n\nBUILD_INFO = {record!r}\n'
    )


def cross_torch() -> tuple[Path, dict] | None:
    """The target torch of a cross build (``TORCH_QPU_CROSS``), or None for a native build."""
    root = os.environ.get("TORCH_QPU_CROSS", "").strip()
    if not root:
        return None
    torch_dir = Path(root) / "torch"
    info_path = Path(root) / "torch-info.json"
    if not (torch_dir / "include").is_dir() or not (torch_dir / "lib").is_dir():
        fail(f"TORCH_QPU_CROSS={root}: no torch/include and torch/lib (the target's torch)")
    try:
        info = json.loads(info_path.read_text())
        major, minor = (int(part) for part in str(info["version"]).split("+")[0].split(".")[:2])
        abi = int(info["cxx11_abi"])
    except (OSError, ValueError, KeyError) as exc:
        fail(f"TORCH_QPU_CROSS={root}: unreadable torch-info.json ({exc})")
    info["version_tuple"] = (major, minor)
    info["cxx11_abi"] = abi
    return torch_dir, info


def cross_extension_setup(torch_dir: Path, info: dict) -> dict:
    """setup() keywords of a cross build: plain setuptools, the flags torch's own
    ``CppExtension`` would use, without importing torch (it is the target's)."""
    from setuptools import Extension
    from setuptools.command.build_ext import build_ext

    if info["version_tuple"] < MIN_TORCH:
        fail(f"torch_qpu needs torch >= {MIN_TORCH}; the target has {info['version']}")
    requested = any(os.environ.get(n, "").strip() for n in ("QPULIB_PREFIX", "RPIBUILD_QPULIB_SRC"))
    qpulib = resolve_qpulib() if requested else None
    # torch's cpp_extension moved extensions to C++20 in 2.10; older headers expect C++17.
    std = "-std=c++20" if info["version_tuple"] >= (2, 10) else "-std=c++17"
    compile_args = [
        std, "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-unused-function",
        "-DTORCH_API_INCLUDE_EXTENSION_H", "-DTORCH_EXTENSION_NAME=_C",
        f"-D_GLIBCXX_USE_CXX11_ABI={info['cxx11_abi']}",
    ]  # fmt: skip
    include_dirs = [
        str(HERE / "csrc"),
        str(torch_dir / "include"),
        str(torch_dir / "include" / "torch" / "csrc" / "api" / "include"),
    ]
    library_dirs = [str(torch_dir / "lib")]
    libraries = ["c10", "torch", "torch_cpu", "torch_python"]
    link_args: list[str] = []
    record: dict[str, str | None] = {"qpulib_mode": None, "cross": os.environ.get("CROSS_TRIPLET")}
    if qpulib is not None:
        prefix, mode, bundle = qpulib
        print(f"torch_qpu: cross-building the operators with QPULib ({mode} mode) from {prefix}")
        compile_args += [*(f"-D{define}" for define in MODES[mode]), "-DTORCH_QPU_WITH_QPULIB"]
        include_dirs.insert(0, str(prefix / "include" / "qpulib"))
        include_dirs.append(str(generate_qpu_code()))
        library_dirs.append(str(prefix / "lib"))
        libraries.append("qpu")
        link_args.append(f"-Wl,-rpath,{'$ORIGIN' if bundle else prefix / 'lib'}")
        record.update(qpulib_record(prefix, mode, bundle))

    class CrossBuild(build_ext):
        """C++ sources through the C++ driver (sysconfig's CC is the C one), build info written."""

        def build_extensions(self) -> None:
            cxx = os.environ.get("CXX") or sysconfig.get_config_var("CXX")
            self.compiler.set_executable("compiler_so", [*shlex.split(cxx), "-fPIC"])
            self.compiler.set_executable("compiler_so_cxx", [*shlex.split(cxx), "-fPIC"])
            self.compiler.set_executable("linker_so", [*shlex.split(cxx), "-shared"])
            self.compiler.set_executable("linker_so_cxx", [*shlex.split(cxx), "-shared"])
            super().build_extensions()

        def run(self) -> None:
            self.force = True
            target_dir = (HERE if self.inplace else Path(self.build_lib)) / "torch_qpu"
            super().run()
            if qpulib is not None and qpulib[2]:
                shutil.copy2(qpulib[0] / "lib" / f"{SONAME}.0", target_dir / SONAME)
            write_build_info(target_dir, record)

    extension = Extension(
        name="torch_qpu._C",
        sources=["csrc/module.cpp"],
        include_dirs=include_dirs,
        library_dirs=library_dirs,
        libraries=libraries,
        extra_compile_args=compile_args,
        extra_link_args=link_args,
        language="c++",
    )
    return {"ext_modules": [extension], "cmdclass": {"build_ext": CrossBuild}}


def extension_setup() -> dict:
    """setup() keywords: the operators' C++ extension, with or without QPULib.

    Every build with torch compiles csrc/module.cpp (the operator schemas and
    their cpu backend); QPULib builds add the qpu or emulator backend. Only a
    build without torch in the build environment (and no QPULib request)
    makes a pure-Python package, which refuses to import with the fix.
    """
    cross = cross_torch()
    if cross is not None:
        return cross_extension_setup(*cross)
    env_names = ("QPULIB_PREFIX", "RPIBUILD_QPULIB_SRC")
    requested = any(os.environ.get(name, "").strip() for name in env_names)
    try:  # checked first: building QPULib is wasted work without torch
        from torch.utils.cpp_extension import BuildExtension, CppExtension
    except ImportError:
        if requested:
            fail(
                "torch is not importable in the build environment; build with "
                "`pip install --no-build-isolation` against the installed torch"
            )
        print(
            "torch_qpu: torch is not importable here: building a package without its "
            "operators (import torch_qpu will fail; rebuild with --no-build-isolation "
            "against the installed torch)"
        )
        return {}
    if torch_version() < MIN_TORCH:
        fail(
            f"torch_qpu needs torch >= {'.'.join(map(str, MIN_TORCH))} (torch.library "
            f"register_fake/register_autograd); the build environment has {torch_version()}"
        )
    qpulib = resolve_qpulib() if requested else None
    compile_args = ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-unused-function"]
    include_dirs = [str(HERE / "csrc")]
    ext_kwargs: dict = {}
    if qpulib is None:
        prefix, mode, bundle = None, None, False
        print("torch_qpu: no QPULIB_PREFIX / RPIBUILD_QPULIB_SRC: cpu-backend operators only")
        record: dict[str, str | None] = {"qpulib_mode": None}
    else:
        prefix, mode, bundle = qpulib
        print(f"torch_qpu: building the operators with QPULib ({mode} mode) from {prefix}")
        compile_args += [*(f"-D{define}" for define in MODES[mode]), "-DTORCH_QPU_WITH_QPULIB"]
        include_dirs.insert(0, str(prefix / "include" / "qpulib"))
        include_dirs.append(str(generate_qpu_code()))
        lib_dir = prefix / "lib"
        rpath = "$ORIGIN" if bundle else str(lib_dir)
        ext_kwargs = {
            "library_dirs": [str(lib_dir)],
            "libraries": ["qpu"],
            "extra_link_args": [f"-Wl,-rpath,{rpath}"],
        }
        record = qpulib_record(prefix, mode, bundle)

    class BuildOperators(BuildExtension):
        """Also copies libqpu.so.1 next to the extension when bundling."""

        def run(self) -> None:
            # The sources do not change between a qpu, emulation or cpu-only
            # build, so setuptools' timestamp check would keep a stale _C:
            # always rebuild, and never ship a libqpu left by an earlier build.
            self.force = True
            target_dir = (HERE if self.inplace else Path(self.build_lib)) / "torch_qpu"
            stale = target_dir / SONAME
            if stale.exists():
                stale.unlink()
            super().run()
            if bundle and prefix is not None:
                target_dir.mkdir(parents=True, exist_ok=True)
                shutil.copy2(prefix / "lib" / f"{SONAME}.0", target_dir / SONAME)
            write_build_info(target_dir, record)

    extension = CppExtension(
        name="torch_qpu._C",
        sources=["csrc/module.cpp"],
        include_dirs=include_dirs,
        extra_compile_args=compile_args,
        **ext_kwargs,
    )
    return {
        "ext_modules": [extension],
        "cmdclass": {"build_ext": BuildOperators.with_options(use_ninja=True)},
    }


setup(**extension_setup())
