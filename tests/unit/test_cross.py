"""Cross builds (build.cross): which stages run where, the torch build key, ELF gate, progress."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from rpibuild import resources
from rpibuild.build.base import base_reference
from rpibuild.config import load_profile
from rpibuild.engine.progress import BuildEvent, BuildProgress, CompileMeter
from rpibuild.errors import ConfigError
from rpibuild.host.build_platform import cross_base_profile
from rpibuild.planning.render import render, torch_wheel_key
from rpibuild.planning.stages import TARGET_STAGES, check_cross, plan_stages, wants_cross
from tests.unit.dockerfile import instructions
from tests.unit.scripts import image_side

VERIFY_DIR = resources.images_dir() / "verify"


def _stage_platforms(text: str) -> dict[str, str]:
    """stage name -> the --platform of its FROM ('' = the build's target platform)."""
    found = {}
    for line in text.splitlines():
        if line.startswith("FROM "):
            parts = line.split()
            platform = next((p.split("=", 1)[1] for p in parts if p.startswith("--platform=")), "")
            found[parts[-1]] = platform
    return found


def test_cross_is_the_default_and_build_platform_stages_say_so() -> None:
    profile = load_profile("pi3b-arm64", env={}).profile
    assert profile.build.cross and wants_cross(profile)
    text = render(profile).dockerfile
    platforms = _stage_platforms(text)
    for stage in ("cross", "qpulib-build", "extension-build"):
        assert stage in platforms
    assert platforms["cross"] == "$BUILDPLATFORM"
    # qpulib-build and extension-build start FROM cross (so they inherit its platform); every
    # target stage has no --platform and so runs as linux/arm64.
    for stage in ("system", "torch", "qpulib", "extension", "verify", "runtime"):
        assert platforms[stage] == ""
    assert "FROM cross AS qpulib-build" in text
    assert "FROM qpulib-build AS extension-build" in text
    assert "aarch64-linux-gnu-g++" in text
    assert "crossbuild-essential-arm64" in text and "libpython3-dev:arm64" in text
    # The target stages compile nothing: qpulib copies, extension pip-installs a wheel.
    qpulib_stage = text.split("AS qpulib\n", 1)[1].split("\nFROM ", 1)[0]
    assert "build.sh" not in qpulib_stage and "COPY --from=qpulib-build" in qpulib_stage


def test_cross_false_keeps_everything_under_qemu() -> None:
    profile = load_profile("pi3b-arm64", ["build.cross=false"], env={}).profile
    text = render(profile).dockerfile
    assert "BUILDPLATFORM" not in text and "qpulib-build" not in text
    assert plan_stages(profile).names == TARGET_STAGES
    assert "bash /opt/rpibuild/src/qpulib/build.sh" in text


def test_rendered_cross_dockerfile_parses() -> None:
    for name in ("pi3b-arm64", "pi3b-armv7"):
        parsed = instructions(render(load_profile(name, env={}).profile).dockerfile)
        assert parsed[0].keyword == "FROM"
        assert sum(1 for i in parsed if i.keyword == "FROM") >= 8


def test_stage_lists() -> None:
    arm64 = load_profile("pi3b-arm64", env={}).profile
    assert plan_stages(arm64).names[:4] == ("cross", "torch-install", "qpulib-build", "extension-build")
    armv7 = load_profile("pi3b-armv7", env={}).profile
    assert plan_stages(armv7).names[:3] == ("cross", "torch-source", "torch-c10")
    assert "torch-source" not in plan_stages(armv7, torch_stored=True).names


def test_cross_base_is_the_same_suite_on_the_build_platform() -> None:
    profile = load_profile("pi3b-armv7", env={}).profile
    build = cross_base_profile(profile)
    assert build.platform == "linux/amd64"
    assert build.base.bootstrap == profile.base.bootstrap
    assert base_reference(build).startswith("rpibuild/base:trixie-amd64-")
    assert base_reference(build) != base_reference(profile)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["platform=linux/arm/v6", "verify.qemu_cpu=arm1176"], "no Debian cross toolchain"),
        (["build.cross=false"], "needs build.cross: true"),
        (["base.image=example.invalid/pi:1", "base.bootstrap=null"], "needs base.bootstrap"),
    ],
)
def test_cross_settings_that_cannot_work_are_refused(overrides: list[str], message: str) -> None:
    profile = load_profile("pi3b-armv7", overrides, env={}).profile
    with pytest.raises(ConfigError) as caught:
        check_cross(profile)
    assert message in str(caught.value)
    assert caught.value.field == "build.cross"


def test_bookworm_stays_selectable() -> None:
    profile = load_profile("pi3b-arm64", ["base.bootstrap.suite=bookworm"], env={}).profile
    text = render(profile).dockerfile
    assert "rpibuild/base:bookworm-arm64-" in text and "rpibuild/base:bookworm-amd64-" in text


