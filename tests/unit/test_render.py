"""Rendering: golden Dockerfiles per profile, quoting, secrets kept out, context contents."""

from __future__ import annotations

import os
import re
from pathlib import Path

import jinja2
import pytest

from rpibuild.config import available_profiles, load_profile
from rpibuild.errors import ConfigError
from rpibuild.planning.naming import image_labels, image_tags
from rpibuild.planning.render import environment, render
from rpibuild.planning.stages import TARGET_STAGES
from tests.unit.dockerfile import instructions

GOLDEN = Path(__file__).parent / "golden"
# Fixed inputs so the golden files do not depend on who runs the tests.
ENV = {
    "RPIBUILD_TORCH_WHEEL": "https://wheels.example.invalid/torch-1.4.0a0+7f73f1d-cp311-cp311-linux_armv7l.whl",
    "RPIBUILD_TORCH_WHEEL_SHA256": "b" * 64,
}


@pytest.mark.parametrize("name", available_profiles())
def test_golden_dockerfile(name: str) -> None:
    """Set RPIBUILD_UPDATE_GOLDEN=1 to rewrite the files after an intended change."""
    profile = load_profile(name, ["network.ca_bundle=null"], env=ENV).profile
    text = render(profile).dockerfile
    golden = GOLDEN / f"{name}.Dockerfile"
    if os.environ.get("RPIBUILD_UPDATE_GOLDEN"):
        golden.write_text(text, encoding="utf-8")
    assert text == golden.read_text(encoding="utf-8")


def test_stages_appear_in_pipeline_order() -> None:
    text = render(load_profile("pi3b-arm64", env={}).profile).dockerfile
    positions = [text.index(f" AS {stage}\n") for stage in TARGET_STAGES]
    assert positions == sorted(positions)


def test_verify_runs_as_the_pi_core_and_runtime_is_fresh() -> None:
    text = render(load_profile("pi3b-arm64", env={}).profile).dockerfile
    verify = text[text.index("AS verify") : text.index("AS runtime")]
    runtime = text[text.index("AS runtime") :]
    assert "ENV QEMU_CPU=cortex-a53" in verify
    assert "QEMU_CPU" not in runtime
    for leak in ("pip.conf", "ca-bundle", "PROXY", "proxy", "g++"):
        assert leak not in runtime
    assert "COPY --from=verify" in runtime  # runtime cannot exist without a passed verify


def test_values_reaching_shell_lines_are_quoted() -> None:
    profile = load_profile(
        "pi3b-arm64",
        ["torch.source=source", "torch.git_ref=v2.5.1", "torch.build_env.CFLAGS=-O2; touch /pwned"],
        env={},
    ).profile
    text = render(profile).dockerfile
    assert "CFLAGS='-O2; touch /pwned'" in text
    with pytest.raises(ConfigError, match="is not a URL"):
        load_profile(
            "pi3b-arm64", ["network.apt_mirror=http://m.example.invalid/debian; touch /pwned"], env={}
        )


def test_index_credentials_are_a_buildkit_secret_not_a_file(tmp_path: Path) -> None:
    url = "https://user:t0ken@index.example.invalid/simple"
    profile = load_profile("pi3b-arm64", [f"network.pip_index_url={url}"], env={}).profile
    rendered = render(profile)
    assert "t0ken" not in rendered.dockerfile
    assert "pip.conf" not in "".join(rendered.files)
    assert all("t0ken" not in value for value in rendered.labels.values())
    # Every RUN that calls pip (itself or through target_site.py) mounts the secret; nothing COPYs it.
    pip_runs = [
        i.arguments
        for i in instructions(rendered.dockerfile)
        if i.keyword == "RUN" and (" pip " in i.arguments or "target_site.py" in i.arguments)
    ]
    assert pip_runs
    for run in pip_runs:
        if "pip wheel" in run or "--no-deps" in run:
            continue  # local builds and local wheels, no index
        assert "--mount=type=secret,id=pip-conf,target=/etc/pip.conf" in run, run
    written = rendered.write_secrets(tmp_path)
    assert url in written["pip-conf"].read_text()
    assert written["pip-conf"].stat().st_mode & 0o077 == 0


