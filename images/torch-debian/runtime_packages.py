"""The target's Debian packages that hold the libraries a wheel links (from its ELF NEEDED).

Runs in the cross stage, where those packages are installed for the target architecture
through multiarch: each library is found in the triplet's folders and ``dpkg-query -S`` names
its package. Derived, not hand-maintained, so a patch that links one more library cannot
leave the runtime image without it. Prints one package name per line.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

sys.path.insert(0, "/opt/rpibuild")
import elf  # rpibuild's ELF reader (rpibuild/export/elf.py), copied to /opt/rpibuild
from elf_gate import elf_members

PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]+")


def main() -> int:
    triplet = os.environ["CROSS_TRIPLET"]
    # The cross compiler's own runtime (libgomp, libatomic, ...) lives in /usr/<triplet>/lib,
    # in Debian packages named <package>-<arch>-cross: the target's package is <package>.
    cross_suffix = f"-{os.environ['CROSS_DEB_ARCH']}-cross"
    own, needed = set(), set()
    for path in sys.argv[1:]:
        for name, stream in elf_members(path):
            header = elf.stream_header(stream)
            if header is not None:
                own.add(os.path.basename(name))
                needed.update(elf.needed_libraries(stream, header))
    packages, missing = set(), []
    for library in sorted(needed - own):
        found = next(
            (
                f"{d}/{library}"
                for d in (f"/usr/lib/{triplet}", f"/lib/{triplet}", f"/usr/{triplet}/lib")
                if os.path.exists(f"{d}/{library}")
            ),
            None,
        )
        if found is None:
            missing.append(library)
            continue
        owner = subprocess.run(["dpkg-query", "-S", found], capture_output=True, text=True, check=False)
        real = os.path.realpath(found)
        if owner.returncode != 0 and real != found:
            owner = subprocess.run(["dpkg-query", "-S", real], capture_output=True, text=True, check=False)
        if owner.returncode != 0:
            missing.append(library)
            continue
        # "package:arch: /path" (one line per owner)
        package = owner.stdout.split(":", 1)[0].split(",")[0].strip().removesuffix(cross_suffix)
        if PACKAGE.fullmatch(package):
            packages.add(package)
    if missing:
        print(f"runtime_packages: no {triplet} package holds {', '.join(missing)}", file=sys.stderr)
        return 1
    print("\n".join(sorted(packages)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