def _home_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of rpibuild's profiles, templates and context files, for a test to edit."""
    home = tmp_path / "home"
    for folder in ("configs", "dockerfiles", "images"):
        shutil.copytree(
            resources.home() / folder, home / folder, ignore=shutil.ignore_patterns("__pycache__")
        )
    monkeypatch.setenv("RPIBUILD_HOME", str(home))
    return home


# Every input of the armv7 wheel, each edited in turn: the stages that build it (torch-source
# and cross, with the macros they use), every file they copy in, and compile.sh.
WHEEL_INPUT_FILES = (
    "dockerfiles/stages/torch-source.j2",
    "dockerfiles/stages/cross.j2",
    "dockerfiles/macros.j2",
    "images/torch-debian/fetch.sh",
    "images/torch-debian/build.sh",
    "images/torch-debian/compile.sh",
    "images/torch-debian/runtime_packages.py",
    "images/torch-debian/wheel_packages.py",
    "images/torch-debian/patches/series",
    "images/torch-debian/patches/0001-save-for-backward-format-32bit.patch",
    "images/verify/elf_gate.py",
    "rpibuild/export/elf.py",  # the ELF reader elf_gate.py and runtime_packages.py import
)


def test_torch_build_key_follows_everything_that_goes_into_the_wheel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rpibuild.export import elf
    from rpibuild.planning import render as render_module

    home = _home_copy(tmp_path, monkeypatch)
    # The ELF reader is part of the package, not of the data folders: the copy's is used.
    reader = home / "rpibuild" / "export" / "elf.py"
    reader.parent.mkdir(parents=True)
    reader.write_bytes(Path(elf.__file__).read_bytes())
    monkeypatch.setattr(elf, "__file__", str(reader))

    def key(*overrides: str) -> str:
        return torch_wheel_key(load_profile("pi3b-armv7", list(overrides), env={}).profile)

    first = key()
    assert len(first) == 24 and first == key()
    # How fast, what the image is called, the extension, QPULib and the target's own stages
    # do not change the wheel.
    assert first == key("torch.max_jobs=1") == key("image.repository=a/b") == key("qpulib.enabled=false")
    assert first == key("apt.packages=[python3]") == key("verify.enabled=false")
    seen = {first}
    for override in (
        "torch.version=2.6.0+dfsg-8",
        "base.bootstrap.suite=forky",
        "base.bootstrap.mirror=http://mirror.example/debian",
        "base.bootstrap.packages=[python3,ca-certificates]",
    ):
        assert key(override) not in seen, f"{override} is not in the key"
        seen.add(key(override))
    for relative in WHEEL_INPUT_FILES:
        path = home / relative
        before = path.read_bytes()
        if relative.endswith("macros.j2"):  # a macro's text counts where a stage uses it
            edited = before.replace(b"sharing=locked", b"sharing=private")
        elif relative.endswith(".j2"):  # an instruction in the wheel's stages
            edited = re.sub(rb"( AS (cross|torch-source)\n)", rb"\1RUN true\n", before)
        else:
            edited = before + b"\n# changed\n"
        assert edited != before
        path.write_bytes(edited)
        changed = key()
        assert changed not in seen, f"editing {relative} did not change the key"
        seen.add(changed)
        path.write_bytes(before)
        assert key() == first
    path = home / "images" / "torch-debian" / "build.sh"
    path.chmod(path.stat().st_mode ^ 0o100)  # the executable bit is copied in too
    assert key() != first
    path.chmod(path.stat().st_mode ^ 0o100)
    # The package lists that go into the cross and torch-source stages.
    from rpibuild.torch_routes import debian

    for module, name in ((debian, "TORCH_BUILD_PACKAGES"), (render_module, "CROSS_PACKAGES")):
        original = getattr(module, name)
        monkeypatch.setattr(module, name, (*original, "libextra-dev:{arch}"))
        assert key() not in seen, f"{name} is not in the key"
        monkeypatch.setattr(module, name, original)
    # Nor the extension's sources, nor a rewording of a comment in a stage.
    (home / "images" / "torch-qpu" / "setup.py").write_text("# changed\n")
    torch_source = home / "dockerfiles" / "stages" / "torch-source.j2"
    torch_source.write_text(torch_source.read_text().replace("# ---- torch-source", "# ---- torch source"))
    assert key() == first


def test_a_copy_the_context_does_not_hold_is_an_error_not_a_gap_in_the_key() -> None:
    from rpibuild.planning.keys import context_inputs

    with pytest.raises(KeyError, match="no such file"):
        context_inputs(["torch-debian/missing.sh"], {}, {"torch-debian": resources.images_dir() / "x"})


def test_debian_source_needs_a_version() -> None:
    with pytest.raises(ConfigError) as caught:
        load_profile("pi3b-armv7", ["torch.version=null"], env={})
    assert "needs torch.version" in str(caught.value)


