"""The target platforms rpibuild knows, and every per-platform fact in one table.

armv6 (Raspbian armhf), armv7 (Debian armhf) and arm64 are different ABIs even where the
Debian architecture name is shared, so a profile names the OCI platform and everything else
(debootstrap arch, binfmt handler, the Pi core QEMU should emulate, ELF machine) follows here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Platform:
    """One OCI platform and what building for it needs."""

    name: str  # OCI form, e.g. "linux/arm/v7"
    architecture: str  # OCI/docker "architecture"
    variant: str | None  # OCI/docker "variant"
    debian_arch: str  # debootstrap --arch / dpkg --print-architecture
    binfmt: str | None  # qemu binfmt handler name (None: runs natively on x86_64)
    qemu_cpu: str | None  # QEMU_CPU matching the Pi's real core
    uname: str  # `uname -m` inside a container of this platform
    elf_machine: int  # e_machine of its binaries
    elf_class: int  # 1 = 32-bit, 2 = 64-bit
    gnu_triplet: str  # Debian's multiarch triplet: cross compiler prefix and library folder
    cross: bool  # Debian's cross toolchain for debian_arch generates code this core runs

    @property
    def os(self) -> str:
        return "linux"

    @property
    def elf_spec(self) -> str:
        """What its ELF files must be, as ``elf_gate.py --elf`` takes it (hard-float on 32-bit ARM)."""
        return f"{self.elf_machine}:{self.elf_class}" + (":hf" if self.architecture == "arm" else "")

    @property
    def slug(self) -> str:
        """A tag-safe short name: ``armv7``, ``arm64``."""
        return {"arm": f"arm{self.variant}"}.get(self.architecture, self.architecture)


EM_ARM, EM_AARCH64, EM_X86_64 = 40, 183, 62

PLATFORMS: dict[str, Platform] = {
    p.name: p
    for p in (
        # Raspbian's armhf is ARMv6; Debian's armhf cross compiler emits ARMv7: no cross build.
        Platform(
            "linux/arm/v6",
            "arm",
            "v6",
            "armhf",
            "arm",
            "arm1176",
            "armv6l",
            EM_ARM,
            1,
            "arm-linux-gnueabihf",
            False,
        ),
        Platform(
            "linux/arm/v7",
            "arm",
            "v7",
            "armhf",
            "arm",
            "cortex-a7",
            "armv7l",
            EM_ARM,
            1,
            "arm-linux-gnueabihf",
            True,
        ),
        Platform(
            "linux/arm64",
            "arm64",
            None,
            "arm64",
            "aarch64",
            "cortex-a53",
            "aarch64",
            EM_AARCH64,
            2,
            "aarch64-linux-gnu",
            True,
        ),
        Platform(
            "linux/amd64",
            "amd64",
            None,
            "amd64",
            None,
            None,
            "x86_64",
            EM_X86_64,
            2,
            "x86_64-linux-gnu",
            False,
        ),
    )
}


def get_platform(name: str) -> Platform:
    """Look a platform up by its OCI name (``linux/arm64/v8`` is accepted as ``linux/arm64``)."""
    key = "linux/arm64" if name == "linux/arm64/v8" else name
    try:
        return PLATFORMS[key]
    except KeyError:
        known = ", ".join(PLATFORMS)
        raise ValueError(f"unknown platform {name!r} (known: {known})") from None


# QEMU CPU models (user mode) that can run each platform's code: verify.qemu_cpu must be
# one of them, so a 32-bit core is never asked to run 64-bit code (or an ARMv6 core ARMv7).
_ARMV7_CPUS = ("cortex-a7", "cortex-a8", "cortex-a9", "cortex-a15", "max", "any")
QEMU_CPUS: dict[str, tuple[str, ...]] = {
    "linux/arm/v6": ("arm1176", "arm1136", "arm1136-r2", "arm11mpcore", *_ARMV7_CPUS),
    "linux/arm/v7": _ARMV7_CPUS,
    "linux/arm64": (
        "cortex-a35",
        "cortex-a53",
        "cortex-a55",
        "cortex-a57",
        "cortex-a72",
        "cortex-a76",
        "cortex-a710",
        "neoverse-n1",
        "neoverse-n2",
        "neoverse-v1",
        "a64fx",
        "max",
    ),
    "linux/amd64": (),
}
