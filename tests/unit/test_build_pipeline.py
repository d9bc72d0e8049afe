"""The build pipeline (rpibuild.build.pipeline) against a fake engine: ordering, tags, secrets, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from rpibuild.build.base import base_reference
from rpibuild.build.pipeline import build_profile, with_build_options
from rpibuild.config import load_profile
from rpibuild.config.model import Profile
from rpibuild.engine import Builder, BuildResult
from rpibuild.engine.buildx import BuilderNode
from rpibuild.errors import BuildError, ConfigError
from rpibuild.planning.plan import make_plan
from tests.unit.fake_engine import FakeEngine, failing_build, stage_timings

PASSWORD = "s3ntinel-pa55"


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RPIBUILD_CACHE", str(tmp_path / "cache"))


def profile(*overrides: str) -> Profile:
    return load_profile("pi3b-arm64", ["qpulib.enabled=false", *overrides], env={}).profile


def engine_with_base(prof: Profile) -> FakeEngine:
    """A fake engine holding the profile's bases (the target's and, for cross builds, the
    build platform's) as its plan names them."""
    engine = FakeEngine()
    for _role, base_profile in make_plan(prof).base_profiles.roles():
        engine.add_image(base_reference(base_profile), base_profile.platform)
    return engine


def test_success_tags_every_tag_after_the_build() -> None:
    prof = profile()
    engine = engine_with_base(prof)
    built = engine.add_image("built", "linux/arm64", image_id="sha256:" + "b" * 64)
    engine.build_result = BuildResult(built.id, stage_timings("system", "torch", "runtime"))
    outcome = build_profile(prof, engine)
    assert outcome.id == built.id
    assert outcome.tags == ["rpibuild/pi3b-arm64:pi3b-arm64", "rpibuild/pi3b-arm64:pi3b-arm64-torch2.9.1"]
    assert all(engine.tags[tag] == built.id for tag in outcome.tags)
    first_tag = next(i for i, call in enumerate(engine.calls) if call.startswith("tag "))
    assert engine.calls.index("build") < first_tag
    assert [s["name"] for s in outcome.as_dict()["stages"]] == ["system", "torch", "runtime"]
    request = engine.builds[0].request
    assert request.platform == "linux/arm64" and request.target is None and not request.no_cache


def test_a_failed_stage_moves_no_tag_and_gets_a_hint_and_the_log_file() -> None:
    prof = profile()
    engine = engine_with_base(prof)
    engine.build_error = failing_build(
        "torch", "sha256sum failed", ["sha256sum: WARNING: 1 computed checksum"]
    )
    with pytest.raises(BuildError) as caught:
        build_profile(prof, engine)
    assert caught.value.stage == "torch"
    assert caught.value.hint and "torch.sha256" in caught.value.hint
    assert caught.value.log_file and Path(caught.value.log_file).is_file()
    assert engine.tags == {}


def test_a_wrong_platform_result_moves_no_tag() -> None:
    prof = profile()
    engine = engine_with_base(prof)
    amd64 = engine.add_image("oops", "linux/amd64", image_id="sha256:" + "c" * 64)
    engine.build_result = BuildResult(amd64.id, stage_timings("system"))
    with pytest.raises(BuildError, match="linux/amd64, not linux/arm64"):
        build_profile(prof, engine)
    assert engine.tags == {}


def test_target_stage_tags_get_the_stage_suffix() -> None:
    prof = profile()
    engine = engine_with_base(prof)
    built = engine.add_image("ext", "linux/arm64", image_id="sha256:" + "d" * 64)
    engine.build_result = BuildResult(built.id, stage_timings("system", "extension"))
    outcome = build_profile(prof, engine, target="extension")
    assert outcome.tags[0] == "rpibuild/pi3b-arm64:pi3b-arm64-extension"
    assert engine.builds[0].request.target == "extension"


