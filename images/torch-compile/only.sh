#!/usr/bin/env bash
# One CMake target of the torch tree (c10), compiled the way compile.sh compiles the wheel
# (same container, folders, ccache and distcc) and checked as a target ELF: the compile path
# in minutes, for tests (rpibuild/torch_routes/debian_compile.py, only=...).
#
# Usage: only.sh TARGET ELF_SPEC
set -euo pipefail
[ "$#" -eq 2 ] || { echo "usage: only.sh TARGET ELF_SPEC" >&2; exit 2; }
target=$1
elf=$2
out=/opt/rpibuild/wheels
bash /opt/rpibuild/src/torch-debian/build.sh --only "$target" /opt/rpibuild/src/pytorch \
    /var/cache/rpibuild/torch/build/tree "$out"
echo "compile: checking $(find "$out" -maxdepth 1 -type f -printf '%f ') ($elf)"
python3 /opt/rpibuild/elf_gate.py --elf "$elf" "$out"