def test_no_secret_mount_without_index_settings() -> None:
    rendered = render(load_profile("pi3b-arm64", env={}).profile)
    assert "type=secret" not in rendered.dockerfile
    assert rendered.secrets == {}


def test_tags_and_labels() -> None:
    profile = load_profile("pi3b-arm64", env={}).profile
    assert image_tags(profile) == (
        "rpibuild/pi3b-arm64:pi3b-arm64",
        "rpibuild/pi3b-arm64:pi3b-arm64-torch2.9.1",
    )
    labels = image_labels(profile)
    assert labels["io.rpibuild.torch.version"] == "2.9.1"
    assert labels["io.rpibuild.qpulib.commit"] == profile.qpulib.commit
    with pytest.raises(ConfigError, match="unknown placeholder") as info:
        load_profile("pi3b-arm64", ["image.tags=['{nope}']"], env={})
    assert info.value.field == "image.tags[0]"


def test_qpulib_disabled_renders_no_qpulib_build() -> None:
    text = render(load_profile("pi3b-arm64", ["qpulib.enabled=false"], env={}).profile).dockerfile
    assert "build.sh" not in text
    assert "QPULIB_PREFIX" not in text
    assert "COPY --from=extension /usr/local/lib" not in text


def test_templates_are_strict() -> None:
    with pytest.raises(jinja2.UndefinedError):
        environment().from_string("{{ missing }}").render()


def test_write_context(tmp_path: Path) -> None:
    src = tmp_path / "qpulib-src"
    (src / "Lib").mkdir(parents=True)
    (src / "Lib" / "Kernel.h").write_text("// stand-in\n")
    profile = load_profile("pi3b-arm64", env={}).profile
    out = render(profile, qpulib_src=src).write(tmp_path / "ctx")
    assert (out / "Dockerfile").is_file()
    assert (out / "qpulib-src" / "Lib" / "Kernel.h").is_file()
    assert (out / "qpulib" / "build.sh").is_file()
    assert (out / "torch-qpu" / "setup.py").is_file()
    assert (out / "rpibuild" / "verify.py").is_file()
    assert (out / "rpibuild" / "op_sweep.py").read_bytes() == (
        Path(__file__).resolve().parents[2] / "images" / "verify" / "op_sweep.py"
    ).read_bytes()
    assert not list(out.rglob("*.so")) and not list(out.rglob("__pycache__"))
    with pytest.raises(ConfigError, match="not empty"):
        render(profile).write(out)


def test_torch_from_source_renders_every_optional_part_off() -> None:
    profile = load_profile(
        "pi3b-armv7", ["torch.source=source", "torch.git_ref=v1.4.0", "torch.max_jobs=8"], env={}
    ).profile
    text = render(profile).dockerfile
    torch = text[text.index(" AS torch") : text.index(" AS qpulib")]
    for flag in (
        "USE_CUDA=0",
        "USE_CUDNN=0",
        "USE_MKLDNN=0",
        "USE_NCCL=0",
        "USE_NNPACK=0",
        "USE_QNNPACK=0",
        "USE_DISTRIBUTED=0",
        "BUILD_TEST=0",
        "MAX_JOBS=8",
    ):
        assert flag in torch
    assert "LDFLAGS=-latomic" in torch  # 32-bit ARM: protobuf's 64-bit atomics
    assert "USE_PYTORCH_QNNPACK=0" in torch  # the bundled QNNPACK is a separate switch
    assert "--branch v1.4.0 --recurse-submodules" in torch
    assert "cp dist/torch-*.whl /opt/rpibuild/wheels/" in torch
    arm64 = render(
        load_profile("pi3b-arm64", ["torch.source=source", "torch.git_ref=v2.5.1"], env={}).profile
    )
    assert "-latomic" not in arm64.dockerfile


