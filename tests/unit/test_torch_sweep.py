"""benchmarks/torch_sweep.py: which wheels of the index it sweeps, and the table it prints."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.scripts import load_script

torch_sweep = load_script("benchmarks/torch_sweep.py", "rpibuild_torch_sweep")
SCRIPT = Path(torch_sweep.__file__)
Wheel = torch_sweep.Wheel


def wheel(filename: str, yanked: bool = False) -> Wheel:
    return Wheel(filename, f"https://files.example.invalid/{filename}", "0" * 64, yanked)


INDEX = [
    wheel("torch-2.5.1-cp313-cp313-manylinux_2_28_aarch64.whl"),  # before --since
    wheel("torch-2.6.0-cp313-cp313-manylinux_2_28_aarch64.whl"),
    wheel("torch-2.6.0-cp313-cp313-manylinux1_x86_64.whl"),
    wheel("torch-2.6.0-cp312-cp312-manylinux_2_28_aarch64.whl"),
    wheel("torch-2.6.0-cp313-cp313t-manylinux_2_28_aarch64.whl"),  # free-threaded
    wheel("torch-2.6.0-cp313-none-macosx_11_0_arm64.whl"),
    wheel("torch-2.7.0-cp313-cp313-manylinux_2_28_aarch64.whl", yanked=True),
    wheel("torch-2.7.1-cp313-cp313-manylinux_2_28_aarch64.whl"),
    wheel("torch-2.10.0-cp313-cp313-manylinux_2_28_aarch64.whl"),
    wheel("torch-2.10.0+cpu-cp313-cp313-manylinux_2_28_aarch64.whl"),  # local version
    wheel("torch-2.11.0rc1-cp313-cp313-manylinux_2_28_aarch64.whl"),  # pre-release
    wheel("torch-2.9.1-cp313-cp313-manylinux_2_17_aarch64.manylinux2014_aarch64.whl"),
]


def test_selects_final_cp313_manylinux_aarch64_releases_from_since_in_version_order() -> None:
    chosen = torch_sweep.select_wheels(INDEX, since="2.6.0")
    assert [w.version for w in chosen] == ["2.6.0", "2.7.1", "2.9.1", "2.10.0"]  # 2.10 after 2.9
    assert chosen[0].filename == "torch-2.6.0-cp313-cp313-manylinux_2_28_aarch64.whl"
    assert [w.version for w in torch_sweep.select_wheels(INDEX, since="2.9.0")] == ["2.9.1", "2.10.0"]


def test_explicit_versions_ignore_since_and_missing_ones_are_errors() -> None:
    chosen = torch_sweep.select_wheels(INDEX, since="2.9.0", versions=["2.5.1", "2.10.0"])
    assert [w.version for w in chosen] == ["2.5.1", "2.10.0"]
    with pytest.raises(ValueError, match=r"2\.7\.0"):  # yanked
        torch_sweep.select_wheels(INDEX, versions=["2.7.0"])
    with pytest.raises(ValueError, match="--since"):
        torch_sweep.select_wheels(INDEX, since="2.6.0rc1")


def test_release_key_orders_numerically_and_refuses_non_final_versions() -> None:
    assert torch_sweep.release_key("2.10.0") > torch_sweep.release_key("2.9.1")
    for version in ("2.11.0rc1", "2.10.0+cpu", "2.6.0.dev20240101", ""):
        assert torch_sweep.release_key(version) is None


def test_index_json_forms() -> None:
    pypi = {
        "releases": {
            "2.6.0": [
                {
                    "filename": "torch-2.6.0-cp313-cp313-manylinux_2_28_aarch64.whl",
                    "url": "../../packages/ab/torch.whl",
                    "digests": {"sha256": "a" * 64},
                },
                {"filename": "torch-2.6.0.tar.gz", "url": "s", "digests": {"sha256": "b" * 64}},
            ]
        }
    }
    assert torch_sweep.wheels_from_pypi_json(pypi, "https://pypi.example.invalid/pypi/torch/json") == [
        Wheel(
            "torch-2.6.0-cp313-cp313-manylinux_2_28_aarch64.whl",
            "https://pypi.example.invalid/packages/ab/torch.whl",
            "a" * 64,
            False,
        )
    ]
    simple = {
        "files": [
            {
                "filename": "torch-2.6.0-cp313-cp313-manylinux_2_28_aarch64.whl",
                "url": "u",
                "hashes": {"sha256": "c" * 64},
                "yanked": "broken",
            }
        ]
    }
    assert torch_sweep.wheels_from_simple_json(simple)[0].yanked is True


def test_index_url_respects_pip_index_url() -> None:
    with pytest.raises(SystemExit, match="no package index"):
        torch_sweep.index_url(None, {}, configured=lambda: None)
    assert torch_sweep.index_url(None, {}, configured=lambda: "https://pip.example.invalid/simple/") == (
        "https://pip.example.invalid/simple"
    )
    assert torch_sweep.index_url(None, {"PIP_INDEX_URL": "https://index.example.invalid/simple/"}) == (
        "https://index.example.invalid/simple"
    )
    assert torch_sweep.index_url("https://other.example.invalid/simple", {"PIP_INDEX_URL": "x"}) == (
        "https://other.example.invalid/simple"
    )


def test_table_shows_signals_skips_and_the_newest_passing_version() -> None:
    cuda = "ValueError: libcublasLt.so.*[0-9] not found in the system path ['/site']"

    def case(name: str, status: str, sig: str | None = None) -> dict[str, object]:
        return {"name": name, "status": status, "signal": sig, "message": f"{name} {status}"}

    rows = [
        ("2.9.1", {"cases": [case("import", "ok"), case("quantized_linear", "skipped")], "failed": []}),
        ("2.10.0", {"cases": [case("import", "failed", "SIGILL")], "failed": ["import"]}),
        ("2.4.0", {"cases": [case("import", "ok"), case("matmul", "failed")], "failed": ["matmul"]}),
        ("2.12.0", {"error": "download failed"}),
        ("2.15.0", {"cases": [{**case("import", "failed"), "message": cuda}], "failed": ["import"]}),
    ]
    text = torch_sweep.table(rows, ["import", "matmul", "quantized_linear"])
    lines = text.splitlines()
    assert lines[0] == "| torch | import | matmul | quantized_linear | verdict |"
    assert lines[2] == "| 2.9.1 | ok | - | skip | passes |"
    assert lines[3] == "| 2.10.0 | SIGILL | - | - | FAILS |"
    assert lines[4] == "| 2.4.0 | ok | FAIL | - | FAILS |"
    assert lines[5].endswith("| not run |")
    assert lines[6] == "| 2.15.0 | needs CUDA | - | - | FAILS |"
    assert torch_sweep.newest_passing(rows) == "2.9.1"
    assert torch_sweep.notes(rows)[0] == "2.10.0: import: import failed"


def test_dependencies_leave_out_cuda_triton_and_extras() -> None:
    metadata = "\n".join(
        [
            "Metadata-Version: 2.1",
            "Name: torch",
            "Requires-Dist: filelock",
            'Requires-Dist: sympy>=1.13.3; python_version >= "3.9"',
            'Requires-Dist: nvidia-cudnn-cu13==9.26.0.51; platform_system == "Linux"',
            'Requires-Dist: cuda-toolkit[cublas,cudart]==13.2.2; platform_system == "Linux"',
            'Requires-Dist: triton~=3.9.0; platform_system == "Linux"',
            'Requires-Dist: optree>=0.13.0; extra == "optree"',
            "",
            "Requires-Dist: in the description is not a header",
        ]
    )
    assert torch_sweep.usable_requirements(metadata) == ["filelock", 'sympy>=1.13.3; python_version >= "3.9"']
