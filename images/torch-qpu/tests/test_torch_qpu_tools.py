"""doctor, bench and check: they run and say something useful anywhere."""

from __future__ import annotations

from pathlib import Path

import pytest

import torch_qpu
from torch_qpu import bench, check, doctor, ops


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
    failing = [c for c in doctor.run_checks() if c.ok is False]
    code = doctor.main([])
    text = capsys.readouterr().out
    assert f"backends usable here: {', '.join(torch_qpu.available_backends())}" in text
    assert code == (1 if failing else 0)
    for finding in failing:
        assert f"[FAIL] {finding.name}: {finding.detail}" in text
    assert ("qpu backend: cannot run" in text) == bool(failing)


def test_doctor_fails_off_a_pi(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert doctor.main(["--root", str(tmp_path)]) == 1
    assert "not a Raspberry Pi" in capsys.readouterr().out


def test_bench_prints_tables(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--max-exp", "1", "--repeat", "1", "--quick"]) == 0
    text = capsys.readouterr().out
    assert "mv" in text and "elementwise" in text and "mm" in text and "overhead" in text
    dispatch = text.split("dispatch overhead")[1].split("\n\n")[0].splitlines()[2:]
    backends = [line.split()[0] for line in dispatch]
    assert backends and set(backends) == set(torch_qpu.available_backends()), dispatch


@pytest.mark.parametrize("backend", torch_qpu.available_backends())
def test_check_passes(backend: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert check.main(["--backend", backend, "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert f"backend {backend}" in out and "all ops match torch" in out


def test_check_reports_a_mismatch(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real_mv = ops.mv
    monkeypatch.setattr(ops, "mv", lambda *a, **k: real_mv(*a, **k) + 1e-2)
    assert check.main(["--backend", "cpu"]) == 1
    out = capsys.readouterr().out
    assert "mv 100x100" in out and "MISMATCH" in out


def test_check_refuses_an_unavailable_backend(capsys: pytest.CaptureFixture[str]) -> None:
    missing = next(b for b in ("qpu", "emulator") if b not in torch_qpu.available_backends())
    assert check.main(["--backend", missing]) == 2
    assert "backend" in capsys.readouterr().err


def container_root(tmp_path: Path, cap_eff: str | None) -> Path:
    root = make_pi_root(tmp_path, "gpu_mem=128\n")
    (root / ".dockerenv").write_text("")
    if cap_eff is not None:
        (root / "proc" / "self").mkdir(parents=True)
        (root / "proc" / "self" / "status").write_text(f"Name:\tpython\nCapEff:\t{cap_eff}\n")
    return root


def test_doctor_flags_a_container_without_cap_sys_rawio(tmp_path: Path) -> None:
    # docker's default capability set: no CAP_SYS_RAWIO (bit 17)
    check_ = doctor.check_container_rawio(container_root(tmp_path, "00000000a80425fb"))
    assert check_.ok is False
    assert "--cap-add SYS_RAWIO" in check_.fix


def test_doctor_accepts_a_container_with_cap_sys_rawio(tmp_path: Path) -> None:
    assert doctor.check_container_rawio(container_root(tmp_path, "00000000a80625fb")).ok is True


def test_doctor_outside_a_container(tmp_path: Path) -> None:
    assert doctor.check_container_rawio(make_pi_root(tmp_path, "")).ok is True


@pytest.mark.parametrize(
    ("failed", "cause"),
    [
        (["graphics overlay", "/dev/mem"], "graphics overlay"),
        (["container /dev/mem"], "container /dev/mem"),
        (["/dev/vcio", "root"], "/dev/vcio"),
        ([], None),
    ],
)
def test_doctor_names_the_cause_of_a_failed_probe(failed: list[str], cause: str | None) -> None:
    checks = [doctor.Check(name, False, f"{name} detail", f"{name} fix") for name in failed]
    checks.append(doctor.Check("gpu_mem", True, "fine"))
    result = doctor.probe_failure(checks, "QPULib: the firmware refused the QPU job")
    assert result.ok is False
    assert "the firmware refused the QPU job" in result.detail
    if cause is None:
        assert "none of the checks above explains it" in result.detail
    else:
        assert f"cause: {cause}: {cause} detail" in result.detail
        assert result.fix == f"{cause} fix"


def test_offload_prints_where_auto_runs_calls(capsys: pytest.CaptureFixture[str]) -> None:
    from torch_qpu.__main__ import main

    assert main(["offload"]) == 0
    out = capsys.readouterr().out
    assert "memory model:" in out
    rows = {line.split("|")[0].strip(): line for line in out.splitlines() if "|" in line}
    assert rows["add 1000000"].rstrip().endswith("cpu/cpu")  # copies cost more than the add
    assert "qpu/qpu" in rows["linear 1024->1024 b1 resident"]
