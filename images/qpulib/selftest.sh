#!/usr/bin/env bash
# Compile selftest/hello.cpp as C++20 against an installed QPULib prefix and
# run it. Usage: selftest.sh PREFIX   (mode read from PREFIX/share/qpulib/build-info)
# In qpu mode the program needs a Raspberry Pi (root, /dev/vcio, /dev/mem);
# elsewhere pass --compile-only to check that the headers build.
set -euo pipefail
die() {
    echo "qpulib/selftest.sh: error: $*" >&2
    exit 1
}
[ "$#" -ge 1 ] || die "usage: selftest.sh PREFIX [--compile-only]"
prefix=$1
compile_only=${2:-}
here=$(cd "$(dirname "$0")" && pwd)
info="$prefix/share/qpulib/build-info"
[ -f "$info" ] || die "$info not found: is $prefix a prefix made by build.sh?"
define=$(sed -n 's/^define=//p' "$info")
[ -n "$define" ] || die "no define= line in $info"
# The flags QPULib's code relies on (e.g. -fwrapv), as a consumer should use them.
read -ra semantics <<<"$(sed -n 's/^semantics_flags=//p' "$info")"
work=$(mktemp -d "${TMPDIR:-/tmp}/qpulib-selftest.XXXXXX")
trap 'rm -rf "$work"' EXIT
read -ra defines <<<"$define"  # one define, or several (qpusim: EMULATION_MODE QPUSIM_MODE)
"${CXX:-g++}" -std=c++20 -O1 "${semantics[@]}" "${defines[@]/#/-D}" -I "$prefix/include/qpulib" \
    "$here/selftest/hello.cpp" -L "$prefix/lib" -lqpu -Wl,-rpath,"$prefix/lib" \
    -o "$work/hello" || die "compiling the selftest as C++20 failed"
if [ "$compile_only" = --compile-only ]; then
    echo "qpulib selftest: compiled as C++20 ($define)"
    exit 0
fi
"$work/hello"
