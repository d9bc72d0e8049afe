#!/usr/bin/env bash
# The whole torch compile as rpibuild runs it (rpibuild/torch_routes/debian_compile.py), in a container of the
# torch-source image: build.sh's wheel, then the checks and the package list it carries.
#
# Usage: compile.sh ELF_SPEC
#   ELF_SPEC  what every ELF file in the wheel must be (elf_gate.py --elf)
# Mounted by rpibuild from host folders: /var/cache/rpibuild/torch/build (the build's key's
# folder, always at this path), /var/cache/rpibuild/ccache (CCACHE_DIR) and
# /opt/rpibuild/wheels (the output).
set -euo pipefail
[ "$#" -eq 1 ] || { echo "usage: compile.sh ELF_SPEC" >&2; exit 2; }
elf=$1
here=/opt/rpibuild/src/torch-debian
out=/opt/rpibuild/wheels

# build.sh's WORK is a folder inside the mount (it may remove and recreate WORK itself).
bash "$here/build.sh" /opt/rpibuild/src/pytorch /var/cache/rpibuild/torch/build/tree "$out"
wheel=$(find "$out" -maxdepth 1 -name 'torch-*.whl' | head -n 1)
echo "compile: checking every ELF file in $(basename "$wheel") ($elf)"
python3 /opt/rpibuild/elf_gate.py --elf "$elf" "$wheel"
# The wheel carries the list of Debian packages its libraries need (from its ELF NEEDED entries).
python3 "$here/runtime_packages.py" "$wheel" >"$out/torch-runtime-packages.txt"
python3 "$here/wheel_packages.py" embed "$wheel" "$out/torch-runtime-packages.txt"
echo "compile: runtime packages: $(tr '\n' ' ' <"$out/torch-runtime-packages.txt")"
