"""doctor and qemu install against the real host, then armv7 containers: a binary, a streamed
run's options, labelled leftovers."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import docker.errors
import pytest

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
    assert {"engine", "binfmt qemu-arm", "qemu-arm-static", "mmdebstrap", "disk"} <= set(checks)
    assert all(c["ok"] for c in checks.values())
    assert "binfmt qemu-aarch64" not in checks  # only what the armv7 profile needs


def _doctor_json(*args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, dict[str, object]]]:
    result = subprocess.run(
        [sys.executable, "-m", "rpibuild", "doctor", *args, "--json"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
    )
    checks = json.loads(result.stdout)
    names = [c["name"] for c in checks]
    assert len(names) == len(set(names)), f"check names repeat: {names}"
    return result.returncode, {c["name"]: c for c in checks}


def test_doctor_check_names_are_unique_and_disk_is_the_engines_data_root(engine: Engine) -> None:
    code, checks = _doctor_json()
    assert code == 0, checks
    assert {"qemu-arm-static", "qemu-aarch64-static"} <= set(checks)
    root = engine.info()["DockerRootDir"]
    assert f"on {root} (the engine's data root)" in str(checks["disk"]["detail"])


@pytest.mark.parametrize("how", ["flag", "env", "profile"])
def test_doctor_checks_the_builder_build_would_use(how: str) -> None:
    args: list[str] = ["-p", "pi3b-armv7"]
    env = {"RPIBUILD_BUILDER": ""}
    if how == "flag":
        args += ["--builder", "no-such-builder"]
    elif how == "env":
        env["RPIBUILD_BUILDER"] = "no-such-builder"
    else:
        args += ["--set", "build.builder=no-such-builder"]
    code, checks = _doctor_json(*args, env=env)
    assert code == 1
    assert checks["builder"]["ok"] is False and "no-such-builder" in str(checks["builder"]["detail"])


def test_doctor_with_the_engine_down_skips_what_needs_it() -> None:
    code, checks = _doctor_json("-p", "pi3b-armv7", env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert code == 1
    assert checks["engine"]["ok"] is False
    for name in ("builder", "disk"):
        assert checks[name]["skipped"] is True and "unreachable" in str(checks[name]["detail"])
    human = rpibuild_env(["doctor", "-p", "pi3b-armv7"], {"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert "SKIP builder" in human.stdout and "driver ," not in human.stdout


def test_doctor_says_a_compile_is_running_while_one_holds_its_lock(tmp_path: Path) -> None:
    from rpibuild.config import load_profile
    from rpibuild.host.locks import host_lock
    from rpibuild.torch_routes.debian_compile import compile_lock_name

    env = {"RPIBUILD_CACHE": str(tmp_path / "cache"), "RPIBUILD_LOCK_DIR": str(tmp_path / "locks")}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        name = compile_lock_name(load_profile("pi3b-armv7").profile)
        with host_lock(name):
            _, checks = _doctor_json("-p", "pi3b-armv7", env=env)
    assert "a compile is running now" in str(checks["torch wheel"]["detail"])
    _, checks = _doctor_json("-p", "pi3b-armv7", env=env)
    assert "the next build compiles torch" in str(checks["torch wheel"]["detail"])


def test_the_ci_examples_doctor_step_passes_as_a_non_root_user(monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/ci/github-actions.yml runs `rpibuild doctor -p pi3b-armv7` without sudo (the
    runner's user, in the docker group). Being root is not something a test can drop here,
    so the effective user id is the one faked part."""
    from rpibuild.config import load_profile
    from rpibuild.host.doctor import run_checks

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    checks = run_checks(load_profile("pi3b-armv7").profile)
    failed = [(c.name, c.detail) for c in checks if not c.ok]
    assert failed == []
    assert "not root" in next(c.detail for c in checks if c.name == "privileges")
    assert "helper container" in next(c.detail for c in checks if c.name == "mmdebstrap")


def rpibuild_env(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rpibuild", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **env},
    )


def test_doctor_reports_a_missing_handler_with_its_fix() -> None:
    (qemu.BINFMT_DIR / "qemu-aarch64").write_text("-1")
    try:
        result = rpibuild("doctor", "-p", "pi3b-arm64")
        assert result.returncode == 1
        assert "FAIL binfmt qemu-aarch64" in result.stdout  # a result: stdout
        assert "fix: rpibuild qemu install" in result.stdout
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
    """A compile container whose rpibuild was killed keeps running (doctor sees it running);
    the next compile removes it, running or exited."""
    label = "io.rpibuild.torch-compile=integration-test"
    left = engine.client.containers.run(
        armhf_base.image,
        ["sleep", "600"],
        detach=True,
        labels={"io.rpibuild.torch-compile": "integration-test"},
    )
    try:
        assert engine.running_labelled_containers(label) == [left.id]  # doctor: "running now"
        left.kill()
        left.wait()
        assert engine.running_labelled_containers(label) == []  # exited: no longer under way
        assert engine.remove_labelled_containers(label) == [left.id]
        assert engine.client.containers.list(all=True, filters={"label": label}) == []
        assert engine.remove_labelled_containers(label) == []
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            left.remove(force=True)
