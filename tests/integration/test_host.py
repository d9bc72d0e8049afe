"""doctor and qemu install against the real host, then armv7 containers: a binary, a streamed
run's options, labelled leftovers."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import docker.errors

from rpibuild.build.base import BaseImage
from rpibuild.engine import Engine
from rpibuild.host import qemu


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


def test_a_streamed_run_has_the_given_user_no_network_and_its_folder(
    engine: Engine, armhf_base: BaseImage, tmp_path: Path
) -> None:
    """What the torch compile's container relies on (rpibuild/torch_routes/debian_compile.py)."""
    out = tmp_path / "out"
    out.mkdir(mode=0o777)
    out.chmod(0o777)
    lines: list[str] = []
    script = "id -u; id -g; grep -c : /proc/net/dev; touch /out/made"
    code = engine.run_streaming(
        armhf_base.image,
        ["sh", "-c", script],
        on_line=lines.append,
        volumes={str(out): {"bind": "/out", "mode": "rw"}},
        user="4321:4322",
        network=False,
        labels={"io.rpibuild.test": "streamed"},
    )
    assert code == 0, lines
    assert lines[:3] == ["4321", "4322", "1"]  # only the loopback interface
    made = (out / "made").stat()
    assert (made.st_uid, made.st_gid) == (4321, 4322)
    assert engine.client.containers.list(all=True, filters={"label": "io.rpibuild.test=streamed"}) == []


def test_a_labelled_container_left_running_is_removed(engine: Engine, armhf_base: BaseImage) -> None:
    """A compile container whose rpibuild was killed keeps running; the next compile removes it."""
    label = "io.rpibuild.torch-compile=integration-test"
    left = engine.client.containers.run(
        armhf_base.image,
        ["sleep", "600"],
        detach=True,
        labels={"io.rpibuild.torch-compile": "integration-test"},
    )
    try:
        assert engine.remove_labelled_containers(label) == [left.id]
        assert engine.client.containers.list(all=True, filters={"label": label}) == []
        assert engine.remove_labelled_containers(label) == []
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            left.remove(force=True)
