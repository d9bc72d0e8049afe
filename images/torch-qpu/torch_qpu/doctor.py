"""``python -m torch_qpu doctor``: can the qpu backend run here, and if not, why.

QPULib drives the VideoCore IV directly: it needs root, the firmware mailbox
(/dev/vcio), /dev/mem to map GPU memory, enough GPU memory (gpu_mem), and the
firmware refuses QPU jobs while the V3D KMS graphics driver owns the GPU
(dtoverlay=vc4-kms-v3d or vc4-fkms-v3d in config.txt, the default on recent
Raspberry Pi OS). In a container /dev/mem needs CAP_SYS_RAWIO as well as
the device. Each check prints the fix. Last comes a probe launch of a tiny
kernel (what available_backends() itself requires before offering qpu);
when it fails, the doctor names which of the causes above applies. Exit
status 0 when the qpu backend can run, 1 otherwise (always 1 off a Pi, after
listing what can run).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from . import _backend

CONFIG_FILES = ("boot/firmware/config.txt", "boot/config.txt")
MODEL_FILES = ("proc/device-tree/model", "sys/firmware/devicetree/base/model")
KMS_OVERLAY = re.compile(r"^\s*dtoverlay\s*=\s*(vc4-f?kms-v3d)\b")
GPU_MEM = re.compile(r"^\s*(gpu_mem(?:_\d+)?)\s*=\s*(\d+)")
# The firmware default on a Pi 3 is 64 MB (76 on some boards); the kernels'
# buffers plus the firmware's own needs fit from there. Less and GPU
# allocations fail; big matrices want more (100 x 10^5 floats is 40 MB).
MIN_GPU_MEM_MB = 64
CAP_SYS_RAWIO = 17  # linux/capability.h: mapping /dev/mem needs it
CONTAINER_MARKERS = (".dockerenv", "run/.containerenv")
CONTAINER_CGROUP = re.compile(r"docker|containerd|kubepods|libpod|lxc")
# QPULib targets the VideoCore IV: Pi 1, 2, 3, Zero (W/2W) and CM1/3.
NOT_VIDEOCORE_IV = ("Raspberry Pi 4", "Raspberry Pi 400", "Raspberry Pi 5", "Compute Module 4")


@dataclass(frozen=True)
class Check:
    """One finding. ok=None means 'could not tell' (does not block)."""

    name: str
    ok: bool | None
    detail: str
    fix: str = ""


def _read_model(root: Path) -> str | None:
    for rel in MODEL_FILES:
        path = root / rel
        if path.is_file():
            return path.read_bytes().rstrip(b"\0\n").decode(errors="replace")
    return None


def _config_lines(root: Path) -> Iterable[tuple[str, int, str]]:
    """(file, line number, text without comment) for each config.txt found."""
    for rel in CONFIG_FILES:
        path = root / rel
        if path.is_file():
            for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                yield f"/{rel}", number, line.split("#", 1)[0]


def check_model(root: Path) -> Check:
    model = _read_model(root)
    if model is None:
        return Check(
            "raspberry pi",
            False,
            f"not a Raspberry Pi ({platform.machine()}, no device-tree model)",
            "the qpu backend needs a Pi with a VideoCore IV (Pi 1/2/3/Zero); here use "
            "backend='emulator' (QPULib emulation build) or 'cpu'",
        )
    if "Raspberry Pi" not in model:
        return Check(
            "raspberry pi", False, f"board is {model!r}", "run on a Raspberry Pi 1/2/3/Zero"
        )
    if any(name in model for name in NOT_VIDEOCORE_IV):
        return Check(
            "raspberry pi",
            False,
            f"{model}: not a VideoCore IV GPU (QPULib supports Pi 1/2/3/Zero only)",
            "use a Pi 3 (or 1/2/Zero), or the cpu backend",
        )
    return Check("raspberry pi", True, model)


def check_build() -> Check:
    mode = _backend.build_mode()
    commit = _backend.build_info().get("qpulib_commit") or "unknown"
    if mode == "qpu":
        return Check("build", True, f"torch_qpu built with QPULib {commit[:12]} in qpu mode")
    what = (
        "without QPULib (cpu only)"
        if mode is None
        else f"with QPULib {commit[:12]} in emulation mode"
    )
    return Check(
        "build",
        False,
        f"torch_qpu built {what}",
        "rebuild on the Pi image with QPULIB_PREFIX=<prefix from images/qpulib/build.sh ... qpu> "
        "pip install --no-build-isolation images/torch-qpu",
    )


def check_root() -> Check:
    if os.geteuid() == 0:
        return Check("root", True, "running as root")
    return Check(
        "root",
        False,
        f"running as uid {os.geteuid()}",
        "run as root (sudo): QPULib maps GPU memory through /dev/mem",
    )


def check_device(path: str, fix: str) -> Check:
    if not os.path.exists(path):
        return Check(path, False, "missing", fix)
    if not os.access(path, os.R_OK | os.W_OK):
        return Check(path, False, "present but not readable and writable by this user", fix)
    return Check(path, True, "present and accessible")


def in_container(root: Path) -> bool:
    if any((root / marker).exists() for marker in CONTAINER_MARKERS):
        return True
    cgroup = root / "proc/1/cgroup"
    try:
        return bool(CONTAINER_CGROUP.search(cgroup.read_text(errors="replace")))
    except OSError:
        return False


def effective_capabilities(root: Path) -> int | None:
    """CapEff of this process (proc/self/status), None when unreadable."""
    try:
        text = (root / "proc/self/status").read_text(errors="replace")
    except OSError:
        return None
    match = re.search(r"^CapEff:\s*([0-9a-fA-F]+)", text, flags=re.MULTILINE)
    return int(match.group(1), 16) if match else None


def check_container_rawio(root: Path) -> Check:
    """/dev/mem in a container: --device is not enough, mapping it needs CAP_SYS_RAWIO."""
    name = "container /dev/mem"
    if not in_container(root):
        return Check(name, True, "not in a container")
    caps = effective_capabilities(root)
    if caps is None:
        return Check(name, None, "in a container; capabilities unreadable", RAWIO_FIX)
    if not caps >> CAP_SYS_RAWIO & 1:
        return Check(name, False, "in a container without CAP_SYS_RAWIO", RAWIO_FIX)
    return Check(name, True, "in a container with CAP_SYS_RAWIO")


RAWIO_FIX = (
    "run the container with --cap-add SYS_RAWIO --device /dev/mem --device /dev/vcio (or "
    "--privileged): the kernel refuses to map /dev/mem without CAP_SYS_RAWIO"
)
# Which failed check explains a failed probe launch, most specific first.
PROBE_CAUSES = ("graphics overlay", "container /dev/mem", "/dev/vcio", "/dev/mem", "root")


def check_probe(checks: list[Check], root: Path) -> Check:
    """A probe launch of a tiny kernel (qpu builds on this machine); on failure, the cause."""
    name = "probe launch"
    if _backend.build_mode() != "qpu":
        return Check(name, None, "not tried: not a qpu build")
    failure = _backend.qpu_probe() if root == Path("/") else "not tried (--root)"
    if not failure:
        return Check(name, True, "a tiny kernel ran on the QPUs")
    return probe_failure(checks, failure)


def probe_failure(checks: list[Check], failure: str) -> Check:
    """The probe's failure, with the fix of the first failed check that explains it."""
    failed = {check.name: check for check in checks if check.ok is False}
    for cause in PROBE_CAUSES:
        if cause in failed:
            return Check(
                "probe launch",
                False,
                f"failed ({failure}); cause: {cause}: {failed[cause].detail}",
                failed[cause].fix,
            )
    return Check(
        "probe launch",
        False,
        f"failed ({failure}); none of the checks above explains it",
        "check `dmesg` and `vcgencmd version`; a firmware without QPU support (or a kernel "
        "mailbox timeout) also refuses jobs",
    )