def test_index_credentials_reach_the_engine_only_as_a_secret_file() -> None:
    url = f"https://user:{PASSWORD}@index.example.invalid/simple"
    prof = profile(f"network.pip_index_url={url}")
    engine = engine_with_base(prof)
    built = engine.add_image("x", "linux/arm64", image_id="sha256:" + "e" * 64)
    engine.build_result = BuildResult(built.id, stage_timings("system"))
    build_profile(prof, engine)
    snapshot = engine.builds[0]
    assert url in snapshot.secrets["pip-conf"]
    assert not any(PASSWORD.encode() in data for data in snapshot.context_files.values())
    assert all(PASSWORD not in value for value in snapshot.request.build_args.values())
    secret_file = snapshot.request.secrets["pip-conf"]
    assert snapshot.request.context not in secret_file.parents
    assert not secret_file.exists()  # removed with the build's temporary folder


def test_proxies_are_build_args_passed_by_value_outside_the_dockerfile() -> None:
    prof = profile("network.https_proxy=http://proxy.example.invalid:3128")
    engine = engine_with_base(prof)
    built = engine.add_image("x", "linux/arm64", image_id="sha256:" + "f" * 64)
    engine.build_result = BuildResult(built.id, stage_timings("system"))
    build_profile(prof, engine)
    snapshot = engine.builds[0]
    assert snapshot.request.build_args["HTTPS_PROXY"] == "http://proxy.example.invalid:3128"
    assert b"proxy.example.invalid" not in snapshot.context_files["Dockerfile"]


def test_cache_export_on_the_docker_driver_fails_before_anything_runs() -> None:
    prof = with_build_options(profile(), None, (), ("type=local,dest=/tmp/cache",))
    engine = engine_with_base(prof)
    with pytest.raises(ConfigError, match="cannot export a build cache") as caught:
        build_profile(prof, engine)
    assert caught.value.exit_code == 2
    assert "docker-container" in (caught.value.hint or "")
    assert engine.calls == []


def test_cache_specs_reach_a_builder_that_exports() -> None:
    prof = with_build_options(
        profile(), "ci", ("type=registry,ref=reg.example.invalid/c:x",), ("type=local,dest=/tmp/c",)
    )
    assert prof.build.builder == "ci"
    engine = engine_with_base(prof)
    engine.builder = Builder("ci", "docker-container", (BuilderNode("ci0", "unix:///x", "running", ()),))
    built = engine.add_image("x", "linux/arm64", image_id="sha256:" + "a" * 64)
    engine.build_result = BuildResult(built.id, stage_timings("system"))
    build_profile(prof, engine)
    request = engine.builds[0].request
    assert request.cache_from == ("type=registry,ref=reg.example.invalid/c:x",)
    assert request.cache_to == ("type=local,dest=/tmp/c",)


def test_bad_cache_spec_on_the_command_line_is_a_usage_error() -> None:
    with pytest.raises(ConfigError, match="not a buildx cache spec") as caught:
        with_build_options(profile(), None, ("type=registry ref=x",), ())
    assert caught.value.field == "--cache-from"


def test_pinned_sources_are_fetched_before_the_engine_is_asked_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RPIBUILD_SOURCE_MIRROR", raising=False)  # the URL below is the only source
    missing = (tmp_path / "nowhere.tar.gz").as_uri()
    prof = load_profile("pi3b-arm64", [f"qpulib.url={missing}"], env={}).profile
    engine = engine_with_base(prof)
    with pytest.raises(BuildError, match="cannot download") as caught:
        build_profile(prof, engine)
    assert caught.value.stage == "sources"
    assert engine.calls == []


WHEEL = "torch-2.6.0-cp313-cp313-linux_armv7l.whl"


def armv7(*overrides: str) -> Profile:
    return load_profile("pi3b-armv7", ["qpulib.enabled=false", *overrides], env={}).profile


def compiling_engine(prof: Profile, packages: bytes = b"libgomp1\n") -> tuple[FakeEngine, str]:
    """A fake engine whose compile leaves a wheel and its package list; the id of every build."""
    engine = engine_with_base(prof)
    engine.exports = {WHEEL: b"wheel bytes", "torch-runtime-packages.txt": packages}
    built = engine.add_image("built", "linux/arm/v7", image_id="sha256:" + "e" * 64)
    engine.build_result = BuildResult(built.id, stage_timings("system", "torch", "runtime"))
    return engine, built.id


