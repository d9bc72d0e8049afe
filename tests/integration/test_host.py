"""doctor and qemu install against the real host, then an armv7 binary in a container."""

from __future__ import annotations

import json
import subprocess
import sys

from rpibuild import qemu
from rpibuild.base import BaseImage
from rpibuild.engine import Engine


def rpibuild(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rpibuild", *args], capture_output=True, text=True, check=False
    )


def test_qemu_install_is_idempotent() -> None:
    first = rpibuild("qemu", "install")
    assert first.returncode == 0, first.stderr
    second = rpibuild("qemu", "install")
    assert second.returncode == 0, second.stderr
    assert second.stderr.count("already registered") == 2
    for arch in qemu.HANDLERS:
        handler = qemu.status(arch)
        assert handler.usable, handler.problem()
        assert "F" in handler.flags


def test_qemu_install_repairs_a_handler_without_the_f_flag() -> None:
    line = qemu.handler_line("arm").rsplit(":", 1)[0] + ":OP"  # same handler, no F flag
    (qemu.BINFMT_DIR / "qemu-arm").write_text("-1")
    (qemu.BINFMT_DIR / "register").write_text(line)
    try:
        assert qemu.status("arm").problem().startswith("registered without the F flag")
        status = rpibuild("qemu", "status")
        assert status.returncode == 1
        assert rpibuild("qemu", "install").returncode == 0
        assert qemu.status("arm").usable
    finally:
        qemu.install()


def test_doctor_passes_on_the_set_up_host() -> None:
    result = rpibuild("doctor", "-p", "pi3b-armv7", "--set", "torch.source=none", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    checks = {c["name"]: c for c in json.loads(result.stdout)}
    assert {"engine", "binfmt qemu-arm", "qemu-user-static", "debootstrap", "disk"} <= set(checks)
    assert all(c["ok"] for c in checks.values())
    assert "binfmt qemu-aarch64" not in checks  # only what the armv7 profile needs


def test_doctor_reports_a_missing_handler_with_its_fix() -> None:
    (qemu.BINFMT_DIR / "qemu-aarch64").write_text("-1")
    try:
        result = rpibuild("doctor", "-p", "pi3b-arm64")
        assert result.returncode == 1
        assert "FAIL binfmt qemu-aarch64" in result.stderr
        assert "fix: rpibuild qemu install" in result.stderr
    finally:
        qemu.install()


def test_an_armv7_binary_runs_in_a_container(engine: Engine, armhf_base: BaseImage) -> None:
    code, output = engine.run(armhf_base.image, ["sh", "-c", "uname -m; dpkg --print-architecture"])
    assert code == 0, output
    assert output.split() == ["armv7l", "armhf"]
