"""doctor, bench and check: they run and say something useful anywhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from torch_qpu import bench, check, doctor


def make_pi_root(
    tmp_path: Path, config: str, model: str = "Raspberry Pi 3 Model B Rev 1.2"
) -> Path:
    (tmp_path / "proc" / "device-tree").mkdir(parents=True)
    (tmp_path / "proc" / "device-tree" / "model").write_text(model + "\0")
    (tmp_path / "boot" / "firmware").mkdir(parents=True)
    (tmp_path / "boot" / "firmware" / "config.txt").write_text(config)
    return tmp_path


def test_doctor_flags_kms_overlay_and_gpu_mem(tmp_path: Path) -> None:
    root = make_pi_root(tmp_path, "# comment\ndtoverlay=vc4-kms-v3d,cma-128\ngpu_mem=16\n")
    checks = doctor.run_checks(root)
    by_name = {c.name: c for c in checks}
    overlay = by_name["graphics overlay"]
    assert not overlay.ok
    assert "vc4-kms-v3d" in overlay.detail and "config.txt" in overlay.fix
    assert not by_name["gpu_mem"].ok


def test_doctor_accepts_clean_config(tmp_path: Path) -> None:
    root = make_pi_root(tmp_path, "#dtoverlay=vc4-kms-v3d\ngpu_mem=128\n")
    by_name = {c.name: c for c in doctor.run_checks(root)}
    assert by_name["graphics overlay"].ok
    assert by_name["gpu_mem"].ok


def test_doctor_cli_on_this_host(capsys: pytest.CaptureFixture[str]) -> None:
    code = doctor.main([])
    text = capsys.readouterr().out
    assert "backends" in text
    assert code in (0, 1)


def test_bench_prints_tables(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--max-exp", "1", "--repeat", "1", "--quick"]) == 0
    text = capsys.readouterr().out
    assert "mv" in text and "elementwise" in text and "mm" in text and "overhead" in text


def test_check_passes_on_cpu(capsys: pytest.CaptureFixture[str]) -> None:
    assert check.main(["--backend", "cpu", "--seed", "1"]) == 0
    assert "max error" in capsys.readouterr().out
