#!/usr/bin/env bash
# The whole torch compile as rpibuild runs it (rpibuild/torch_compile.py), in a container of the
# torch-source image: build.sh's wheel, then the checks and the package list it carries.
#
# Usage: compile.sh KEY ELF_SPEC
#   KEY       the build's key (rpibuild/torch_debian.py): names the build folder
#   ELF_SPEC  what every ELF file in the wheel must be (elf_gate.py --elf)
# Mounted by rpibuild from host folders: /var/cache/rpibuild/torch (build folders),
# /var/cache/rpibuild/ccache (CCACHE_DIR) and /opt/rpibuild/wheels (the output).
set -euo pipefail
[ "$#" -eq 2 ] || { echo "usage: compile.sh KEY ELF_SPEC" >&2; exit 2; }
key=$1
elf=$2
case "$key" in *[!0-9a-f]* | '') echo "compile.sh: not a build key: $key" >&2; exit 2 ;; esac
here=/opt/rpibuild/src/torch-debian
out=/opt/rpibuild/wheels

bash "$here/build.sh" /opt/rpibuild/src/pytorch "/var/cache/rpibuild/torch/$key" "$out"
wheel=$(find "$out" -maxdepth 1 -name 'torch-*.whl' | head -n 1)
echo "compile: checking every ELF file in $(basename "$wheel") ($elf)"
python3 /opt/rpibuild/elf_gate.py --elf "$elf" "$wheel"
# The wheel carries the list of Debian packages its libraries need (from its ELF NEEDED entries).
python3 "$here/runtime_packages.py" "$wheel" >"$out/torch-runtime-packages.txt"
python3 "$here/wheel_packages.py" embed "$wheel" "$out/torch-runtime-packages.txt"
echo "compile: runtime packages: $(tr '\n' ' ' <"$out/torch-runtime-packages.txt")"
