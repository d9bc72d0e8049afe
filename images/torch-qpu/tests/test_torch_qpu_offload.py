"""auto's choice: the QPUs only where torch_qpu.offload's model says they beat the Pi's CPU.

The model itself is checked against qpusim's cycle counts in test_torch_qpu_qpusim.py; here,
what ``auto`` decides from it (a qpu build is faked: no Pi here), and how the calibrated
memory model it reads is found.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import torch_qpu
from torch_qpu import _backend, memory_model, offload
from torch_qpu.offload import Workload

pytestmark = pytest.mark.unit


@pytest.fixture
def on_a_pi(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """A qpu backend that can run (faked), the published-figures model, 4 torch threads."""
    monkeypatch.setattr(_backend, "available_backends", lambda: ["qpu", "cpu"])
    monkeypatch.delenv("TORCH_QPU_MEMORY_MODEL", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))  # no calibration there
    monkeypatch.delenv("TORCH_QPU_CLOCK_MHZ", raising=False)
    torch_qpu.set_auto_threshold(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(4)
    yield
    torch.set_num_threads(threads)


def resolve(w: Workload) -> str:
    return _backend.resolve("auto", 10**9, False, w)


def test_memory_bound_with_copies_stays_on_the_cpu(on_a_pi: None) -> None:
    """Elementwise ops and an mv whose matrix is copied in per call: the ARM's copies into GPU
    memory alone take longer than the CPU doing the op."""
    assert resolve(Workload("add", 1, 1, 10**6)) == "cpu"
    assert resolve(Workload("mul", 1, 1, 10**7)) == "cpu"
    assert resolve(Workload("mv", 1, 10**5, 100)) == "cpu"
    assert resolve(Workload("linear", 1, 1024, 1024, resident=False)) == "cpu"


def test_resident_weights_go_to_the_qpus(on_a_pi: None) -> None:
    """A batch-1 layer with its weight in GPU memory: the QPUs stream it from DRAM faster than
    the CPU reads it."""
    assert resolve(Workload("linear", 1, 1024, 1024, resident=True)) == "qpu"
    assert resolve(Workload("linear", 1, 4096, 1024, resident=True)) == "qpu"


def test_gemm_depends_on_the_cpu_threads_and_the_clock(
    on_a_pi: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = Workload("mm", 1024, 1024, 1024)
    assert resolve(big) == "cpu", "four A53 cores at their best beat 12 QPUs at 250 MHz"
    torch.set_num_threads(1)
    assert resolve(big) == "qpu", "one core does not"
    torch.set_num_threads(4)
    assert resolve(Workload("mm", 16, 16, 16)) == "cpu", "a launch costs more than the work"


def test_a_slow_calibrated_memory_keeps_layers_on_the_cpu(
    on_a_pi: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    slow = memory_model.scaled(memory_model.default(), dram_bandwidth_gbps=0.2, name="slow-pi")
    path = tmp_path / "memory_model.toml"
    memory_model.save(slow, path)
    monkeypatch.setenv("TORCH_QPU_MEMORY_MODEL", str(path))
    assert memory_model.calibrated_or_default().name == "slow-pi"
    assert resolve(Workload("linear", 1, 1024, 1024, resident=True)) == "cpu"


def test_calibrated_file_location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("TORCH_QPU_MEMORY_MODEL", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert memory_model.calibrated_path() == tmp_path / "torch_qpu" / "memory_model.toml"
    assert memory_model.calibrated_or_default().name == memory_model.default().name


def test_a_broken_calibration_warns_once_and_uses_the_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("dram_bandwidth_gbps = 'fast'\n")
    monkeypatch.setenv("TORCH_QPU_MEMORY_MODEL", str(path))
    with pytest.warns(RuntimeWarning, match="broken.toml") as caught:
        assert memory_model.calibrated_or_default().name == memory_model.default().name
        memory_model.calibrated_or_default()
    assert len(caught) == 1


def test_estimates_say_what_bounds_the_qpu() -> None:
    add = offload.estimate(Workload("add", 1, 1, 10**6), dram_gbps=2.5)
    assert add.qpu_bound == "copies" and not add.qpu_wins
    gemv = offload.estimate(Workload("linear", 1, 4096, 1024, True), dram_gbps=2.5)
    assert gemv.qpu_bound == "memory" and gemv.qpu_wins
    gemm = offload.estimate(Workload("mm", 1024, 1024, 1024), dram_gbps=2.5, clock_mhz=250)
    assert gemm.qpu_bound == "compute"
    faster = offload.estimate(Workload("mm", 1024, 1024, 1024), dram_gbps=2.5, clock_mhz=400)
    assert faster.qpu_seconds < gemm.qpu_seconds


def test_kernel_sets_setting() -> None:
    assert torch_qpu.get_kernels() in ("asm", "qpulib")
    with pytest.raises(ValueError, match="unknown kernel set"):
        torch_qpu.set_kernels("fast")