def test_debian_torch_is_compiled_once_then_taken_from_the_store(tmp_path: Path) -> None:
    prof = armv7()
    engine, built_id = compiling_engine(prof, b"libsleef3\nlibgomp1\n")

    first = build_profile(prof, engine)
    assert first.torch_wheel is not None and first.torch_wheel["compiled"] is True
    assert str(first.torch_wheel["path"]).endswith(WHEEL)
    source_request, image_request = (b.request for b in engine.builds)
    # buildx makes the compile's stage (the source, the cross toolchain and distcc's client; an
    # image of the build platform); a container of it compiles.
    assert source_request.target == "torch-compile" and source_request.platform == "linux/amd64"
    (run,) = engine.runs
    assert run["image"] == built_id and run["command"][:2] == [
        "bash",
        "/opt/rpibuild/src/torch-debian/compile.sh",
    ]
    assert "torch-build" in [stage.name for stage in first.stages]
    # The image build copies the stored wheel: no compile in its Dockerfile.
    dockerfile = engine.builds[1].context_files["Dockerfile"].decode()
    assert "AS torch-source" not in dockerfile and "compile.sh" not in dockerfile
    assert engine.builds[1].context_files[f"torch/{WHEEL}"] == b"wheel bytes"
    assert image_request.target is None and "torch-source" not in image_request.stages

    again = build_profile(prof, engine)  # a second build: straight from the store
    assert [b.request.target for b in engine.builds] == ["torch-compile", None, None]
    assert len(engine.runs) == 1
    assert again.torch_wheel == {**first.torch_wheel, "compiled": False, "from": "store"}
    assert first.torch_wheel["from"] == "compile" and first.torch_wheel["registry"] is None


def test_the_compile_keeps_its_work_in_host_folders_as_the_users_own(tmp_path: Path) -> None:
    """Not in BuildKit's cache mounts, which its garbage collection may empty between builds."""
    import os

    from rpibuild.build.sources import cache_dir
    from rpibuild.planning.render import torch_wheel_key

    prof = armv7()
    engine, _ = compiling_engine(prof)
    folders = cache_dir() / "torch-compile" / "armhf"
    leftover = folders / "build" / torch_wheel_key(prof) / "tree" / "CMakeCache.txt"
    leftover.parent.mkdir(parents=True)
    leftover.write_text("from an interrupted compile")
    another_key = folders / "build" / "0123456789abcdef01234567"
    another_key.mkdir()
    (folders / "ccache").mkdir()
    (folders / "ccache" / "object").write_text("kept")

    build_profile(prof, engine)
    (run,) = engine.runs
    mounts = {bind["bind"]: (host, bind["mode"]) for host, bind in run["volumes"].items()}
    # The key's folder, always at one path: a new key's compile hashes the same paths in ccache.
    assert mounts["/var/cache/rpibuild/torch/build"] == (str(folders / "build" / torch_wheel_key(prof)), "rw")
    assert mounts["/var/cache/rpibuild/ccache"] == (str(folders / "ccache"), "rw")
    assert run["user"] == f"{os.getuid()}:{os.getgid()}" and run["network"] is False
    assert run["command"][2:] == ["40:1:hf"]
    # torch.max_jobs unset: the engine's CPUs; no distcc without helpers.
    assert run["environment"]["MAX_JOBS"] == str(engine.ncpu) and "CCACHE_PREFIX" not in run["environment"]
    # A compile container a killed rpibuild left running is removed first (under the lock).
    label = next(call for call in engine.calls if call.startswith("remove containers"))
    assert label.split()[-1] == f"io.rpibuild.torch-compile={run['labels']['io.rpibuild.torch-compile']}"
    assert not another_key.exists()  # another key's folder: gigabytes no build will use
    # The wheel is stored: its build folder goes (gigabytes), ccache stays.
    assert not leftover.exists() and (folders / "ccache" / "object").read_text() == "kept"


