"""The torch compile where the builder is, and on many machines: real engines, real distccd.

The stand-in for the wheel is the compile of torch's c10 library (the subset CI already
compiles as the torch-c10 stage), run through the same path as the wheel
(``compile_wheel(..., only="c10")``: the torch-compile image, the same folders or volumes,
ccache, distcc, the same ELF check). One torch-compile image, built once on this engine.

- A second dockerd in its own network namespace, as a docker context: selected like
  ``--builder`` does, it runs the compile container, holds its volumes, and the library comes
  back as an ARM hard-float ELF; this engine gets neither container nor volume.
- Two distcc-helper containers (rpibuild's helper image) on loopback, and a third helper that
  does not answer: the compile succeeds, each live helper's own statistics count jobs, and
  the dead one costs a warning, not the build.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _engines import second_engine_context

from rpibuild.config import load_profile
from rpibuild.config.model import Profile
from rpibuild.engine import DockerEngine, Engine
from rpibuild.export.elf import read_header
from rpibuild.torch_routes.compile_place import bring_image, compile_place
from rpibuild.torch_routes.debian_compile import (
    LABEL,
    VOLUME_LABEL,
    compile_tag,
    compile_wheel,
    discard_build_folder,
)

pytestmark = pytest.mark.integration
ARMV7 = ["qpulib.enabled=false", "extension.enabled=false"]
# Loopback ports of the helpers: jobs, statistics; and one where nothing listens.
HELPERS = ((36321, 36331), (36322, 36332))
DEAD_HELPER = "127.0.0.1:9/2"


def rpibuild(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rpibuild", *args], capture_output=True, text=True, check=False
    )


def armv7(env: dict[str, str] | None = None) -> Profile:
    return load_profile("pi3b-armv7", ARMV7, env=env or {}).profile


def build_stage(target: str) -> str:
    args = [a for o in ARMV7 for a in ("--set", o)]
    result = rpibuild("build", "-p", "pi3b-armv7", *args, "--target", target, "--json")
    assert result.returncode == 0, result.stderr[-4000:]
    return str(json.loads(result.stdout)["id"])


@pytest.fixture(scope="module")
def compile_image() -> str:
    """The image the compile container runs (torch-source, whose layers test_torch_debian's c10
    build leaves cached, plus distcc's client)."""
    return build_stage("torch-compile")


def check_c10(out: Path) -> None:
    """The library came back and is what a Pi 3 in 32-bit mode runs."""
    (library,) = sorted(out.glob("libc10.so*"))
    header = read_header(library)
    assert header is not None
    assert (header.machine_name, header.bits, header.float_abi) == ("ARM", 32, "hard")


def test_a_second_engine_selected_as_builder_runs_the_compile_in_its_volumes(
    engine: Engine, compile_image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RPIBUILD_CACHE", str(tmp_path / "cache"))  # no stored wheel: doctor's check shows
    prof = armv7()
    with second_engine_context("compile2") as (host, context):
        args = [a for o in ARMV7 for a in ("--set", o)]
        doctor = rpibuild("doctor", "-p", "pi3b-armv7", *args, "--builder", context, "--json")
        checks = {c["name"]: c for c in json.loads(doctor.stdout)}
        assert checks["torch compile"]["ok"], checks["torch compile"]
        assert checks["torch compile"]["detail"].startswith(f"on the engine at {host} (")
        assert "named volumes there" in checks["torch compile"]["detail"]
        # As `build --builder CONTEXT` connects: the context's engine is the builder's.
        selected = DockerEngine.connect(builder=context)
        place = compile_place(selected, prof, env={})
        assert place.engine.address == host and not place.host_folders
        assert place.jobs == place.cpus == os.cpu_count()
        lines: list[str] = []
        bring_image(engine, place, compile_image, lines.append)  # built here, sent there
        out = tmp_path / "out"
        code = compile_wheel(
            place, compile_image, prof, out, key="c10-test", fresh=True, on_line=lines.append, only="c10"
        )
        assert code == 0, "\n".join(lines[-60:])
        assert any(line.startswith(f"compile: runs on the engine at {host}") for line in lines)
        check_c10(out)

        def volumes(docker: list[str]) -> list[str]:
            listed = subprocess.run(
                [*docker, "volume", "ls", "-q", "--filter", f"label={VOLUME_LABEL}"],
                capture_output=True,
                text=True,
                check=True,
            )
            return listed.stdout.split()

        there = volumes(["docker", "-H", host])
        assert sorted(there) == ["rpibuild-torch-armhf-build-c10-test", "rpibuild-torch-armhf-ccache"]
        assert not set(there) & set(volumes(["docker"])), "the volumes are on this engine"
        # No container of this compile left on either engine; none ever on this one. (Only
        # this place's: a user's own compile may be running on this engine meanwhile.)
        for docker in (["docker", "-H", host], ["docker"]):
            left = subprocess.run(
                [*docker, "ps", "-aq", "--filter", f"label={LABEL}={compile_tag(prof, place)}"],
                capture_output=True,
                text=True,
                check=True,
            )
            assert left.stdout.strip() == ""
        # The ccache there is warm: the build folder's discard keeps it.
        discard_build_folder(prof, "c10-test", place)
        assert volumes(["docker", "-H", host]) == ["rpibuild-torch-armhf-ccache"]
    assert Path("/sys/class/net/docker0").exists(), "this host's engine lost its bridge"


# ---------------------------------------------------------------- distcc


def distcc_stats(port: int) -> dict[str, int]:
    """distccd's own statistics (``--stats``): one ``name value`` line each, read over TCP."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    stats = {}
    for line in data.decode("utf-8", "replace").splitlines():
        name, _, value = line.partition(" ")
        if name.startswith("dcc_") and value.strip().isdigit():
            stats[name] = int(value)
    return stats


@pytest.fixture
def helpers(engine: Engine) -> Iterator[list[tuple[str, int]]]:
    """Two distcc-helper containers (the image rpibuild ships) on loopback; (DISTCC_HOSTS
    entry, statistics port) each. Started as the README's one line says, ports aside."""
    image = build_stage("distcc-helper")
    names = []
    try:
        for port, stats in HELPERS:
            name = f"rpibuild-test-distccd-{port}-{os.getpid()}"
            subprocess.run(
                [
                    "docker", "run", "-d", "--name", name, "--network", "host", image,
                    "--allow", "127.0.0.1", "--listen", "127.0.0.1",
                    "--port", str(port), "--stats-port", str(stats), "--jobs", "2",
                ],
                check=True,
                capture_output=True,
            )  # fmt: skip
            names.append(name)
        deadline = time.monotonic() + 30
        for _port, stats in HELPERS:
            while True:
                try:
                    distcc_stats(stats)
                    break
                except OSError:
                    assert time.monotonic() < deadline, "a distcc helper did not start"
                    time.sleep(0.5)
        yield [(f"127.0.0.1:{port}/2", stats) for port, stats in HELPERS]
    finally:
        for name in names:
            subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


def test_distcc_helpers_take_jobs_and_one_that_does_not_answer_is_a_warning(
    engine: Engine,
    compile_image: str,
    helpers: list[tuple[str, int]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RPIBUILD_CACHE", str(tmp_path / "cache"))  # a cold ccache: every job compiles
    hosts = " ".join([spec for spec, _ in helpers] + [DEAD_HELPER])
    prof = armv7()
    place = compile_place(engine, prof, env={"RPIBUILD_DISTCC_HOSTS": hosts})
    assert place.host_folders and len(place.helpers) == 3
    before = {stats: distcc_stats(stats).get("dcc_compile_ok", 0) for _, stats in helpers}
    lines: list[str] = []
    out = tmp_path / "out"
    code = compile_wheel(
        place, compile_image, prof, out, key="c10-distcc", fresh=True, on_line=lines.append, only="c10"
    )
    assert code == 0, "\n".join(lines[-60:])
    check_c10(out)
    counted = {stats: distcc_stats(stats).get("dcc_compile_ok", 0) - before[stats] for _, stats in helpers}
    assert all(jobs > 0 for jobs in counted.values()), counted
    text = "\n".join(lines)
    assert "distcc helper 127.0.0.1:9 does not answer" in text
    assert "compile: distcc helpers answering: 2" in text
    print(f"distcc jobs per helper: {counted}")
