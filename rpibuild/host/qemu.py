"""binfmt_misc handlers that let the host run ARM binaries through qemu-user-static.

The handlers are registered with the F flag ("fix binary"): the kernel opens the
interpreter once, so containers need no qemu binary inside them.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from rpibuild.errors import HostSetupError

BINFMT_DIR = Path(os.environ.get("RPIBUILD_BINFMT_DIR", "/proc/sys/fs/binfmt_misc"))
CONF_DIRS = (Path("/usr/lib/binfmt.d"), Path("/etc/binfmt.d"))
HANDLERS = ("arm", "aarch64")
INSTALL_HINT = "apt-get install -y qemu-user-static"


@dataclass(frozen=True)
class HandlerStatus:
    """What the kernel says about one handler (``qemu-arm``, ``qemu-aarch64``)."""

    name: str
    registered: bool
    enabled: bool = False
    flags: str = ""
    interpreter: str = ""

    @property
    def usable(self) -> bool:
        """Registered, enabled, fix-binary, and its interpreter exists."""
        return self.registered and self.enabled and "F" in self.flags and Path(self.interpreter).exists()

    def problem(self) -> str | None:
        if not self.registered:
            return "not registered"
        if not self.enabled:
            return "registered but disabled"
        if "F" not in self.flags:
            return f"registered without the F flag (flags: {self.flags or 'none'})"
        if not Path(self.interpreter).exists():
            return f"interpreter {self.interpreter} is missing"
        return None


def is_mounted() -> bool:
    return (BINFMT_DIR / "register").exists()


def status(arch: str) -> HandlerStatus:
    """Read ``/proc/sys/fs/binfmt_misc/qemu-ARCH``."""
    name = f"qemu-{arch}"
    path = BINFMT_DIR / name
    try:
        text = path.read_text()
    except OSError:
        return HandlerStatus(name, registered=False)
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if line.strip():
            key, _, value = line.partition(" ")
            fields[key] = value
    return HandlerStatus(
        name,
        registered=True,
        enabled="enabled" in fields,
        flags=fields.get("flags:", "").strip(),
        interpreter=fields.get("interpreter", "").strip(),
    )


def handler_line(arch: str) -> str:
    """The register line shipped by qemu-user-static, with the F flag guaranteed."""
    for directory in CONF_DIRS:
        conf = directory / f"qemu-{arch}.conf"
        if conf.is_file():
            line = conf.read_text().strip()
            parts = line.split(":")
            if len(parts) != 8:
                raise HostSetupError(f"{conf} is not a binfmt_misc register line")
            if "F" not in parts[7]:
                parts[7] += "F"
            return ":".join(parts)
    raise HostSetupError(
        f"no binfmt configuration for qemu-{arch} (qemu-user-static is not installed)",
        hint=INSTALL_HINT,
    )


def mount() -> None:
    if is_mounted():
        return
    result = subprocess.run(
        ["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT_DIR)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise HostSetupError(
            f"cannot mount binfmt_misc on {BINFMT_DIR}: {result.stderr.strip()}",
            hint=f"run as root (or in a privileged container): mount -t binfmt_misc binfmt_misc {BINFMT_DIR}",
        )


def install(arches: tuple[str, ...] = HANDLERS) -> list[str]:
    """Register each handler with the F flag; idempotent. Returns what was done, per handler."""
    mount()
    actions = []
    for arch in arches:
        line = handler_line(arch)
        interpreter = line.split(":")[6]
        current = status(arch)
        if current.usable and current.interpreter == interpreter:
            actions.append(f"qemu-{arch}: already registered")
            continue
        try:
            if current.registered:
                (BINFMT_DIR / f"qemu-{arch}").write_text("-1")
            (BINFMT_DIR / "register").write_text(line)
        except OSError as exc:
            raise HostSetupError(
                f"cannot register qemu-{arch}: {exc.strerror}",
                hint="run `rpibuild qemu install` as root",
            ) from None
        actions.append(f"qemu-{arch}: registered ({interpreter}, flags {line.split(':')[7]})")
    return actions