@pytest.mark.parametrize("cross", [True, False])
def test_emulator_tests_of_a_qpu_image_use_an_emulation_build_in_verify_only(cross: bool) -> None:
    overrides = ["verify.emulator=true", f"build.cross={str(cross).lower()}"]
    text = render(load_profile("pi3b-arm64", overrides, env={}).profile).dockerfile
    verify = text[text.index(" AS verify") : text.index(" AS runtime")]
    if cross:  # compiled beside the qpu build on the build platform, only installed in verify
        build = text[text.index(" AS extension-build") : text.index(" AS extension\n")]
        assert "QPULIB_MODE=emulation" in build and "QPULIB_MODE=emulation" not in verify
        assert "COPY --from=extension-build /opt/rpibuild/emulator /opt/rpibuild/emulator" in verify
        assert "--overlay /opt/rpibuild/emulator-overlay --no-deps" in build
    else:
        assert "QPULIB_MODE=emulation" in verify
        assert "--target /opt/rpibuild/emulator" in verify
    assert "--emulator-tests /opt/rpibuild/src/torch-qpu/tests" in verify
    assert "emulator" not in text[text.index(" AS runtime") :]


def test_verify_disabled_says_so_in_the_report() -> None:
    text = render(load_profile("pi3b-arm64", ["verify.enabled=false"], env={}).profile).dockerfile
    assert "verify.py --machine" not in text
    assert "skipped (verify.enabled: false)" in text


def test_a_percent_encoded_wheel_url_gets_its_real_file_name() -> None:
    """Package indexes write torch's local version '+cpu' as %2B in URLs; pip needs the '+'."""
    url = "https://download.example/whl/torch-2.5.1%2Bcpu-cp311-cp311-linux_aarch64.whl"
    sets = ["torch.source=wheel", f"torch.wheel={url}", "torch.sha256=" + "a" * 64, "torch.version=null"]
    profile = load_profile("pi3b-arm64", sets, env={}).profile
    assert "/opt/rpibuild/wheels/torch-2.5.1+cpu-cp311-cp311-linux_aarch64.whl" in render(profile).dockerfile
    assert image_tags(profile)[-1].endswith("-torch2.5.1_cpu")


def test_torch_from_git_renders_each_instruction_on_its_own_line() -> None:
    """The apt line's package loop once ate the line break before `RUN git clone`."""
    overrides = ["torch.source=source", "torch.git_ref=v2.5.1", "torch.version=null"]
    for cross in ("true", "false"):
        profile = load_profile("pi3b-arm64", [*overrides, f"build.cross={cross}"], env={}).profile
        text = render(profile).dockerfile
        assert "\nRUN git clone --depth 1 --branch v2.5.1 " in text and "makeRUN" not in text


def test_templates_do_not_branch_on_the_torch_route() -> None:
    """Each route's steps are one file, dockerfiles/torch/<route>.j2; the stages read the route's
    facts (rpibuild.torch_routes.ROUTES), never its name."""
    from rpibuild import resources
    from rpibuild.torch_routes import ROUTES

    folder = resources.dockerfiles_dir()
    assert {p.stem for p in (folder / "torch").glob("*.j2")} == set(ROUTES)
    for template in [folder / "Dockerfile.j2", *(folder / "stages").glob("*.j2")]:
        text = template.read_text(encoding="utf-8")
        assert not re.search(r"torch\.source\s*(==|!=|in\b|not in\b)", text), template.name
        assert not re.search(r"route\.name\s*(==|!=|in\b|not in\b)", text), template.name


