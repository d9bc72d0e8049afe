#!/usr/bin/env bash
# Build QPULib (github.com/mn416/QPULib) as a shared library, libqpu.so.
#
# Usage: build.sh SRC_DIR PREFIX MODE
#   SRC_DIR  a QPULib source tree (holding Lib/); it is never modified:
#            the build works on a copy, fixed up by fixup.py next to this file.
#   PREFIX   install prefix: PREFIX/lib/libqpu.so.1 (+ libqpu.so link),
#            PREFIX/include/qpulib/ (Lib's layout: -I PREFIX/include/qpulib
#            works like -I Lib), PREFIX/lib/pkgconfig/qpulib.pc and
#            PREFIX/share/qpulib/build-info (mode, commit, flags).
#   MODE     qpu (real VideoCore IV QPUs: Raspberry Pi, root, /dev/vcio),
#            emulation (QPULib's software emulator, any CPU) or
#            qpusim (QPU mode's encoded code run on VC4C's cycle-stepped VideoCore IV
#            emulator, any CPU; needs VC4C_PREFIX, see qpusim/QPUSim.h and ../vc4c/).
#
# Environment:
#   QPULIB_COMMIT  upstream commit recorded in build-info (optional)
#   CXX            compiler (default g++)
#   CXXFLAGS       extra compiler flags (appended; also used to link, so
#                  e.g. -fsanitize=undefined needs nothing more)
#   LDFLAGS        extra link flags (appended)
#   JOBS           parallel compiles (default: number of CPUs)
#   VC4C_PREFIX    qpusim mode: the prefix images/vc4c/build.sh installed VC4C's library
#                  into (lib/libVC4CC.so, include/vc4c/tools.h); libqpu.so links it with an rpath
#
# Why our own build: upstream's Makefile only builds test programs, and the
# upstream sources need small fix-ups for C++20, g++ 12 and arm64 (see
# fixup.py and README.md in this folder).
set -euo pipefail

die() {
    echo "qpulib/build.sh: error: $*" >&2
    exit 1
}

[ "$#" -eq 3 ] || die "usage: build.sh SRC_DIR PREFIX MODE (MODE = qpu|emulation|qpusim)"
src_dir=$1
prefix=$2
mode=$3
here=$(cd "$(dirname "$0")" && pwd)

# qpusim is emulation mode (the SharedArray heap, emu() and interpret() stay available) plus
# QPUSIM_MODE, under which a kernel call runs its encoded code on VC4C's emulator.
case "$mode" in
    qpu) mode_defines=(-DQPU_MODE) ;;
    emulation) mode_defines=(-DEMULATION_MODE) ;;
    qpusim) mode_defines=(-DEMULATION_MODE -DQPUSIM_MODE) ;;
    *) die "MODE must be 'qpu', 'emulation' or 'qpusim', not '$mode'" ;;
esac
vc4c_flags=()
vc4c_ldflags=()
vc4c_libs=()
if [ "$mode" = qpusim ]; then
    vc4c_prefix=${VC4C_PREFIX:-}
    [ -n "$vc4c_prefix" ] || die "qpusim mode needs VC4C_PREFIX: the prefix of VC4C's library (images/vc4c/build.sh)"
    if [ ! -f "$vc4c_prefix/include/vc4c/tools.h" ] || [ ! -e "$vc4c_prefix/lib/libVC4CC.so" ]; then
        die "VC4C_PREFIX=$vc4c_prefix has no include/vc4c/tools.h and lib/libVC4CC.so (build it with images/vc4c/build.sh)"
    fi
    vc4c_prefix=$(cd "$vc4c_prefix" && pwd)
    vc4c_flags=(-I "$vc4c_prefix/include")
    vc4c_ldflags=(-L "$vc4c_prefix/lib" "-Wl,-rpath,$vc4c_prefix/lib")
    vc4c_libs=(-lVC4CC)
fi
[ -d "$src_dir/Lib" ] || die "$src_dir has no Lib/ folder: not a QPULib source tree"
command -v python3 >/dev/null || die "python3 is needed to run fixup.py (apt-get install python3)"
cxx=${CXX:-g++}
command -v "$cxx" >/dev/null || die "C++ compiler '$cxx' not found (apt-get install g++)"
mkdir -p "$prefix" || die "cannot create PREFIX $prefix"
prefix=$(cd "$prefix" && pwd)  # absolute: the build below runs elsewhere
jobs=${JOBS:-$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)}

