"""Where the torch compile runs (the engine behind the builder) and with whom (distcc helpers).

The real second engine and real distccd helpers are in tests/integration/test_compile_scaleout.py;
here the pipeline's decisions against fake engines: which engine runs the container, what it
mounts, what comes back, and bad helper lists refused before anything is built.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rpibuild.build.pipeline import build_profile
from rpibuild.cli.reporter import Reporter
from rpibuild.config import load_profile
from rpibuild.engine import BuildEvent
from rpibuild.errors import ConfigError, ExitCode
from rpibuild.planning.render import torch_wheel_key
from rpibuild.torch_routes.compile_place import DistccHelper, compile_place, distcc_helpers
from rpibuild.torch_routes.debian_compile import volume_names
from tests.unit.fake_engine import FakeEngine
from tests.unit.test_build_pipeline import WHEEL, armv7, compiling_engine


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RPIBUILD_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("RPIBUILD_DISTCC_HOSTS", raising=False)


def server() -> FakeEngine:
    """The engine behind a builder on another machine (a docker context over ssh://)."""
    return FakeEngine(address="ssh://builder@build-server", is_local=False, ncpu=64)


def test_the_compile_runs_on_the_builders_engine_in_named_volumes_and_the_wheel_comes_back(
    tmp_path: Path,
) -> None:
    from rpibuild.build.sources import cache_dir

    prof = armv7()
    engine, built_id = compiling_engine(prof, b"libsleef3\n")
    remote = server()
    remote.exports = dict(engine.exports)
    engine.behind_builder = remote
    key = torch_wheel_key(prof)
    build, ccache = volume_names(prof, key)
    remote.ensure_volume(
        "rpibuild-torch-armhf-build-0123456789abcdef01234567",
        {"io.rpibuild.torch-compile.volume": "armhf-build"},
    )
    remote.calls.clear()

    outcome = build_profile(prof, engine)
    assert engine.runs == [], "the compile ran on this host's engine"
    (run,) = remote.runs
    # The image went over once (built where the builder put it), then ran there.
    assert f"save {built_id}" in engine.calls and remote.loaded and run["image"] == built_id
    # Named volumes on that engine, at the paths compile.sh expects; nothing of this host.
    assert run["volumes"] == {
        build: {"bind": "/var/cache/rpibuild/torch/build", "mode": "rw"},
        ccache: {"bind": "/var/cache/rpibuild/ccache", "mode": "rw"},
    }
    assert "user" not in run and run["copy_out"][0] == "/opt/rpibuild/wheels"
    assert run["environment"]["MAX_JOBS"] == "64"  # that engine's CPUs
    assert not (cache_dir() / "torch-compile").exists()
    # Another key's build volume went before the compile; this key's once the wheel was stored.
    assert "remove volume rpibuild-torch-armhf-build-0123456789abcdef01234567" in remote.calls
    assert remote.calls[-1] == f"remove volume {build}" and list(remote.volumes) == [ccache]
    assert outcome.torch_wheel is not None and Path(str(outcome.torch_wheel["path"])).name == WHEEL
    assert Path(str(outcome.torch_wheel["path"])).read_bytes() == b"wheel bytes"


def test_no_cache_starts_the_volume_over_and_max_jobs_wins(tmp_path: Path) -> None:
    prof = armv7("torch.max_jobs=6")
    engine, _ = compiling_engine(prof)
    remote = server()
    remote.exports = dict(engine.exports)
    remote.run_code = 3  # interrupted: the volumes stay for the next run to resume
    engine.behind_builder = remote
    build, ccache = volume_names(prof, torch_wheel_key(prof))
    with pytest.raises(Exception, match="run the build again to resume"):
        build_profile(prof, engine)
    assert sorted(remote.volumes) == sorted([build, ccache])
    assert remote.runs[0]["environment"]["MAX_JOBS"] == "6"
    remote.calls.clear()
    with pytest.raises(Exception, match="run the build again to resume"):
        build_profile(prof, engine, no_cache=True)
    assert remote.calls.index(f"remove volume {build}") < remote.calls.index(f"volume {build}")


def test_distcc_helpers_go_through_ccaches_prefix_with_the_helpers_network(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prof = armv7("torch.distcc_hosts=[10.0.0.5/8, helper.lan:4000]")
    engine, _ = compiling_engine(prof)
    build_profile(prof, engine)
    (run,) = engine.runs
    env = run["environment"]
    assert env["CCACHE_PREFIX"] == "distcc"
    # The helpers first, this engine last (it preprocesses every job too).
    assert env["DISTCC_HOSTS"] == "10.0.0.5:3632/8 helper.lan:4000/4 localhost/2"
    assert env["MAX_JOBS"] == str(2 + 8 + 4)
    assert run["network"] == "host"  # the helpers as the engine's machine reaches them
    assert run["command"][:2] == ["bash", "/opt/rpibuild/src/torch-compile/check-helpers.sh"]
    assert run["command"][2:4] == ["bash", "/opt/rpibuild/src/torch-debian/compile.sh"]

    # The environment replaces the profile's list; empty means none.
    monkeypatch.setenv("RPIBUILD_DISTCC_HOSTS", "")
    build_profile(armv7("torch.distcc_hosts=[10.0.0.5]", "torch.version=2.6.0+dfsg-6"), engine)
    assert "CCACHE_PREFIX" not in engine.runs[-1]["environment"]
    assert engine.runs[-1]["network"] is False


@pytest.mark.parametrize(
    "entry",
    [
        "host;rm -rf /",
        "$(reboot)",
        "host:0",
        "host:70000",
        "host/0",
        "host/999",
        "--randomize",
        "@sshhost",
        "host,lzo",
        "-host",
    ],
)
def test_a_bad_helper_is_a_usage_error_before_anything_is_built(
    entry: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    prof = armv7()
    engine, _ = compiling_engine(prof)
    monkeypatch.setenv("RPIBUILD_DISTCC_HOSTS", f"10.0.0.5 {entry}")
    with pytest.raises(ConfigError) as caught:
        build_profile(prof, engine)
    assert caught.value.exit_code == ExitCode.USAGE and "RPIBUILD_DISTCC_HOSTS" in str(caught.value)
    assert engine.calls == [] and engine.runs == []  # not even a base looked up


def test_a_bad_helper_in_a_profile_names_the_field() -> None:
    from rpibuild.errors import RpibuildError

    with pytest.raises(RpibuildError) as caught:
        load_profile("pi3b-armv7", ["torch.distcc_hosts=['h;x']"], env={})
    assert caught.value.exit_code == ExitCode.USAGE and "torch.distcc_hosts" in str(caught.value)


def test_helper_specs_take_distccs_defaults() -> None:
    assert DistccHelper.parse("h") == DistccHelper("h", 3632, 4)
    assert DistccHelper.parse("10.1.2.3:3700/16").spec == "10.1.2.3:3700/16"
    assert distcc_helpers(armv7(), env={"RPIBUILD_DISTCC_HOSTS": " a  b:1/2 "}) == (
        DistccHelper("a", 3632, 4),
        DistccHelper("b", 1, 2),
    )


def test_place_in_words_for_doctor_and_the_progress_line() -> None:
    local = compile_place(FakeEngine(ncpu=2), armv7(), env={})
    assert local.host_folders and local.describe() == "this host's engine (2 CPUs), 2 jobs"
    behind = FakeEngine(behind_builder=server())
    remote = compile_place(behind, armv7(), env={"RPIBUILD_DISTCC_HOSTS": "h1/8"})
    assert not remote.host_folders
    assert remote.describe() == (
        "the engine at ssh://builder@build-server (64 CPUs), 72 jobs, distcc helpers: h1:3632/8"
    )


def test_the_progress_line_says_where_the_compile_runs(capsys: pytest.CaptureFixture[str]) -> None:
    reporter = Reporter("plain", "build")
    reporter.event(
        BuildEvent("torch-build", 1, 1, "compile: runs on the engine at ssh://b (64 CPUs), 64 jobs", False)
    )
    reporter.event(BuildEvent("torch-build", 1, 1, "[rpibuild-ninja 1/1240] c++", False, (1, 1240)))
    err = capsys.readouterr().err
    assert "compile: runs on the engine at ssh://b (64 CPUs), 64 jobs" in err
    assert "compiling 1/1240 (0%) on the engine at ssh://b (64 CPUs), 64 jobs" in err


def test_doctor_says_where_the_compile_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    from rpibuild.engine import DockerEngine
    from rpibuild.host.doctor import check_torch_compile

    engine = FakeEngine(behind_builder=server())
    monkeypatch.setattr(DockerEngine, "connect", classmethod(lambda cls, **_: engine))
    check, place = check_torch_compile(armv7(), "build-server")
    assert place is not None and place.engine is engine.behind_builder
    assert check.ok and check.detail == (
        "on the engine at ssh://builder@build-server (64 CPUs), 64 jobs; build folder and ccache in "
        "named volumes there"
    )
    monkeypatch.setenv("RPIBUILD_DISTCC_HOSTS", "bad;host")
    bad, nowhere = check_torch_compile(armv7(), None)
    assert not bad.ok and nowhere is None and "RPIBUILD_DISTCC_HOSTS" in bad.detail


def test_doctor_sees_a_compile_on_the_builders_engine_whoever_started_it() -> None:
    """A compile in the volumes of another engine: doctor asks that engine, not this host's
    folders and locks: its container running there, else the key's build volume it resumes."""
    from rpibuild.host.doctor import check_torch_wheel
    from rpibuild.planning.plan import make_plan
    from rpibuild.torch_routes.compile_place import compile_place
    from rpibuild.torch_routes.debian_compile import LABEL, VOLUME_LABEL, compile_tag, volume_names

    prof = armv7()
    plan = make_plan(prof)
    remote = server()
    place = compile_place(FakeEngine(behind_builder=remote), prof, env={})
    fresh = check_torch_wheel(prof, plan, place)
    assert fresh.ok and "the next build compiles" in fresh.detail and "its volumes there" in fresh.detail
    build_volume = volume_names(prof, plan.torch_key)[0]
    remote.ensure_volume(build_volume, {VOLUME_LABEL: "armhf-build"})
    started = check_torch_wheel(prof, plan, place)
    assert f"started in the volume {build_volume} at ssh://builder@build-server" in started.detail
    remote.running[f"{LABEL}={compile_tag(prof, place)}"] = ["c0ffee"]
    running = check_torch_wheel(prof, plan, place)
    assert "a compile is running now at ssh://builder@build-server" in running.detail


def test_an_image_already_on_the_compile_engine_is_not_sent_again() -> None:
    from rpibuild.torch_routes.compile_place import bring_image

    here = FakeEngine()
    there = server()
    there.add_image("img", "linux/amd64", image_id="sha256:" + "f" * 64)
    place = compile_place(FakeEngine(behind_builder=there), armv7(), env={})
    lines: list[str] = []
    bring_image(here, place, "sha256:" + "f" * 64, lines.append)
    assert here.calls == [] and there.loaded == [] and lines == []
    bring_image(here, place, "sha256:" + "a" * 64, lines.append)
    assert there.loaded and lines == ["compile: copying the torch-source image to ssh://builder@build-server"]


def test_where_and_with_whom_the_compile_runs_is_not_in_the_wheels_key() -> None:
    """The same wheel, compiled elsewhere: helpers, jobs and the torch-compile stage (distcc's
    client, images/torch-compile) leave the key alone, so a stored wheel stays valid."""
    from rpibuild.planning import keys
    from rpibuild.planning.render import render

    prof = armv7()
    assert torch_wheel_key(prof) == torch_wheel_key(armv7("torch.distcc_hosts=[h1/8]", "torch.max_jobs=64"))
    chain = keys.stage_chain(render(prof).dockerfile, "torch-source")
    assert "torch-compile" not in chain and "distcc-helper" not in chain
    assert "cross" in chain  # the helper's toolchain is the compile's: the same stage


def test_only_plain_files_come_back_from_the_compile_container(tmp_path: Path) -> None:
    """What a container hands back is flattened to plain files: no links, no climbing paths."""
    import io
    import tarfile

    from rpibuild.engine.docker import extract_files

    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as archive:

        def add(name: str, body: bytes = b"", kind: bytes = tarfile.REGTYPE, link: str = "") -> None:
            info = tarfile.TarInfo(name)
            info.type, info.size, info.linkname = kind, len(body), link
            archive.addfile(info, io.BytesIO(body) if body else None)

        add("wheels", kind=tarfile.DIRTYPE)
        add("wheels/" + WHEEL, b"wheel bytes")
        add("wheels/../../escape.txt", b"x")
        add("wheels/link", kind=tarfile.SYMTYPE, link="/etc/passwd")
        add("wheels/hard", kind=tarfile.LNKTYPE, link="wheels/" + WHEEL)
    raw = data.getvalue()
    chunks = iter([raw[i : i + 700] for i in range(0, len(raw), 700)])
    written = extract_files(chunks, tmp_path / "out")
    assert sorted(p.name for p in written) == sorted([WHEEL, "escape.txt"])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted([WHEEL, "escape.txt"])
    assert (
        not (tmp_path / "escape.txt").exists() and (tmp_path / "out" / WHEEL).read_bytes() == b"wheel bytes"
    )


def test_the_engine_behind_a_builder(monkeypatch: pytest.MonkeyPatch) -> None:
    from rpibuild.engine import buildx
    from rpibuild.engine.buildx import Builder, BuilderNode

    contexts = {"server": "ssh://me@server", "default": "unix:///var/run/docker.sock"}
    monkeypatch.setattr(buildx, "_context_host", contexts.get)

    def builder(driver: str, endpoint: str, name: str = "b") -> Builder:
        return Builder(name, driver, (BuilderNode("n0", endpoint, "running", ("linux/amd64",)),))

    assert buildx.engine_address_of(builder("docker", "server", name="server")) == "ssh://me@server"
    assert buildx.engine_address_of(builder("docker-container", "server")) == "ssh://me@server"
    assert (
        buildx.engine_address_of(builder("docker-container", "tcp://10.0.0.2:2376")) == "tcp://10.0.0.2:2376"
    )
    assert buildx.engine_address_of(builder("remote", "tcp://buildkitd:1234")) is None
    assert buildx.engine_address_of(builder("kubernetes", "kubernetes:///b")) is None


def test_only_this_hosts_default_socket_mounts_host_folders(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace
    from typing import Any

    from rpibuild.engine.docker import DockerEngine

    def engine(address: str | None) -> DockerEngine:
        client: Any = SimpleNamespace(api=None)
        return DockerEngine(client, None, address)

    monkeypatch.delenv("DOCKER_HOST", raising=False)
    assert engine(None).is_local and engine("unix:///var/run/docker.sock").is_local
    assert not engine("unix:///var/tmp/engine2/docker.sock").is_local  # another engine's socket
    assert not engine("ssh://me@server").is_local
    monkeypatch.setenv("DOCKER_HOST", "tcp://server:2376")
    assert not engine(None).is_local  # the default engine, but on another machine