def test_no_code_outside_the_route_modules_branches_on_a_route_name() -> None:
    """One module per route (rpibuild/torch_routes/<name>.py): adding a route touches that module
    and its template only. Elsewhere a route is asked for its facts, never compared by name."""
    package = Path(__file__).resolve().parents[2] / "rpibuild"
    names = "|".join(("pypi", "wheel", "debian", "source", "none"))
    comparison = re.compile(
        rf"(\.source|route\.name|\bsource)\s*(==|!=)\s*[\"']({names})[\"']"
        rf"|[\"']({names})[\"']\s*(==|!=)\s*\S*(source|route\.name)"
        r"|(\.source|route\.name)\s+(not\s+)?in\s*[\(\[{]"
    )
    offenders = [
        f"{path.relative_to(package)}:{number}: {line.strip()}"
        for path in package.rglob("*.py")
        if "torch_routes" not in path.parts and "_resources" not in path.parts
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if comparison.search(line)
    ]
    assert offenders == []


def test_a_local_mirror_with_pip_packages_replaces_the_index(tmp_path, monkeypatch) -> None:
    from rpibuild.config import load_profile
    from rpibuild.planning.plan import make_plan, render_planned
    from rpibuild.planning.render import secrets

    (tmp_path / "pip").mkdir()
    monkeypatch.setenv("RPIBUILD_SOURCE_MIRROR", str(tmp_path))
    profile = load_profile("pi3b-arm64", ["network.pip_index_url=https://idx.example/simple"]).profile
    rendered = render_planned(profile, make_plan(profile))
    assert "--mount=type=bind,source=pip-mirror,target=/opt/rpibuild/pip-mirror" in rendered.dockerfile
    assert rendered.dirs["pip-mirror"] == tmp_path / "pip"
    conf = secrets(profile)["pip-conf"]
    assert "find-links = /opt/rpibuild/pip-mirror" in conf and "no-index = true" in conf
    assert "idx.example" not in conf
    monkeypatch.setenv("RPIBUILD_SOURCE_MIRROR", str(tmp_path / "elsewhere"))
    assert "pip-mirror" not in render_planned(profile, make_plan(profile)).dockerfile


def test_an_extension_without_torch_is_not_checked_by_importing_it() -> None:
    """torch.source none: the extension is a pure-Python wheel that cannot be imported without
    torch, so verify runs its other checks only (a build of such a profile once failed there)."""
    overrides = ["torch.source=none", "qpulib.enabled=false"]
    text = render(load_profile("pi3b-armv7", overrides, env={}).profile).dockerfile
    verify = text[text.index(" AS verify\n") : text.index(" AS runtime")]
    assert "verify.py --machine armv7l" in verify and "--extension" not in verify
    with_torch = render(load_profile("pi3b-arm64", env={}).profile).dockerfile
    assert "--extension" in with_torch[with_torch.index(" AS verify\n") :]


def test_a_gathered_debian_archive_feeds_the_source_fetch_without_changing_the_wheels_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A mirror folder's debian/ (sources fetch --all) is mounted into the torch-source fetch,
    and the wheel's key stays the one of a build from the network: a host building from the
    folder finds (and shares) the wheel the gathering host compiled."""
    from rpibuild.planning.plan import make_plan, render_planned
    from rpibuild.planning.render import torch_wheel_key

    profile = load_profile("pi3b-armv7", env={}).profile
    monkeypatch.delenv("RPIBUILD_SOURCE_MIRROR", raising=False)
    plain = render_planned(profile, make_plan(profile))
    plain_key = torch_wheel_key(profile)
    (tmp_path / "debian" / "dists" / "trixie").mkdir(parents=True)
    monkeypatch.setenv("RPIBUILD_SOURCE_MIRROR", str(tmp_path))
    mirrored = render_planned(profile, make_plan(profile))
    mount = "--mount=type=bind,source=debian-archive,target=/opt/rpibuild/debian-archive"
    fetch = [i.arguments for i in instructions(mirrored.dockerfile) if "fetch.sh pytorch" in i.arguments]
    assert len(fetch) == 1 and mount in fetch[0]
    assert mount not in plain.dockerfile
    assert mirrored.dirs["debian-archive"] == tmp_path / "debian"
    assert torch_wheel_key(profile) == plain_key
    arm64 = load_profile("pi3b-arm64", env={}).profile  # a profile that fetches no Debian source
    assert "debian-archive" not in render_planned(arm64, make_plan(arm64)).dockerfile
