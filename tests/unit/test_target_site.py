"""images/cross/target_site.py: the target's wheels installed by the build platform's pip.

The pip runs themselves are exercised by every cross build (e2e); these pin down the parts that
decide what lands in the target's venv."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import pytest

from rpibuild.config import load_profile
from rpibuild.planning.render import render
from rpibuild.planning.stages import plan_stages
from tests.unit.scripts import load_script

target_site = load_script("images/cross/target_site.py", "target_site")


def _wheel(folder: Path, requires: list[str]) -> Path:
    path = folder / "torch-2.9.1-cp313-cp313-manylinux_2_28_aarch64.whl"
    metadata = "Metadata-Version: 2.1\nName: torch\nVersion: 2.9.1\n"
    metadata += "".join(f"Requires-Dist: {line}\n" for line in requires)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("torch/__init__.py", "")
        archive.writestr("torch-2.9.1.dist-info/METADATA", metadata)
    return path


def test_dependency_markers_are_evaluated_for_the_target_machine(tmp_path: Path) -> None:
    wheel = _wheel(
        tmp_path,
        [
            "filelock",
            "sympy>=1.13.3",
            'nvidia-cublas-cu12==12.8.4.1; platform_system == "Linux" and platform_machine == "x86_64"',
            'triton==3.5.1; platform_machine == "x86_64"',
            'setuptools; python_version >= "3.12"',
            'opt-einsum>=3.3; extra == "opt-einsum"',
            'pyobjc; sys_platform == "darwin"',
        ],
    )
    # python_version is this interpreter's: the script checks it is the target's.
    modern = ["setuptools"] if sys.version_info >= (3, 12) else []
    assert target_site.target_requirements(wheel, "aarch64") == ["filelock", "sympy>=1.13.3", *modern]
    assert "triton==3.5.1" in target_site.target_requirements(wheel, "x86_64")


def test_a_file_that_is_not_a_wheel_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "torch-1-py3-none-any.whl"
    with zipfile.ZipFile(bogus, "w") as archive:
        archive.writestr("README", "")
    with pytest.raises(target_site.Failure, match=r"no \.dist-info/METADATA"):
        target_site.target_requirements(bogus, "aarch64")


def test_platform_tags_cover_manylinux_up_to_the_targets_glibc() -> None:
    tags = target_site.platform_tags("aarch64", 41)
    assert tags[0] == "manylinux_2_41_aarch64" and "manylinux_2_17_aarch64" in tags
    assert tags[-2:] == ["manylinux2014_aarch64", "linux_aarch64"]
    assert "manylinux_2_16_aarch64" not in tags
    assert target_site.platform_tags("armv6l", 36)[-1] == "linux_armv6l"
    assert "manylinux2014_armv6l" not in target_site.platform_tags("armv6l", 36)


def test_what_the_venv_has_is_pruned_with_its_scripts(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "setuptools").mkdir(parents=True)
    (site / "setuptools" / "__init__.py").write_text("")
    (site / "distutils-precedence.pth").write_text("")
    (site / "bin").mkdir()
    (site / "bin" / "setuptools-tool").write_text("#!/usr/bin/python3\n")
    info = site / "setuptools-80.9.0.dist-info"
    info.mkdir()
    (site / "setuptools" / "a,b.txt").write_text("")  # RECORD is CSV: such a name is quoted
    (info / "RECORD").write_text(
        'setuptools/__init__.py,sha256=x,0\n"setuptools/a,b.txt",,\ndistutils-precedence.pth,,\n'
        "../../bin/setuptools-tool,,\nsetuptools-80.9.0.dist-info/RECORD,,\n"
    )
    (site / "sympy").mkdir()
    (site / "sympy" / "__init__.py").write_text("")
    assert target_site.prune(site, {"setuptools"}) == ["setuptools-80.9.0.dist-info"]
    assert sorted(p.name for p in site.iterdir()) == ["sympy"]


def test_scripts_are_pointed_at_the_venvs_python(tmp_path: Path) -> None:
    script = tmp_path / "torchrun"
    script.write_text("#!/usr/bin/python3\nimport sys\n")
    shell = tmp_path / "tool.sh"
    shell.write_text("#!/bin/sh\necho hi\n")
    target_site.fix_scripts(tmp_path, "/opt/rpibuild/venv")
    assert script.read_text() == "#!/opt/rpibuild/venv/bin/python\nimport sys\n"
    assert shell.read_text() == "#!/bin/sh\necho hi\n"


def test_cross_builds_install_torch_on_the_build_platform() -> None:
    profile = load_profile("pi3b-arm64", env={}).profile
    assert "torch-install" in plan_stages(profile).names
    text = render(profile).dockerfile
    assert "FROM cross AS torch-install" in text
    torch_stage = text[text.index(" AS torch\n") : text.index(" AS qpulib-build\n")]
    # The target stage copies the installed tree and only imports it under QEMU.
    assert "pip install" not in torch_stage
    assert "COPY --from=torch-install /opt/rpibuild/venv-overlay/ /opt/rpibuild/venv/" in torch_stage
    install = text[text.index(" AS torch-install\n") : text.index(" AS torch\n")]
    assert "target_site.py download --machine aarch64" in install
    assert "--skip pip /opt" in install  # torch's dependencies (setuptools...) come with it


def test_without_cross_torch_is_pip_installed_on_the_target() -> None:
    profile = load_profile("pi3b-arm64", ["build.cross=false"], env={}).profile
    text = render(profile).dockerfile
    assert "torch-install" not in text and "torch-install" not in plan_stages(profile).names
    assert "pip install /opt/rpibuild/wheels/torch-*.whl" in text
