"""The main job for real: the default profile, cross-compiled, verified as a Cortex-A53.

QPULib and the extension are compiled on the build platform with Debian's cross toolchain
(build.cross, the default) and installed under QEMU; verify runs the extension's emulator
tests as the Pi's core. QPULib comes from its pinned upstream archive through `qpulib.url`:
on hosts without GitHub (CI) a `file://` URL into RPIBUILD_SOURCE_MIRROR, still checked by
the profile's tree_sha256 (RPIBUILD_QPULIB_SRC, a local tree, is deliberately not used).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from rpibuild.config import load_profile
from rpibuild.engine import Engine
from rpibuild.planning.stages import plan_stages

SENTINEL = "no-proxy-sentinel.invalid"
BASE_ARGS = ["-p", "pi3b-arm64", "--set", f"network.no_proxy={SENTINEL}", "--set", "verify.emulator=true"]
MIRROR = os.environ.get("RPIBUILD_SOURCE_MIRROR", "")
if MIRROR and "://" not in MIRROR:
    BASE_ARGS += ["--set", f"qpulib.url=file://{Path(MIRROR).resolve()}/QPULib-{{commit}}.tar.gz"]
# The archive, not a local tree, and no mirror lookup: what the profile's URL says is used.
ENV = {k: v for k, v in os.environ.items() if k not in ("RPIBUILD_QPULIB_SRC", "RPIBUILD_SOURCE_MIRROR")}
_PROFILE = load_profile("pi3b-arm64", env={}).profile
TORCH = str(_PROFILE.torch.version)
# Python in the image runs as the Pi's core: QEMU's default "max" CPU emulates pointer
# authentication the slow way, and Debian's arm64 code signs every return (import torch: about
# 100 s instead of 20 s).
AS_THE_PI = {"QEMU_CPU": str(plan_stages(_PROFILE).verify_cpu)}
EXTENSION = Path(__file__).resolve().parents[2] / "images" / "torch-qpu"


def rpibuild(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "rpibuild", *args], capture_output=True, text=True, check=False, env=ENV
    )
    if check and result.returncode != 0:
        pytest.fail(f"rpibuild {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result


def buildx_processes(mark: str) -> list[str]:
    """Command lines of running buildx builds started by the build whose environment has
    ``mark`` (buildx inherits rpibuild's environment): other builds on the engine do not count."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            text = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            marked = mark.encode() in (proc / "environ").read_bytes()
        except OSError:
            continue
        if "buildx" in text and "rpibuild-buildx-" in text and marked:
            found.append(text)
    return found


def build(*extra: str) -> dict:
    return json.loads(rpibuild("build", *BASE_ARGS, *extra, "--json").stdout)


@pytest.fixture(scope="module")
def extension_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the extension, so the test can edit it (and the cache is stable)."""
    target = tmp_path_factory.mktemp("ext") / "torch-qpu"
    shutil.copytree(EXTENSION, target, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    return target


@pytest.fixture(scope="module")
def first(extension_copy: Path) -> dict:
    return build("--set", f"extension.path={extension_copy}")


def test_image_is_built_tagged_and_labelled(engine: Engine, first: dict) -> None:
    assert [s["name"] for s in first["stages"]] == [
        "cross",
        "torch-install",
        "qpulib-build",
        "extension-build",
        "system",
        "torch",
        "qpulib",
        "extension",
        "verify-torch",
        "verify",
        "runtime",
    ]
    # Where each ran: C++ and every install on the build platform; the target only copies
    # files in and runs what must execute Pi code (the torch import, ldconfig, verify).
    places = {s["name"]: s["place"] for s in first["stages"]}
    assert places["extension-build"] == "build platform, native"
    assert places["verify"] == "linux/arm64 under QEMU"
    assert first["platform"] == "linux/arm64"
    for tag in first["tags"]:
        info = engine.image(tag)
        assert info is not None and info.id == first["id"]
    info = engine.image(first["id"])
    assert (info.os, info.architecture) == ("linux", "arm64")
    assert info.labels["io.rpibuild.profile"] == "pi3b-arm64"
    assert info.labels["io.rpibuild.torch.version"] == TORCH
    assert info.labels["io.rpibuild.qpulib.mode"] == "qpu"
    assert info.labels["org.opencontainers.image.title"] == "rpibuild/pi3b-arm64"


def test_verify_ran_as_the_pi_core(engine: Engine, first: dict) -> None:
    code, output = engine.run(first["id"], ["cat", "/opt/rpibuild/verify.json"])
    assert code == 0, output
    report = json.loads(output)
    assert report["machine"] == "aarch64"
    assert report["qemu_cpu"] == "cortex-a53"
    assert report["torch"].startswith(TORCH)
    # torch and its dependencies were installed by the build platform's pip (torch-install):
    # the target's pip finds every requirement met, console scripts run the venv's Python.
    assert report["requirements"] == "consistent"
    code, output = engine.run(first["id"], ["sh", "-c", "head -n 1 /opt/rpibuild/venv/bin/torchrun"])
    assert (code, output.strip()) == (0, "#!/opt/rpibuild/venv/bin/python"), output
    assert "cpu" in report["backends"]
    assert report["emulator_tests"] == "passed"  # the extension's emulator tests, as a Cortex-A53
    sweep = report["op_sweep"]  # every op case ran as a Cortex-A53, each in its own process
    assert not sweep.get("failed")
    names = {case["name"] for case in sweep["cases"]}
    assert {"import", "matmul", "conv2d", "lstm", "sdpa", "train_step"} <= names, names
    code, output = engine.run(first["id"], ["sh", "-c", "ls /usr/local/lib/libqpu.so*"])
    assert code == 0 and "libqpu.so" in output, output


def test_cpp_was_compiled_on_the_build_platform_for_the_target(engine: Engine, first: dict) -> None:
    """The cross-compiled files are aarch64 code, built by Debian's cross g++ (build info)."""
    script = (
        "import struct, torch_qpu; print(torch_qpu.build_info()); "
        "print(struct.unpack_from('<H', open('/usr/local/lib/libqpu.so.1.0', 'rb').read(20), 18)[0])"
    )
    code, output = engine.run(first["id"], ["python", "-c", script], environment=AS_THE_PI)
    assert code == 0, output
    info, machine = output.strip().splitlines()[-2:]
    assert "'qpulib_compiler': 'aarch64-linux-gnu-g++" in info and "'cross': 'aarch64-linux-gnu'" in info
    assert "'qpulib_mode': 'qpu'" in info
    assert machine == "183"  # EM_AARCH64


def test_runtime_image_has_no_build_tools_or_network_settings(engine: Engine, first: dict) -> None:
    script = "command -v g++ cc make || true; ls /etc/pip.conf /etc/rpibuild 2>/dev/null || true; env"
    code, output = engine.run(first["id"], ["sh", "-c", script])
    assert code == 0
    assert "g++" not in output and "/etc/pip.conf" not in output and "/etc/rpibuild" not in output
    assert SENTINEL not in output and "QEMU_CPU" not in output
    history = subprocess.run(
        ["docker", "history", "--no-trunc", first["id"]], capture_output=True, text=True, check=True
    ).stdout
    inspect = subprocess.run(
        ["docker", "image", "inspect", first["id"]], capture_output=True, text=True
    ).stdout
    assert SENTINEL not in history and SENTINEL not in inspect
    code, output = engine.run(
        first["id"],
        ["python", "-c", "import torch, torch_qpu; print(torch_qpu.available_backends())"],
        environment=AS_THE_PI,
    )
    assert code == 0, output


def test_rebuild_with_nothing_changed_is_all_cache(first: dict, extension_copy: Path) -> None:
    again = build("--set", f"extension.path={extension_copy}")
    assert again["id"] == first["id"]
    assert all(stage["cached"] for stage in again["stages"]), again["stages"]


def test_extension_change_reruns_only_extension_and_later(
    engine: Engine, first: dict, extension_copy: Path
) -> None:
    init = extension_copy / "torch_qpu" / "__init__.py"
    # A new edit every run: BuildKit's cache is by content, and outlives a test session.
    init.write_text(init.read_text() + f"\n# edited by the e2e test {time.time_ns()}\n")
    # What reruns is the point here; the emulator tests already ran as a Cortex-A53 in the
    # first build, so this build leaves them out (they are most of verify's time under QEMU).
    changed = build("--set", f"extension.path={extension_copy}", "--set", "verify.emulator=false")
    cached = {s["name"]: s["cached"] for s in changed["stages"]}
    assert cached["system"] and cached["torch"] and cached["qpulib"] and cached["qpulib-build"]
    assert cached["torch-install"] and cached["cross"]
    # torch's checks and op sweep do not depend on the extension: not run again.
    assert cached["verify-torch"]
    assert not cached["extension-build"] and not cached["extension"] and not cached["verify"]
    assert changed["id"] != first["id"]
    assert engine.image(changed["tags"][0]).id == changed["id"]
    first.update(changed)  # later tests compare with the current tags


def test_failed_stage_moves_no_tag_and_leaves_no_container(
    engine: Engine, first: dict, extension_copy: Path
) -> None:
    before = {c.id for c in engine.client.containers.list(all=True)}
    result = rpibuild(
        "build",
        *BASE_ARGS,
        "--set",
        f"extension.path={extension_copy}",
        "--set",
        "torch.sha256=" + "0" * 64,
        check=False,
    )
    assert result.returncode == 5
    # A cross build checks the wheel on the build platform, in torch-install.
    assert "stage 'torch-install' failed" in result.stderr
    assert "last " in result.stderr and "FAILED" in result.stderr  # the log tail
    assert "full log:" in result.stderr
    for tag in first["tags"]:
        assert engine.image(tag).id == first["id"], "a tag moved after a failure"
    after = {c.id for c in engine.client.containers.list(all=True)}
    assert after <= before, "containers were left behind"


def test_ctrl_c_cleans_up(engine: Engine, first: dict, extension_copy: Path) -> None:
    before = {c.id for c in engine.client.containers.list(all=True)}
    mark = f"RPIBUILD_TEST_MARK=ctrl-c-{uuid.uuid4()}"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rpibuild",
            "build",
            *BASE_ARGS,
            "--set",
            f"extension.path={extension_copy}",
            "--no-cache",
            "--target",
            "system",
        ],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, mark.split("=")[0]: mark.split("=", 1)[1]},
    )
    assert process.stderr is not None
    for line in process.stderr:
        # The build platform's apt step (--no-cache: it runs): the target has none any more.
        if "RUN dpkg --add-architecture" in line:
            break
    time.sleep(5)
    process.send_signal(signal.SIGINT)
    _, rest = process.communicate(timeout=120)
    assert process.returncode == 130, rest
    assert "Traceback" not in rest
    assert buildx_processes(mark) == [], "a build kept running after Ctrl-C"
    after = {c.id for c in engine.client.containers.list(all=True)}
    assert after <= before, "containers were left behind after Ctrl-C"
    for tag in first["tags"]:
        assert engine.image(tag).id == first["id"]
