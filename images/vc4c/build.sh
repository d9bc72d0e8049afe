#!/usr/bin/env bash
# Build VC4C's compiler library (github.com/doe300/VC4C: libVC4CC.so, which holds its cycle-stepped
# VideoCore IV emulator) with rpibuild's patches, for QPULib's qpusim mode (images/qpulib/build.sh).
#
# Usage: build.sh VC4C_SRC CPPLOG_SRC SPIRV_HEADERS_SRC VARIANT_SRC PREFIX
#   *_SRC   unpacked source trees of VC4C and its three dependencies at their pinned commits
#           (rpibuild.build.sources.fetch_vc4c_sources() fetches and checks them); never modified:
#           the build works on a copy of VC4C with patches/*.patch applied.
#   PREFIX  install prefix: PREFIX/lib/libVC4CC.so(.0.4), PREFIX/include/vc4c/*.h (VC4C's public
#           headers: tools.h has vc4c::tools::emulate) and PREFIX/share/vc4c/build-info.
#
# Environment:
#   LLVM_CONFIG  llvm-config of the LLVM to build against (default: llvm-config-14)
#   JOBS         parallel compiles (default: 2)
#   VC4C_COMMIT  upstream commit recorded in build-info (optional)
#
# Configuration: LLVM-library front-end on (VC4C's CMake insists on a front-end and on finding
# clang, whose version it only reads), SPIR-V front-end, tests and standard-library
# precompilation off; the dependencies are given as local folders, so nothing is cloned.
set -euo pipefail

die() {
    echo "vc4c/build.sh: error: $*" >&2
    exit 1
}

[ "$#" -eq 5 ] || die "usage: build.sh VC4C_SRC CPPLOG_SRC SPIRV_HEADERS_SRC VARIANT_SRC PREFIX"
here=$(cd "$(dirname "$0")" && pwd)
abs() { (cd "$1" && pwd) || die "$1 is not a folder"; }
vc4c_src=$(abs "$1")
cpplog_src=$(abs "$2")
spirv_src=$(abs "$3")
variant_src=$(abs "$4")
prefix=$5
[ -f "$vc4c_src/src/tools/Emulator.cpp" ] || die "$vc4c_src is not a VC4C source tree (no src/tools/Emulator.cpp)"
[ -f "$cpplog_src/CMakeLists.txt" ] || die "$cpplog_src is not a cpplog source tree"
[ -d "$spirv_src/include/spirv" ] || die "$spirv_src is not a SPIRV-Headers source tree"
[ -f "$variant_src/include/mpark/variant.hpp" ] || die "$variant_src is not an mpark/variant source tree"

llvm_config=${LLVM_CONFIG:-llvm-config-14}
command -v cmake >/dev/null || die "cmake not found (apt-get install cmake)"
command -v make >/dev/null || die "make not found (apt-get install make)"
command -v patch >/dev/null || die "patch not found (apt-get install patch)"
command -v "${CXX:-c++}" >/dev/null || die "C++ compiler ${CXX:-c++} not found (apt-get install g++)"
command -v "$llvm_config" >/dev/null || die "$llvm_config not found (apt-get install llvm-14-dev)"
[ -f "$("$llvm_config" --includedir)/llvm/IR/Module.h" ] || die "LLVM headers missing (apt-get install llvm-14-dev)"
clang=$(command -v "clang-$("$llvm_config" --version | cut -d. -f1)" || command -v clang || true)
[ -n "$clang" ] || die "clang not found: VC4C's CMake requires it (apt-get install clang-14)"
jobs=${JOBS:-2}

mkdir -p "$prefix" || die "cannot create PREFIX $prefix"
prefix=$(abs "$prefix")
work=$(mktemp -d "${TMPDIR:-/tmp}/vc4c-build.XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "vc4c: copying $vc4c_src to $work/src"
cp -R "$vc4c_src" "$work/src"
for p in "$here"/patches/*.patch; do
    echo "vc4c: applying $(basename "$p")"
    patch -d "$work/src" -p1 --forward --batch --silent <"$p" || die "patch $(basename "$p") does not apply"
done

mkdir -p "$work/build"
cd "$work/build"
echo "vc4c: configuring (LLVM $("$llvm_config" --version), clang $clang)"
cmake "$work/src" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF -DSPIRV_FRONTEND=OFF \
    -DLLVMLIB_FRONTEND=ON -DVC4CL_STDLIB_PRECOMPILE=OFF -DLLVM_CONFIG_PATH="$(command -v "$llvm_config")" \
    -DCLANG_FOUND="$clang" -DFETCHCONTENT_FULLY_DISCONNECTED=ON -DCPPLOG_SOURCE_DIR="$cpplog_src" \
    -DFETCHCONTENT_SOURCE_DIR_SPIRV-HEADERS="$spirv_src" -DFETCHCONTENT_SOURCE_DIR_VARIANT="$variant_src" \
    >"$work/cmake.log" 2>&1 || {
    tail -n 40 "$work/cmake.log" >&2
    die "cmake configuration failed (log above)"
}
echo "vc4c: compiling libVC4CC ($jobs jobs; about 3 minutes on 2 idle cores)"
make -j "$jobs" VC4CC >"$work/make.log" 2>&1 || {
    grep -B2 -A8 -m5 'error' "$work/make.log" >&2 || tail -n 40 "$work/make.log" >&2
    die "compilation failed (messages above)"
}

mkdir -p "$prefix/lib" "$prefix/include/vc4c" "$prefix/share/vc4c"
cp -P "$work"/build/src/libVC4CC.so* "$prefix/lib/"
cp "$work"/src/include/*.h "$prefix/include/vc4c/"
cat >"$prefix/share/vc4c/build-info" <<EOF
commit=${VC4C_COMMIT:-unknown}
patches=$(cd "$here/patches" && echo *.patch)
llvm=$("$llvm_config" --version)
compiler=$("${CXX:-c++}" --version | head -n 1)
EOF
echo "vc4c: installed $prefix/lib/libVC4CC.so and $prefix/include/vc4c"
