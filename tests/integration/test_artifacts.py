"""``rpibuild artifacts`` against real armv7 images: hashes, ELF machines, missing libqpu.

The extension-stage layout is faked on top of the bootstrapped armhf base (real ARM ELF
files: the base's own /bin/ls as libqpu and inside the wheels), which takes seconds under
QEMU where a real extension build takes many minutes. A second image carries an x86-64
library inside its torch wheel, which the ELF check must catch.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from _derived import build_derived, copy_from_image

from rpibuild.build.base import BaseImage
from rpibuild.config import load_profile
from rpibuild.config.model import Profile
from rpibuild.engine import Engine
from rpibuild.errors import BuildError, ConfigError, ImageMissing
from rpibuild.export.artifacts import MANIFEST, collect, collect_from_image

DOCKERFILE = """\
FROM {base}
COPY wheels/ /opt/rpibuild/wheels/
COPY include/ /usr/local/include/qpulib/
RUN set -e; mkdir -p /usr/local/lib/python3.11 /usr/local/share/qpulib; \\
    cp /bin/ls /usr/local/lib/libqpu.so.1; ln -s libqpu.so.1 /usr/local/lib/libqpu.so; \\
    echo 'not-qpu' > /usr/local/lib/libother.so; \\
    printf 'commit=local\\nmode=qpu\\n' > /usr/local/share/qpulib/build-info