# The library speaks C++ through its headers (templates), so its ABI must
# match the consumers': build as C++17, which is also what C++20 consumers
# link against without trouble (no std:: types cross the boundary).
std_flag=-std=c++17
# Flags that define behaviour QPULib's host code relies on; every build (each mode,
# native or cross, the images and the tests) gets them from here. -fwrapv: the
# source interpreter and the target emulator compute the QPU's 32-bit
# wrapping arithmetic with signed int (e.g. `x < y` as the sign bit of x-y); that
# overflow is UB in C++ and -O2 turns it into wrong answers (QPULib's AutoTest
# fails at program 429 without it).
semantics_flags=(-fwrapv)
# shellcheck disable=SC2206  # CXXFLAGS is a flag list: word splitting wanted
cxxflags=("$std_flag" -O2 "${semantics_flags[@]}" -fPIC -fvisibility=default "${mode_defines[@]}" -w ${CXXFLAGS:-})
# shellcheck disable=SC2206  # LDFLAGS is a flag list: word splitting wanted
ldflags=(${LDFLAGS:-})

work=$(mktemp -d "${TMPDIR:-/tmp}/qpulib-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "qpulib: copying $src_dir to $work/src"
mkdir -p "$work/src"
cp -R "$src_dir/Lib" "$work/src/Lib"
python3 "$here/fixup.py" "$work/src"
if [ "$mode" = qpusim ]; then
    # rpibuild's own source (not upstream's): the launch on VC4C's emulator.
    cp "$here/qpusim/QPUSim.h" "$here/qpusim/QPUSim.cpp" "$work/src/Lib/VideoCore/"
fi

cd "$work/src/Lib"
mapfile -t sources < <(find . -name '*.cpp' | sort)
[ "${#sources[@]}" -gt 0 ] || die "no .cpp files under $src_dir/Lib"
echo "qpulib: compiling ${#sources[@]} files ($mode mode, $jobs jobs)"

soname=libqpu.so.1
command -v make >/dev/null || die "make not found (apt-get install make)"
make -f "$here/lib.mk" -j "$jobs" CXX="$cxx" SONAME="$soname" \
    QPULIB_CXXFLAGS="${cxxflags[*]} ${vc4c_flags[*]}" QPULIB_LDFLAGS="${ldflags[*]} ${vc4c_ldflags[*]}" \
    QPULIB_LIBS="${vc4c_libs[*]}" ||
    die "compilation failed (see the compiler messages above)"

mkdir -p "$prefix/lib/pkgconfig" "$prefix/include/qpulib" "$prefix/share/qpulib"
echo "qpulib: installing $prefix/lib/$soname"
cp "$soname.0" "$prefix/lib/$soname.0"
ln -sf "$soname.0" "$prefix/lib/$soname"
ln -sf "$soname" "$prefix/lib/libqpu.so"

# Headers keep Lib's layout; the .cpp files are not installed.
find . -name '*.h' | while read -r header; do
    mkdir -p "$prefix/include/qpulib/$(dirname "$header")"
    cp "$header" "$prefix/include/qpulib/$header"
done

# System prefixes: refresh the loader cache so plain `-lqpu` users run
# without an rpath (torch_qpu sets one anyway).
case "$prefix" in
    /usr | /usr/local)
        if [ "$(id -u)" = 0 ] && command -v ldconfig >/dev/null; then ldconfig; fi
        ;;
esac

commit=${QPULIB_COMMIT:-unknown}
cat >"$prefix/share/qpulib/build-info" <<EOF
mode=$mode
define=${mode_defines[*]//-D/}
commit=$commit
std=${std_flag#-std=}
semantics_flags=${semantics_flags[*]}
cxxflags=${cxxflags[*]}
ldflags=${ldflags[*]}
compiler=$("$cxx" --version | head -n 1)
EOF
cat >"$prefix/lib/pkgconfig/qpulib.pc" <<EOF
prefix=$prefix
libdir=\${prefix}/lib
includedir=\${prefix}/include/qpulib
mode=$mode

Name: qpulib
Description: QPULib for the VideoCore IV QPUs ($mode mode, upstream $commit)
Version: 0.0.0+${commit:0:12}
Libs: -L\${libdir} -lqpu
Cflags: -I\${includedir} ${mode_defines[*]} ${semantics_flags[*]}
EOF
echo "qpulib: installed $mode build in $prefix (lib/libqpu.so, include/qpulib, share/qpulib/build-info)"