def check_overlay(root: Path) -> Check:
    found = [
        f"{name}:{number}: {text.strip()}"
        for name, number, text in _config_lines(root)
        if KMS_OVERLAY.match(text)
    ]
    driver_loaded = (root / "sys/module/vc4").is_dir()
    if found:
        return Check(
            "graphics overlay",
            False,
            "active: " + "; ".join(found),
            "comment out the vc4-kms-v3d / vc4-fkms-v3d dtoverlay line in that config.txt and "
            "reboot: the firmware refuses QPU jobs while the KMS driver owns the GPU",
        )
    if driver_loaded:
        return Check(
            "graphics overlay",
            False,
            "the vc4 kernel module is loaded (KMS driver owns the GPU)",
            "remove dtoverlay=vc4-kms-v3d/vc4-fkms-v3d from config.txt (all sections) and reboot",
        )
    if not any(True for _ in _config_lines(root)):
        return Check(
            "graphics overlay",
            None,
            f"no config.txt found (looked in /{' and /'.join(CONFIG_FILES)})",
            "on a Pi, check the boot partition's config.txt for dtoverlay=vc4-kms-v3d",
        )
    return Check("graphics overlay", True, "no vc4-kms-v3d / vc4-fkms-v3d overlay active")


def _vcgencmd_gpu_mem() -> int | None:
    """GPU memory in MB as the running firmware reports it, if vcgencmd works."""
    if shutil.which("vcgencmd") is None:
        return None
    try:
        result = subprocess.run(
            ["vcgencmd", "get_mem", "gpu"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"gpu=(\d+)M", result.stdout)
    return int(match.group(1)) if match else None


def check_gpu_mem(root: Path) -> Check:
    running = _vcgencmd_gpu_mem() if root == Path("/") else None
    if running is not None:
        if running < MIN_GPU_MEM_MB:
            return Check(
                "gpu_mem",
                False,
                f"firmware reports gpu={running}M: too little for QPU buffers",
                "set gpu_mem=128 in config.txt and reboot",
            )
        return Check("gpu_mem", True, f"firmware reports gpu={running}M")
    values = []
    for name, number, text in _config_lines(root):
        match = GPU_MEM.match(text)
        if match:
            values.append((f"{name}:{number}", match.group(1), int(match.group(2))))
    if not values:
        return Check(
            "gpu_mem",
            None,
            f"not set in config.txt (firmware default, {MIN_GPU_MEM_MB} MB on a Pi 3)",
            "set gpu_mem=128 in config.txt for large tensors",
        )
    where, key, megabytes = values[-1]  # the firmware uses the last setting it reads
    if megabytes < MIN_GPU_MEM_MB:
        return Check(
            "gpu_mem",
            False,
            f"{key}={megabytes} ({where}): too little for QPU buffers",
            f"set gpu_mem={max(128, MIN_GPU_MEM_MB)} in config.txt and reboot",
        )
    return Check("gpu_mem", True, f"{key}={megabytes} MB ({where})")


def run_checks(root: Path = Path("/")) -> list[Check]:
    """All checks; `root` lets tests point at a fake filesystem."""
    checks = [
        check_model(root),
        check_build(),
        check_root(),
        check_device(
            "/dev/vcio",
            "create it with `mknod /dev/vcio c 100 0`; in a chroot bind /dev "
            "(`mount --rbind /dev <root>/dev`), in a container pass --device /dev/vcio",
        ),
        check_device(
            "/dev/mem",
            "run as root; in a container pass --device /dev/mem and --cap-add SYS_RAWIO "
            "(or --privileged)",
        ),
        check_container_rawio(root),
        check_overlay(root),
        check_gpu_mem(root),
    ]
    return [*checks, check_probe(checks, root)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m torch_qpu doctor", description=__doc__)
    parser.add_argument("--root", type=Path, default=Path("/"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    import torch

    from . import __version__

    print(
        f"torch_qpu {__version__} doctor: torch {torch.__version__}, python "
        f"{platform.python_version()}, {platform.machine()}, build: "
        f"{_backend.build_mode() or 'cpu only'}"
    )
    checks = run_checks(args.root)
    labels = {True: " OK ", False: "FAIL", None: " ?? "}
    for check in checks:
        print(f"  [{labels[check.ok]}] {check.name}: {check.detail}")
        if check.ok is not True and check.fix:
            print(f"         fix: {check.fix}")
    failures = [check for check in checks if check.ok is False]
    print(f"backends usable here: {', '.join(_backend.available_backends())}")
    if failures:
        print(f"qpu backend: cannot run ({len(failures)} problem(s) above)")
        return 1
    print("qpu backend: ready")
    return 0


if __name__ == "__main__":
    sys.exit(main())
