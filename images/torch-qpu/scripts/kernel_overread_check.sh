#!/usr/bin/env bash
# Prove the kernels never read past the end of a buffer (the seed's prefetch
# defect) and match a plain loop, without torch: builds QPULib in emulation
# mode with AddressSanitizer, builds csrc/kernel_selftest.cpp the same way,
# runs it, then runs each `--edge` case, which puts one input buffer flush
# against the end of the emulator heap so an over-read is a reported
# heap-buffer-overflow.
#
# Usage: kernel_overread_check.sh [QPULIB_SRC]   (default: $RPIBUILD_QPULIB_SRC)
set -euo pipefail
die() {
    echo "kernel_overread_check.sh: error: $*" >&2
    exit 1
}
src=${1:-${RPIBUILD_QPULIB_SRC:-}}
[ -n "$src" ] || die "give a QPULib source tree as argument or in RPIBUILD_QPULIB_SRC"
here=$(cd "$(dirname "$0")/.." && pwd)
cxx=${CXX:-g++}
work=$(mktemp -d "${TMPDIR:-/tmp}/kernel-overread.XXXXXX")
trap 'rm -rf "$work"' EXIT

CXXFLAGS="-fsanitize=address -g" bash "$here/../qpulib/build.sh" "$src" "$work/prefix" emulation \
    >"$work/build.log" 2>&1 || {
    cat "$work/build.log" >&2
    die "building QPULib with AddressSanitizer failed"
}
"$cxx" -std=c++17 -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=undefined \
    -DEMULATION_MODE -I "$work/prefix/include/qpulib" -I "$here/csrc" \
    "$here/csrc/kernel_selftest.cpp" -L "$work/prefix/lib" -lqpu \
    -Wl,-rpath,"$work/prefix/lib" -o "$work/kernel_selftest" ||
    die "compiling csrc/kernel_selftest.cpp failed"

export ASAN_OPTIONS=detect_leaks=0:abort_on_error=0
status=0
"$work/kernel_selftest" || status=1
for edge in ew rows-mat rows-vec cols-mat cols-vec; do
    if "$work/kernel_selftest" --edge "$edge" >"$work/edge.log" 2>&1; then
        echo "edge $edge: no read past the buffer end"
    else
        cat "$work/edge.log" >&2
        echo "edge $edge: FAILED" >&2
        status=1
    fi
done
exit "$status"