def test_compile_progress_lines_become_counts() -> None:
    events: list[BuildEvent] = []
    progress = BuildProgress(on_event=events.append)
    vertex = {
        "digest": "sha256:1",
        "name": "[torch-build 4/5] RUN build.sh",
        "started": "2026-12-01T10:00:00Z",
    }
    progress.feed({"vertexes": [vertex]})
    import base64

    lines = b"[rpibuild-ninja 41/1240] g++ -c a.cpp\nwarning: something\n"
    progress.feed({"logs": [{"vertex": "sha256:1", "data": base64.b64encode(lines).decode()}]})
    compiled = [e.compiled for e in events if not e.is_step]
    assert compiled == [(41, 1240), None]


def test_compile_meter_measures_only_this_runs_rate() -> None:
    meter = CompileMeter()
    assert meter.update(100.0, 600, 1200) == (0.0, None)  # resumed at 600: no rate yet
    elapsed, left = meter.update(160.0, 660, 1200)
    assert elapsed == 60.0 and left == pytest.approx(540.0)  # 1 step/s, 540 to go


def _compile_shared_object(tmp_path: Path) -> Path:
    source = tmp_path / "tiny.c"
    source.write_text("#include <math.h>\ndouble tiny(double x) { return sqrt(x); }\n")
    output = tmp_path / "libtiny.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(output), str(source), "-lm"], check=True)
    return output