def test_a_compile_resumes_in_its_build_folder_unless_no_cache(tmp_path: Path) -> None:
    from rpibuild.build.sources import cache_dir
    from rpibuild.planning.render import torch_wheel_key

    prof = armv7()
    engine = engine_with_base(prof)
    built = engine.add_image("built", "linux/arm/v7", image_id="sha256:" + "e" * 64)
    engine.build_result = BuildResult(built.id, stage_timings("cross", "torch-source"))
    folders = cache_dir() / "torch-compile" / "armhf"
    leftover = folders / "build" / torch_wheel_key(prof) / "tree" / "CMakeCache.txt"
    leftover.parent.mkdir(parents=True)
    leftover.write_text("from an interrupted compile")
    engine.run_code = 2  # interrupted again
    with pytest.raises(BuildError, match="run the build again to resume"):
        build_profile(prof, engine)
    assert leftover.is_file()
    with pytest.raises(BuildError):
        build_profile(prof, engine, no_cache=True)  # a clean build folder
    assert not leftover.exists()


def test_a_failed_torch_compile_stores_nothing_and_says_where_to_look(tmp_path: Path) -> None:
    from rpibuild.planning.render import torch_wheel_key
    from rpibuild.torch_routes.debian import stored_wheel

    prof = armv7()
    engine = engine_with_base(prof)
    engine.exports = {WHEEL: b"half a wheel"}
    built = engine.add_image("built", "linux/arm/v7", image_id="sha256:" + "e" * 64)
    engine.build_result = BuildResult(built.id, stage_timings("cross", "torch-source"))
    engine.run_lines = ["[rpibuild-ninja 7/1240] g++ x.cpp", "x.cpp:1: error: boom"]
    engine.run_code = 1
    with pytest.raises(BuildError, match="exit code 1") as caught:
        build_profile(prof, engine)
    assert caught.value.stage == "torch-build"
    assert caught.value.log_tail[-1] == "x.cpp:1: error: boom"
    assert caught.value.log_file and "x.cpp:1: error: boom" in Path(caught.value.log_file).read_text()
    assert stored_wheel(torch_wheel_key(prof)) is None and engine.tags == {}


def test_doctor_says_whether_the_torch_wheel_is_stored(tmp_path: Path) -> None:
    from rpibuild.host.doctor import check_torch_wheel
    from rpibuild.planning.plan import make_plan
    from rpibuild.planning.render import torch_wheel_key
    from rpibuild.torch_routes.debian import store
    from rpibuild.torch_routes.debian_compile import compile_folders

    prof = armv7()
    before = check_torch_wheel(prof, make_plan(prof))
    assert before.ok and before.detail.startswith("not compiled yet") and "resumes" in before.detail
    started = compile_folders(prof).build / torch_wheel_key(prof)
    started.mkdir(parents=True)
    under_way = check_torch_wheel(prof, make_plan(prof))
    assert under_way.ok and f"a compile was started in {started}" in under_way.detail
    exported = tmp_path / "exported"
    exported.mkdir()
    (exported / WHEEL).write_bytes(b"wheel bytes")
    (exported / "torch-runtime-packages.txt").write_text("libsleef3\n")
    stored = store(torch_wheel_key(prof), prof.torch.version, exported)
    after = check_torch_wheel(prof, make_plan(prof))
    assert after.ok and after.detail == f"stored: {stored.wheel}"


def test_doctor_refuses_a_buildx_older_than_what_the_code_uses(monkeypatch: pytest.MonkeyPatch) -> None:
    """--progress=rawjson needs 0.12, `buildx ls --format json` 0.13."""
    from rpibuild.engine import buildx
    from rpibuild.host.doctor import check_buildx

    assert buildx.MIN_VERSION >= (0, 13)
    monkeypatch.setattr(buildx, "version", lambda: (0, 12, 1))
    old = check_buildx()
    assert not old.ok and "older than 0.13" in old.detail and old.fix == buildx.INSTALL_HINT
    monkeypatch.setattr(buildx, "version", lambda: (0, 13, 1))
    assert check_buildx().ok