LABEL io.rpibuild.profile=good io.rpibuild.qpulib.commit=from-the-label
"""


@dataclass(frozen=True)
class Images:
    repository: str
    good: str  # extension-stage layout with ARM files only
    bad: str  # the torch wheel carries an x86-64 library


@pytest.fixture(autouse=True)
def _remove_outputs(tmp_path: Path) -> Iterator[None]:
    yield
    shutil.rmtree(tmp_path, ignore_errors=True)


def make_wheel(path: Path, files: dict[str, bytes]) -> Path:
    project, version = path.name.split("-")[:2]
    files = {
        **files,
        f"{project}-{version}.dist-info/METADATA": f"Name: {project}\nVersion: {version}\n".encode(),
    }
    with zipfile.ZipFile(path, "w") as wheel:
        for name, data in files.items():
            wheel.writestr(name, data)
    return path


@pytest.fixture(scope="module")
def images(
    engine: Engine, armhf_base: BaseImage, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Images]:
    work = tmp_path_factory.mktemp("artifacts-images")
    arm = copy_from_image(armhf_base.image, "/bin/ls", work / "arm-ls").read_bytes()
    x86 = Path(shutil.which("ls") or "/bin/ls").read_bytes()
    repository = f"rpibuild-test/artifacts-{uuid.uuid4().hex[:8]}"
    made = []
    for name, torch_lib in (("good", arm), ("bad", x86)):
        context = work / name
        (context / "wheels").mkdir(parents=True)
        (context / "include").mkdir()
        (context / "include" / "QPULib.h").write_text("// QPULib\n")
        make_wheel(
            context / "wheels" / "torch_qpu-0.1.0-cp311-cp311-linux_armv7l.whl",
            {"torch_qpu/__init__.py": b"", "torch_qpu/_C.cpython-311-arm-linux-gnueabihf.so": arm},
        )
        make_wheel(
            context / "wheels" / "torch-2.5.1-cp311-cp311-linux_armv7l.whl",
            {"torch/__init__.py": b"", "torch/lib/libtorch_cpu.so": torch_lib, "torch/lib/libc10.so.1": arm},
        )
        tag = f"{repository}:{name}-extension"
        build_derived(engine, context, DOCKERFILE.format(base=armhf_base.image), tag)
        made.append(tag)
    yield Images(repository, *made)
    for tag in made:
        engine.remove_image(tag, force=True)
    shutil.rmtree(work, ignore_errors=True)


def profile_for(tmp_path: Path, repository: str, name: str, *overrides: str) -> tuple[Path, Profile]:
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        "description: fake extension layout\nplatform: linux/arm/v7\n"
        "base: {bootstrap: {suite: bookworm, variant: minbase}}\n"
        "torch: {source: none}\nqpulib: {enabled: true, mode: qpu}\nextension: {enabled: true}\n"
        f"image: {{repository: {repository}, tags: ['{{profile}}']}}\n",
        encoding="utf-8",
    )
    return path, load_profile(path, list(overrides), env={}).profile


def _containers(engine: Engine) -> set[str]:
    return {c.id for c in engine.client.containers.list(all=True)}


def test_manifest_describes_every_file(engine: Engine, images: Images, tmp_path: Path) -> None:
    before = _containers(engine)
    _, profile = profile_for(tmp_path, images.repository, "good")
    out = tmp_path / "out"
    out.mkdir()
    result = collect_from_image(profile, engine, images.good, out)
    assert _containers(engine) <= before, "the container was not removed"
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest == result.manifest
    paths = {entry["path"]: entry for entry in manifest["files"]}
    assert set(paths) == {
        "lib/libqpu.so",
        "lib/libqpu.so.1",
        "include/qpulib/QPULib.h",
        "share/qpulib/build-info",
        "wheels/torch-2.5.1-cp311-cp311-linux_armv7l.whl",
        "wheels/torch_qpu-0.1.0-cp311-cp311-linux_armv7l.whl",
    }
    assert paths["lib/libqpu.so"] == {"path": "lib/libqpu.so", "kind": "library", "symlink": "libqpu.so.1"}
    assert (out / "lib/libqpu.so").is_symlink()
    for entry in manifest["files"]:
        if "symlink" in entry:
            continue
        data = (out / entry["path"]).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest(), entry["path"]
        assert entry["size"] == len(data)
    lib = paths["lib/libqpu.so.1"]["elf"]
    assert (lib["machine"], lib["machine_name"], lib["class"], lib["float_abi"]) == (40, "ARM", 32, "hard")
    assert paths["include/qpulib/QPULib.h"]["elf"] is None
    inner = paths["wheels/torch_qpu-0.1.0-cp311-cp311-linux_armv7l.whl"]["shared_objects"]
    assert [o["path"] for o in inner] == ["torch_qpu/_C.cpython-311-arm-linux-gnueabihf.so"]
    with zipfile.ZipFile(out / "wheels/torch_qpu-0.1.0-cp311-cp311-linux_armv7l.whl") as wheel:
        data = wheel.read(inner[0]["path"])
    assert inner[0]["sha256"] == hashlib.sha256(data).hexdigest()
    assert inner[0]["elf"]["machine"] == 40
    assert manifest["elf_check"] == {
        "expected": "ARM (40) 32-bit hard-float",
        "checked": 4,  # libqpu.so.1, the extension's _C, torch's two libraries
        "mismatches": [],
    }
    assert manifest["platform"] == "linux/arm/v7"
    assert manifest["profile"] == "good"
    assert manifest["image"]["id"] == engine.image(images.good).id  # type: ignore[union-attr]
    assert manifest["image"]["stage"] == "extension"
    assert manifest["versions"]["torch"] == "2.5.1"
    assert manifest["versions"]["torch_qpu"] == "0.1.0"
    assert manifest["qpulib"] == {"enabled": True, "mode": "qpu", "library": "lib/libqpu.so.1"}
    assert manifest["labels"]["io.rpibuild.profile"] == "good"
    assert manifest["labels_source"] == "profile"  # no runtime image here
    # The SBOM of the image (no runtime image here: the extension one) lists its Debian packages.
    assert manifest["sbom"]["path"] == "sbom.cdx.json" and manifest["sbom"]["image"] == images.good
    sbom = json.loads((out / "sbom.cdx.json").read_text())
    assert sbom["bomFormat"] == "CycloneDX"
    debs = {c["name"] for c in sbom["components"] if c.get("purl", "").startswith("pkg:deb/")}
    assert {"dpkg", "libc6", "base-files"} <= debs


def test_disabled_qpulib_is_said_not_failed(engine: Engine, images: Images, tmp_path: Path) -> None:
    _, profile = profile_for(tmp_path, images.repository, "good", "qpulib.enabled=false")
    out = tmp_path / "out"
    out.mkdir()
    result = collect_from_image(profile, engine, images.good, out)
    assert not (out / "lib").exists() and not (out / "include").exists()
    assert result.manifest["qpulib"]["enabled"] is False  # type: ignore[index]
    assert "no libqpu" in result.manifest["qpulib"]["note"]  # type: ignore[index]
    assert {p.name for p in (out / "wheels").iterdir()} == {
        "torch-2.5.1-cp311-cp311-linux_armv7l.whl",
        "torch_qpu-0.1.0-cp311-cp311-linux_armv7l.whl",
    }


def test_wrong_machine_fails_after_writing_the_manifest(
    engine: Engine, images: Images, tmp_path: Path
) -> None:
    _, profile = profile_for(tmp_path, images.repository, "bad")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(BuildError) as info:
        collect_from_image(profile, engine, images.bad, out)
    assert "not for linux/arm/v7" in info.value.message
    assert "libtorch_cpu.so is x86-64 (62) 64-bit, not ARM (40) 32-bit hard-float" in info.value.message
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["elf_check"]["mismatches"] == [
        "wheels/torch-2.5.1-cp311-cp311-linux_armv7l.whl!torch/lib/libtorch_cpu.so "
        "is x86-64 (62) 64-bit, not ARM (40) 32-bit hard-float"
    ]


def test_missing_files_are_named(engine: Engine, armhf_base: BaseImage, tmp_path: Path) -> None:
    _, profile = profile_for(tmp_path, "rpibuild-test/none", "base")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(BuildError) as info:
        collect_from_image(profile, engine, armhf_base.image, out)
    assert "/usr/local/lib/libqpu.so*" in info.value.message
    assert "/opt/rpibuild/wheels/torch_qpu-*.whl" in info.value.message
    assert info.value.hint and "--target extension" in info.value.hint


def test_rootfs_tarball_is_listed(engine: Engine, images: Images, tmp_path: Path) -> None:
    _, profile = profile_for(tmp_path, images.repository, "good")
    runtime = f"{images.repository}:good"
    engine.tag(images.good, runtime)  # stands in for the runtime image
    try:
        result = collect(profile, engine, tmp_path / "out", build=False, rootfs=True)
    finally:
        engine.remove_image(runtime)
    entry = next(e for e in result.manifest["files"] if e["kind"] == "rootfs")  # type: ignore[attr-defined]
    tarball = tmp_path / "out" / "rootfs" / "good.tar.zst"
    assert entry["path"] == "rootfs/good.tar.zst"
    assert entry["sha256"] == hashlib.sha256(tarball.read_bytes()).hexdigest()
    assert result.manifest["runtime_image"]["reference"] == runtime  # type: ignore[index]
    assert result.manifest["labels_source"] == "runtime image"
    assert result.manifest["versions"]["qpulib"] == "from-the-label"  # type: ignore[index]


def test_cli_no_build(engine: Engine, images: Images, tmp_path: Path) -> None:
    path, _ = profile_for(tmp_path, images.repository, "good")
    out = tmp_path / "out"
    cli = subprocess.run(
        [sys.executable, "-m", "rpibuild", "artifacts", "-p", str(path), str(out), "--no-build", "--json"],
        capture_output=True,
        text=True,
    )
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout) == json.loads((out / MANIFEST).read_text())
    again = subprocess.run(
        [sys.executable, "-m", "rpibuild", "artifacts", "-p", str(path), str(out), "--no-build"],
        capture_output=True,
        text=True,
    )
    assert again.returncode == ConfigError.exit_code
    assert "not an empty folder" in again.stderr


def test_cli_reports_wrong_machine_and_missing_image(engine: Engine, images: Images, tmp_path: Path) -> None:
    path, _ = profile_for(tmp_path, images.repository, "bad")
    cli = subprocess.run(
        [sys.executable, "-m", "rpibuild", "artifacts", "-p", str(path), str(tmp_path / "o1"), "--no-build"],
        capture_output=True,
        text=True,
    )
    assert cli.returncode == BuildError.exit_code
    assert "x86-64 (62) 64-bit, not ARM (40) 32-bit hard-float" in cli.stderr
    assert "Traceback" not in cli.stderr
    assert (tmp_path / "o1" / MANIFEST).is_file()
    missing, _ = profile_for(tmp_path, images.repository, "never-built")
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "rpibuild",
            "artifacts",
            "-p",
            str(missing),
            str(tmp_path / "o2"),
            "--no-build",
        ],
        capture_output=True,
        text=True,
    )
    assert cli.returncode == ImageMissing.exit_code
    assert "rpibuild build -p never-built --target extension" in cli.stderr