def _elf_gate(*args: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory() as folder:
        opt = image_side(Path(folder))
        return subprocess.run(
            [sys.executable, str(opt / "elf_gate.py"), *args],
            capture_output=True,
            text=True,
            check=False,
            cwd=opt,
        )


def test_elf_gate_checks_machine_and_lists_needed_libraries(tmp_path: Path) -> None:
    library = _compile_shared_object(tmp_path)
    host = _elf_gate("--elf", "62:2", str(library))
    assert host.returncode == 0, host.stderr
    assert "1 ELF files OK" in host.stdout
    needed = _elf_gate("--elf", "62:2", "--needed", str(tmp_path))
    assert needed.returncode == 0 and "libm.so.6" in needed.stdout.split()
    wrong = _elf_gate("--elf", "40:1:hf", str(library))
    assert wrong.returncode == 1
    assert "ELF machine 62 class 2, expected 40 class 1" in wrong.stderr


def test_elf_gate_refuses_an_empty_input(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no ELF here\n")
    result = _elf_gate("--elf", "40:1:hf", str(tmp_path))
    assert result.returncode == 1 and "no ELF files" in result.stderr


def _system_stage(text: str) -> str:
    start = text.index(" AS system\n")
    return text[start : text.index("\n# ---- ", start)]


def test_target_stages_get_compilers_only_when_they_compile() -> None:
    """Compilers are folded into the target's build base only when the target compiles; the
    runtime base never has them; no target stage installs anything with apt."""
    from rpibuild.planning.plan import make_plan

    def packages(plan: object, role: str) -> list[str]:
        profiles = dict(plan.base_profiles.roles())  # type: ignore[attr-defined]
        return profiles[role].base.bootstrap.packages

    cross_profile = load_profile("pi3b-arm64", env={}).profile
    cross = make_plan(cross_profile)
    assert [role for role, _ in cross.base_profiles.roles()] == ["target", "build platform"]
    assert "g++" not in packages(cross, "target") and "python3-dev" not in packages(cross, "target")
    assert "apt-get" not in _system_stage(render(cross_profile).dockerfile)
    qemu_profile = load_profile("pi3b-arm64", ["build.cross=false"], env={}).profile
    qemu = make_plan(qemu_profile)
    assert {"g++", "make", "python3-dev"} <= set(packages(qemu, "target"))
    assert "g++" not in packages(qemu, "runtime") and "libgomp1" in packages(qemu, "runtime")
    text = render(qemu_profile).dockerfile
    assert "apt-get" not in text[: text.index(" AS runtime\n")]
    # A target this host runs natively compiles in place: no cross stage at all.
    native = load_profile("host-emulator", env={}).profile
    assert not wants_cross(native) and "AS cross" not in render(native).dockerfile


def test_without_torch_or_qpulib_nothing_compiles_so_there_is_no_toolchain() -> None:
    """torch.source none and no QPULib: the extension is a pure-Python wheel, so neither the
    cross stage nor the target's compilers are there (a bootstrap and two apt installs fewer)."""
    pure = load_profile("pi3b-armv7", ["torch.source=none", "qpulib.enabled=false"], env={}).profile
    assert pure.extension.enabled and not wants_cross(pure)
    dockerfile = render(pure).dockerfile
    assert "AS cross" not in dockerfile and " g++ " not in dockerfile
    assert "pip wheel --no-deps --no-build-isolation" in dockerfile  # built in the target, no C++
    with_qpulib = load_profile("pi3b-armv7", ["torch.source=none"], env={}).profile
    assert wants_cross(with_qpulib)


def _tiny_wheel(folder: Path) -> Path:
    """A minimal valid wheel: METADATA, WHEEL and a RECORD with every file's hash."""
    import base64
    import hashlib
    import zipfile

    path = folder / "torch-2.6.0-cp313-cp313-linux_armv7l.whl"
    info = "torch-2.6.0.dist-info"
    files = {
        "torch/__init__.py": b"",
        f"{info}/METADATA": b"Metadata-Version: 2.1\nName: torch\nVersion: 2.6.0\n",
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\n"
        b"Tag: cp313-cp313-linux_armv7l\n",
    }
    record = ""
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record += f"{name},sha256={digest},{len(data)}\n"
    record += f"{info}/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
        archive.writestr(f"{info}/RECORD", record)
    return path


def _wheel_packages(*args: str) -> subprocess.CompletedProcess[str]:
    script = resources.images_dir() / "torch-debian" / "wheel_packages.py"
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, check=False)


def test_a_wheel_carries_its_debian_runtime_packages(tmp_path: Path) -> None:
    wheel = _tiny_wheel(tmp_path)
    listing = tmp_path / "packages.txt"
    listing.write_text("libsleef3\nlibopenblas0-pthread\n")
    embedded = _wheel_packages("embed", str(wheel), str(listing))
    assert embedded.returncode == 0, embedded.stderr
    out = tmp_path / "out.txt"
    assert _wheel_packages("extract", str(wheel), str(out)).returncode == 0
    assert out.read_text().split() == ["libsleef3", "libopenblas0-pthread"]
    import zipfile

    with zipfile.ZipFile(wheel) as archive:  # RECORD was rewritten and names the new file
        record = archive.read("torch-2.6.0.dist-info/RECORD").decode()
    assert "rpibuild-debian-packages.txt,sha256=" in record


def test_a_wheel_without_a_list_means_no_packages_and_bad_names_are_refused(tmp_path: Path) -> None:
    wheel = _tiny_wheel(tmp_path)
    out = tmp_path / "out.txt"
    assert _wheel_packages("extract", str(wheel), str(out)).returncode == 0
    assert out.read_text() == ""
    listing = tmp_path / "bad.txt"
    listing.write_text("libfoo; rm -rf /\n")
    refused = _wheel_packages("embed", str(wheel), str(listing))
    assert refused.returncode != 0 and "not Debian package names" in refused.stderr


def test_the_c10_check_has_its_own_locked_cache_mounts() -> None:
    """A shared cache mount id can come to hold several copies in BuildKit, later builds
    getting whichever it finds first: the c10 check's build folder and ccache are its own and
    locked, and QPULib/extension compiles never touch them. The wheel's compile is not in
    the Dockerfile at all (a container with host folders: rpibuild/torch_routes/debian_compile.py)."""
    dockerfile = render(load_profile("pi3b-armv7", env={}).profile).dockerfile
    runs = {line.split(" AS ")[1]: [] for line in dockerfile.splitlines() if line.startswith("FROM ")}
    stage = ""
    for line in dockerfile.splitlines():
        if line.startswith("FROM "):
            stage = line.split(" AS ")[1]
        elif "--mount=type=cache" in line:
            runs[stage].append(line)
    assert "torch-build" not in runs and "bash /opt/rpibuild/src/torch-debian/compile.sh" not in dockerfile
    c10 = [
        line for line in runs["torch-c10"] if "build.sh --only c10" in line or "rpibuild-torch-c10" in line
    ]
    assert c10 and all(
        "id=rpibuild-torch-c10-build-armhf,target=/var/cache/rpibuild/torch,sharing=locked" in line
        and "id=rpibuild-torch-c10-ccache-armhf,target=/var/cache/rpibuild/ccache,sharing=locked" in line
        for line in c10
    )
    for name in ("qpulib-build", "extension-build"):
        assert runs[name] and all("rpibuild-torch-" not in line for line in runs[name])
        assert any("id=rpibuild-ccache-armhf" in line for line in runs[name])


def test_each_torch_patch_exists_and_says_why() -> None:
    folder = resources.images_dir() / "torch-debian" / "patches"
    series = (folder / "series").read_text(encoding="utf-8").splitlines()
    names = [line.split()[0] for line in series if line.strip() and not line.startswith("#")]
    assert names, "the 32-bit ARM patch set is empty"
    for name in names:
        text = (folder / name).read_text(encoding="utf-8")
        assert text.startswith("Why: "), f"{name} does not say why it is needed"
        assert "\n--- a/" in text and "\n+++ b/" in text, f"{name} is not a -p1 unified diff"
