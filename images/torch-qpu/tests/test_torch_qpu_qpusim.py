"""Every op on the qpusim backend (QPU mode's machine code on VC4C's VideoCore IV emulator) at
the edge shapes, on 1, 4 and 12 QPUs, against torch; and the hardware fixes the emulator can
show (launch sizing, a failed launch, GPU memory given back).

Collected only in a qpusim build of torch_qpu (conftest.py); tests/qpulib/test_torch_qpu_qpusim.py
builds one and runs this module with --require-qpusim, so CI always runs it.

Tolerances follow the QPU's arithmetic: its float add and subtract round toward zero and flush
denormals to zero, and its multiply is not IEEE round-to-nearest either, so every float op may be
one ulp off the IEEE result (relative 2^-23) and results below the smallest normal (2^-126) may
be zero. A dot product of k terms adds k such errors in another order than torch, so it is held
to (k + 16) ulps of the sum of the terms' magnitudes.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import torch_qpu
from torch_qpu import _backend, calibrate
from torch_qpu import memory_model as mm

pytestmark = [pytest.mark.qpusim, pytest.mark.qpulib]

if torch_qpu.build_mode() != "qpusim":  # collected anyway: --require-qpusim
    pytest.fail(
        f"--require-qpusim: this torch_qpu is a {torch_qpu.build_mode() or 'cpu-only'} build, "
        "not qpusim (build it with QPULIB_MODE=qpusim VC4C_PREFIX=...; README)",
        pytrace=False,
    )

QPU_COUNTS = (1, 4, 12)
KERNEL_SETS = ("asm", "qpulib")  # torch_qpu's own kernels, and QPULib's (kept for comparison)
ULP = 2.0**-23  # float32, relative
SMALLEST_NORMAL = 2.0**-126
# Edge sizes: one element, one short of a 16-wide vector, exact, one over, several
# vectors not a multiple of 16, more 16-wide slices than QPUs; empty where allowed.
SIZES = (0, 1, 15, 16, 17, 33, 12 * 16 + 5)
MV_SHAPES = ((1, 1), (1, 15), (15, 16), (17, 17), (3, 33), (13, 1), (0, 5), (5, 0), (25, 40))
MM_SHAPES = ((1, 1, 1), (15, 17, 16), (17, 33, 3), (2, 16, 13), (0, 3, 4), (3, 0, 4), (3, 4, 0))


@pytest.fixture(autouse=True)
def _usable_after() -> Iterator[None]:
    """Every test leaves the backend usable: any fault the emulator reported fails it."""
    yield
    assert torch_qpu.stats()["unusable"] == "", torch_qpu.stats()["unusable"]
    # The launch model never under-estimates a launch the emulator ran (hardware fix 2).
    assert torch_qpu.stats()["launch_estimate_ratio_max"] <= 1.0, torch_qpu.stats()


@pytest.fixture(params=KERNEL_SETS)
def kernels(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test with each kernel set; the default (asm) is restored after."""
    ext = _backend.extension()
    ext.set_kernels(request.param)
    yield request.param
    ext.set_kernels("asm")


def assert_ulps(got: torch.Tensor, want: torch.Tensor) -> None:
    """Within one ulp (round toward zero), or both below the smallest normal (flushed)."""
    torch.testing.assert_close(got, want, rtol=ULP, atol=SMALLEST_NORMAL)


def assert_dot(got: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> None:
    """got ~ a @ b (2-D, b (K, N)): within (K + 16) ulps of sum |a_i b_i| per output."""
    want = a.double() @ b.double()
    scale = a.double().abs() @ b.double().abs()
    bound = (a.shape[1] + 16) * ULP * scale + SMALLEST_NORMAL
    assert got.shape == want.shape
    excess = (got.double() - want).abs() - bound
    assert not (excess > 0).any(), f"{int((excess > 0).sum())} outputs off by more than allowed"


def test_build_offers_qpusim_and_the_emulator() -> None:
    assert torch_qpu.build_mode() == "qpusim"
    assert torch_qpu.available_backends() == ["qpusim", "emulator", "cpu"]
    assert _backend.extension().probe() == ""


@pytest.mark.parametrize("num_qpus", QPU_COUNTS)
@pytest.mark.parametrize("op", ["add", "sub", "mul"])
@pytest.mark.parametrize("n", SIZES)
def test_elementwise(op: str, n: int, num_qpus: int, kernels: str) -> None:
    a, b = torch.randn(n), torch.randn(n)
    got = getattr(torch_qpu, op)(a, b, backend="qpusim", num_qpus=num_qpus)
    assert_ulps(got, getattr(torch, op)(a, b))


@pytest.mark.parametrize("num_qpus", QPU_COUNTS)
def test_elementwise_denormals_flush(num_qpus: int) -> None:
    tiny = torch.full((17,), 2.0**-130)  # a denormal
    got = torch_qpu.add(tiny, torch.zeros(17), backend="qpusim", num_qpus=num_qpus)
    assert_ulps(got, tiny)  # zero (flushed) or the denormal: both within the tolerance


@pytest.mark.parametrize("num_qpus", QPU_COUNTS)
@pytest.mark.parametrize("shape", MV_SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_mv(shape: tuple[int, int], num_qpus: int, kernels: str) -> None:
    m, v = torch.randn(*shape), torch.randn(shape[1])
    got = torch_qpu.mv(m, v, backend="qpusim", num_qpus=num_qpus)
    assert_dot(got.unsqueeze(1), m, v.unsqueeze(1))


@pytest.mark.parametrize("num_qpus", [8, 12])
def test_mv_long_rows_many_qpus(num_qpus: int) -> None:
    """Many QPUs streaming long rows evict each other's L2 lines: VC4C's emulator handed the
    TMU another address's data then (images/vc4c/patches/0009), 2 of 100 outputs wrong."""
    torch.manual_seed(1)
    m, v = torch.randn(100, 1000), torch.randn(1000)
    got = torch_qpu.mv(m, v, backend="qpusim", num_qpus=num_qpus)
    assert_dot(got.unsqueeze(1), m, v.unsqueeze(1))


def test_linear_1024_on_12_qpus() -> None:
    """12 QPUs streaming distinct rows fill every way of an L2 set: VC4C's emulator failed the
    kernel then ("Can't evict cache line being filled"; images/vc4c/patches/0010)."""
    x, w = torch.randn(1, 1024), torch.randn(1024, 1024)
    assert_dot(torch_qpu.linear(x, w, backend="qpusim", num_qpus=12), x, w.t())


@pytest.mark.parametrize("num_qpus", QPU_COUNTS)
@pytest.mark.parametrize("shape", MM_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_mm(shape: tuple[int, int, int], num_qpus: int, kernels: str) -> None:
    n, k, m = shape
    a, b = torch.randn(n, k), torch.randn(k, m)
    assert_dot(torch_qpu.mm(a, b, backend="qpusim", num_qpus=num_qpus), a, b)


# torch_qpu's gemm kernel works in 32 x 16 tiles and pairs of k steps; gemv in pairs of
# vectors and segments of rows: shapes around every one of those edges.
GEMM_SHAPES = (
    (32, 16, 16), (31, 15, 17), (33, 17, 15), (64, 2, 48), (2, 3, 2), (65, 33, 47),
    (1, 4097, 3), (4097, 1, 2), (3, 1, 4097), (17, 40, 1),
)  # fmt: skip


@pytest.mark.parametrize("num_qpus", QPU_COUNTS)
@pytest.mark.parametrize("shape", GEMM_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_mm_tile_edges(shape: tuple[int, int, int], num_qpus: int) -> None:
    n, k, m = shape
    a, b = torch.randn(n, k), torch.randn(k, m)
    assert_dot(torch_qpu.mm(a, b, backend="qpusim", num_qpus=num_qpus), a, b)


@pytest.mark.parametrize("num_qpus", QPU_COUNTS)
@pytest.mark.parametrize("shape", [(1, 4097), (4097, 1), (100, 1000), (5, 33), (12, 64)])
def test_mv_segments(shape: tuple[int, int], num_qpus: int) -> None:
    m, v = torch.randn(*shape), torch.randn(shape[1])
    got = torch_qpu.mv(m, v, backend="qpusim", num_qpus=num_qpus)
    assert_dot(got.unsqueeze(1), m, v.unsqueeze(1))


@pytest.mark.parametrize("batch", [1, 2, 8, 64])
def test_linear_batches_resident(batch: int) -> None:
    """Batch 1 runs gemv on rows kept in GPU memory; larger batches gemm on A panels kept there:
    two layouts of one weight, each uploaded once."""
    w, x = torch.randn(100, 70), torch.randn(batch, 70)
    before = torch_qpu.stats()["resident_uploads"]
    for _ in range(2):
        assert_dot(torch_qpu.linear(x, w, backend="qpusim", resident=True), x, w.t())
    assert torch_qpu.stats()["resident_uploads"] - before == 1


@pytest.mark.parametrize("num_qpus", QPU_COUNTS)
@pytest.mark.parametrize("resident", [False, True])
@pytest.mark.parametrize("x_shape", [(17,), (2, 3, 17), (1, 17)])
def test_linear(x_shape: tuple[int, ...], resident: bool, num_qpus: int, kernels: str) -> None:
    weight, bias = torch.randn(13, 17), torch.randn(13)
    x = torch.randn(*x_shape)
    for _ in range(2):  # resident: the second call uses the weight kept in GPU memory
        got = torch_qpu.linear(
            x, weight, bias, backend="qpusim", num_qpus=num_qpus, resident=resident
        )
        assert got.shape == (*x_shape[:-1], 13)
        flat = x.reshape(-1, 17)
        # the bias is added on the CPU (IEEE), after the QPU's dot products
        assert_dot(got.reshape(-1, 13) - bias, flat, weight.t())


def test_nn_linear_module() -> None:
    layer = torch.nn.Linear(40, 7)
    qpu_layer = torch_qpu.nn.Linear.from_linear(layer, backend="qpusim")
    x = torch.randn(5, 40)
    with torch.no_grad():
        assert_dot(qpu_layer(x) - layer.bias, x, layer.weight.t())


# ---- hardware fix 2: launches sized under the mailbox timeout -------------------------


@pytest.fixture
def tiny_budget() -> Iterator[None]:
    """A launch budget of 10 us (2500 QPU clocks) instead of 0.1 s, so small ops split."""
    ext = _backend.extension()
    old = ext._set_launch_budget(10e-6)
    yield
    ext._set_launch_budget(old)


@pytest.mark.parametrize("num_qpus", QPU_COUNTS)
def test_launches_split_and_results_hold(tiny_budget: None, num_qpus: int) -> None:
    before = torch_qpu.stats()["launches"]
    a, b = torch.randn(12 * 16 * 4 + 3), torch.randn(12 * 16 * 4 + 3)
    assert_ulps(torch_qpu.add(a, b, backend="qpusim", num_qpus=num_qpus), a + b)
    m, v = torch.randn(30, 200), torch.randn(200)
    got_mv = torch_qpu.mv(m, v, backend="qpusim", num_qpus=num_qpus)
    assert_dot(got_mv.unsqueeze(1), m, v.unsqueeze(1))
    x, w = torch.randn(9, 50), torch.randn(20, 50)
    got = torch_qpu.linear(x, w, backend="qpusim", num_qpus=num_qpus, resident=True)
    assert_dot(got, x, w.t())
    launches = torch_qpu.stats()["launches"] - before
    assert launches > 6, f"{launches} launches: the budget did not split the work"
    # and the emulator counted no launch above its estimate (the autouse fixture checks)
    assert torch_qpu.stats()["qpusim_max_launch_cycles"] > 0


def test_default_budget_is_far_under_the_timeout() -> None:
    ext = _backend.extension()
    old = ext._set_launch_budget(0.05)
    assert old == pytest.approx(0.1)  # a tenth of the 1 s mailbox timeout
    ext._set_launch_budget(old)
    with pytest.raises(ValueError, match="launch budget"):
        ext._set_launch_budget(2.0)


def run_isolated(code: str) -> str:
    """Run code in a fresh interpreter with this torch_qpu (a failed launch is for good)."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_failed_launch_makes_the_backend_unusable() -> None:
    """A launch past the emulator's cycle limit fails like a mailbox timeout: the op raises,
    and from then on the backend refuses (its buffers are abandoned, not reused)."""
    out = run_isolated(
        """
        import torch, torch_qpu
        from torch_qpu import _backend
        a = torch.randn(4096)
        torch_qpu.add(a, a, backend="qpusim")
        _backend.extension()._qpusim_set_max_cycles(50)
        try:
            torch_qpu.add(a, a, backend="qpusim")
        except RuntimeError as err:
            print("first:", str(err).splitlines()[0])
        try:
            torch_qpu.add(a, a, backend="qpusim")
        except (RuntimeError, torch_qpu.BackendUnavailableError) as err:
            print("second:", str(err).splitlines()[0])
        stats = torch_qpu.stats()
        print("available:", ",".join(torch_qpu.available_backends()))
        print("abandoned:", stats["abandoned_floats"] > 0, "held:", stats["gpu_floats"])
        same = bool((torch_qpu.add(a, a, backend="emulator") == a + a).all())
        print("emulator still runs:", same)
        """
    )
    lines = dict(line.split(": ", 1) for line in out.splitlines())
    assert "qpusim kernel launch failed" in lines["first"], out
    assert "did not finish" in lines["first"], out
    assert "unusable in this process" in lines["second"], out
    assert lines["available"] == "emulator,cpu", out
    assert lines["abandoned"] == "True held: 0", out
    assert lines["emulator still runs"] == "True", out


# ---- hardware fix 5: all GPU memory given back ------------------------------------------


def test_release_gpu_memory_and_reuse() -> None:
    w = torch.randn(20, 33)
    torch_qpu.linear(torch.randn(33), w, backend="qpusim", resident=True)
    assert torch_qpu.stats()["gpu_floats"] > 0
    _backend.extension().release_gpu_memory()
    assert torch_qpu.stats()["gpu_floats"] == 0
    assert torch_qpu.stats()["resident_matrices"] == 0
    x = torch.randn(33)
    assert_dot(torch_qpu.linear(x, w, backend="qpusim").unsqueeze(1), w, x.unsqueeze(1))


def test_gpu_memory_released_at_exit() -> None:
    out = run_isolated(
        """
        import atexit
        # registered before torch_qpu's own hook, so it runs after it (atexit is LIFO)
        atexit.register(lambda: print("at exit:", __import__("torch_qpu").stats()["gpu_floats"]))
        import torch, torch_qpu
        torch_qpu.mv(torch.randn(40, 40), torch.randn(40), backend="qpusim")
        torch_qpu.linear(torch.randn(40), torch.randn(8, 40), backend="qpusim", resident=True)
        print("in use:", torch_qpu.stats()["gpu_floats"])
        """
    )
    lines = dict(line.split(": ", 1) for line in out.splitlines())
    assert int(lines["in use"]) > 0, out
    assert lines["at exit"] == "0", out


# ---- torch_qpu's own kernels: what the emulator refuses, and the encoders agree ----------


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("tmu", "TMU"),
        ("early_read", "cannot be read in the next instruction"),
        ("mutex", "mutex"),
    ],
)
def test_a_bad_kernel_raises(fault: str, message: str) -> None:
    """Machine code that over-issues the TMU, reads a register-file value one instruction after
    its write, or ends holding the mutex stops on qpusim with the emulator's reason (the
    assembler refuses the second itself; check=False gets it past)."""
    out = run_isolated(
        f"""
        import torch, torch_qpu
        from torch_qpu import _backend, qpuasm as q
        p = q.Program("bad")
        fault = {fault!r}
        if fault == "tmu":
            p.mov(q.R0, q.UNIF)
            p.add("shl", q.R1, q.ELEM_NUM, q.small_imm(2))
            p.add("add", q.R0, q.R0, q.R1)
            for _ in range(5):
                p.mov(q.TMU0_S, q.R0)
            for _ in range(5):
                p.nop(sig="ldtmu0")
        elif fault == "early_read":
            p.mov(q.ra(3), q.small_imm(1))
            p.mov(q.R1, q.ra(3))
        else:
            p.mov(q.NOP, q.MUTEX_ACQUIRE)
        p.end()
        words = p.assemble(check=False)
        try:
            _backend.extension()._qpusim_run_code(words, 1, [-1], torch.zeros(64))
            print("ran")
        except RuntimeError as err:
            print(str(err).splitlines()[0])
        """
    )
    assert "qpusim kernel launch failed" in out, out
    assert message.lower() in out.lower(), out


def test_a_good_raw_kernel_runs_and_counts_cycles() -> None:
    from torch_qpu import qpuasm as q

    p = q.Program("store")
    for _ in range(3):  # QPU index, QPU count, then the data's address
        p.mov(q.R2, q.UNIF)
    p.ldi(q.VPMVCD_WR_SETUP, (1 << 12) | (1 << 11) | (2 << 8))  # VPM row 0, horizontal
    p.alu(add=("itof", q.R0, q.ELEM_NUM, q.ELEM_NUM))
    p.mov(q.VPM_WRITE, q.R0)
    p.ldi(q.VPMVCD_WR_SETUP, (2 << 30) | (1 << 23) | (16 << 16) | (1 << 14))  # DMA 1 row
    p.mov(q.VPM_ST_ADDR, q.R2)
    p.mov(q.NOP, q.VPM_ST_WAIT)
    p.end()
    data = torch.zeros(16)
    cycles = _backend.extension()._qpusim_run_code(p.assemble(), 1, [-1], data)
    assert torch.equal(data, torch.arange(16, dtype=torch.float32))
    assert 0 < cycles < 1000


@pytest.mark.parametrize("name", ["add", "mul", "dot_rows", "dot_cols"])
def test_assembler_round_trips_qpulib_encoder(name: str) -> None:
    """Every word QPULib's encoder emitted for its kernels, decoded into operations and
    registers and encoded again by torch_qpu's assembler, means the same instruction."""
    from torch_qpu import qpuasm as q

    words = _backend.extension()._qpulib_code(name)
    assert len(words) > 50
    for word in words:
        again = q.reassemble(word)
        assert q.decode(again).text() == q.decode(word).text(), q.decode(word).text()


# ---- the memory model (torch_qpu.memory_model; images/vc4c/patches/0011) ---------------
#
# Emulated cycle counts are deterministic: asserted exactly where the model fixes them.

SET_A = mm.MemoryModel(  # at 250 MHz
    dram_bandwidth_gbps=1.6,
    dram_latency_ns=150.0,
    dma_load_bandwidth_gbps=0.4,
    dma_load_setup_ns=250.0,
    dma_store_bandwidth_gbps=0.6,
    dma_store_setup_ns=200.0,
    name="set A",
)
SET_B = mm.MemoryModel(  # at 400 MHz
    dram_bandwidth_gbps=3.2,
    dram_latency_ns=100.0,
    dma_load_bandwidth_gbps=0.9,
    dma_load_setup_ns=150.0,
    dma_store_bandwidth_gbps=1.2,
    dma_store_setup_ns=120.0,
    name="set B",
)


def bench_cycles(bench: str, num_qpus: int, n: int, ring: int = 1) -> int:
    cycles, _ = _backend.extension()._calibrate_run(bench, "qpusim", num_qpus, n, ring)
    return int(cycles)


def stream_bytes_per_cycle(num_qpus: int) -> float:
    """Per-QPU bytes per emulated cycle of the TMU stream (slope over two sizes)."""
    extra = bench_cycles("tmu_stream", num_qpus, 512) - bench_cycles("tmu_stream", num_qpus, 256)
    return 256 * 64 / extra


def test_default_model_file_and_units() -> None:
    model = mm.default()
    assert (model.dram_bandwidth_gbps, model.dma_load_bandwidth_gbps) == (2.5, 0.69)
    at_250 = model.to_cycles(250)
    assert at_250.dram_bytes_per_cycle == pytest.approx(40.0)  # 2.5 GB/s x 16 ns
    assert at_250.dram_latency_cycles == pytest.approx(7.5)  # 120 ns / 16 ns
    at_400 = model.to_cycles(mm.PI3_CLOCK_MHZ)
    assert at_400.dram_bytes_per_cycle == pytest.approx(25.0)
    assert at_400.dram_latency_cycles == pytest.approx(12.0)
    free = mm.free().to_cycles(250)
    assert free == (0.0, 8.0, 0.0, 12.0, 0.0, 12.0, False)  # QPUSim.h's defaults


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    for model in (mm.default(), mm.free(), SET_A):
        mm.save(model, tmp_path / "m.toml")
        assert mm.load(tmp_path / "m.toml") == model


def test_free_model_is_the_original_timing() -> None:
    """The same launches in two fresh processes, one with no model set (the emulator's
    built-in default) and one with memory_model.free(): the same cycles, launch for launch."""
    code = """
        import os
        os.environ.pop("QPUSIM_MEMORY_MODEL", None)  # the library's built-in default
        import torch, torch_qpu
        from torch_qpu import memory_model as mm
        if {free}:
            mm.set(mm.free())
        torch.manual_seed(0)
        calls = [
            lambda: torch_qpu.add(torch.randn(5000), torch.randn(5000), backend="qpusim"),
            lambda: torch_qpu.mv(torch.randn(40, 900), torch.randn(900), backend="qpusim"),
            lambda: torch_qpu.mm(torch.randn(20, 50), torch.randn(50, 30), backend="qpusim"),
        ]
        counts = []
        for call in calls:
            before = torch_qpu.stats()["qpusim_cycles"]
            call()
            counts.append(torch_qpu.stats()["qpusim_cycles"] - before)
        print(counts)
        """
    plain = run_isolated(code.format(free=False))
    free = run_isolated(code.format(free=True))
    assert plain == free, (plain, free)


def test_twelve_streaming_qpus_contend() -> None:
    """Each QPU streams its own block through the TMU: alone it is instruction-bound; twelve
    share the DRAM's 40 bytes per cycle (2.5 GB/s at 250 MHz), so each gets less. Without the
    model there is no limit and no contention."""
    with mm.use(mm.default()):
        one, twelve = stream_bytes_per_cycle(1), stream_bytes_per_cycle(12)
    assert twelve < 0.8 * one, (one, twelve)
    assert 12 * twelve == pytest.approx(40.0, rel=0.05)
    with mm.use(mm.free()):
        assert stream_bytes_per_cycle(12) == pytest.approx(stream_bytes_per_cycle(1))


def test_bandwidth_speeds_memory_bound_work_only() -> None:
    """Twice the DRAM bandwidth: 12 QPUs streaming (memory-bound) get faster; one QPU
    streaming (instruction-bound: 14 cycles per 64 bytes) streams exactly as fast, only its
    first line fills (latency and a line's transfer) finish a few cycles sooner."""
    slow = mm.default()
    fast = mm.scaled(slow, dram_bandwidth_gbps=2 * slow.dram_bandwidth_gbps)
    counts = {}
    for label, model in (("slow", slow), ("fast", fast)):
        with mm.use(model):
            counts[label] = [
                bench_cycles("tmu_stream", nq, n) for nq in (12, 1) for n in (256, 512)
            ]
    slow12, _, slow1_256, slow1_512 = counts["slow"]
    fast12, _, fast1_256, fast1_512 = counts["fast"]
    assert fast12 < 0.8 * slow12, counts
    assert fast1_512 - fast1_256 == slow1_512 - slow1_256 == 256 * 14, counts
    assert fast1_512 == pytest.approx(slow1_512, rel=0.005), counts


def test_dma_time_grows_with_the_bytes() -> None:
    """QPULib's 64-byte DMA loads on one QPU: each costs its setup plus 64 / rate; halving
    the rate adds 64 / rate cycles per transfer (here 5.8 at 0.69 GB/s, 250 MHz)."""
    model = mm.default()
    slower = mm.scaled(model, dma_load_bandwidth_gbps=model.dma_load_bandwidth_gbps / 2)
    per_transfer = {}
    for label, m in (("default", model), ("slower", slower)):
        with mm.use(m):
            per_transfer[label] = (
                bench_cycles("dma_load", 1, 128) - bench_cycles("dma_load", 1, 64)
            ) / 64
    extra = 64 / model.to_cycles(250).dma_load_bytes_per_cycle
    assert per_transfer["slower"] - per_transfer["default"] == pytest.approx(extra, abs=1.0)


@pytest.mark.parametrize(("known", "clock_mhz"), [(SET_A, 250.0), (SET_B, 400.0)], ids=["A", "B"])
def test_calibration_recovers_known_parameters(known: mm.MemoryModel, clock_mhz: float) -> None:
    """The kit, run on qpusim under a known model, fits it back within 15 % (a small mv
    shape keeps the check quick; it is not part of the fit)."""
    before = mm.current()
    with mm.use(known, clock_mhz):
        cal = calibrate.calibrate("qpusim", clock_mhz, mv_shape=(24, 2000))
    assert not cal.notes, cal.notes
    print(calibrate.report(cal, known))
    for key in mm.PARAMETERS:
        assert getattr(cal.model, key) == pytest.approx(getattr(known, key), rel=0.15), key
    assert mm.current() == before  # the kit restored what was set


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("dram_bandwith_gbps = 2.5\n", "unknown key 'dram_bandwith_gbps'"),
        ("dram_latency_ns = -5\n", "dram_latency_ns = -5 must be a finite number of ns >= 0"),
        ('dma_load_bandwidth_gbps = "fast"\n', "dma_load_bandwidth_gbps = 'fast' is not a number"),
        ("dram_bandwidth_gbps = 0\n", "dram_bandwidth_gbps = 0 must be > 0 GB/s"),
        ("[memory]\n", "tables are not supported"),
        ("dram_latency_ns = \n", "not valid TOML"),
    ],
)
def test_bad_model_file_names_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    good = mm.default().to_toml()
    key = text.split("=")[0].strip()
    lines = [line for line in good.splitlines() if not line.startswith(key + " ")]
    path = tmp_path / "bad.toml"
    path.write_text("\n".join(lines) + "\n" + text, encoding="utf-8")
    with pytest.raises(mm.MemoryModelError) as err:
        mm.load(path)
    assert str(err.value).startswith(str(path)), err.value
    assert message in str(err.value), err.value


def test_missing_key_and_cli_error_without_traceback(tmp_path: Path) -> None:
    path = tmp_path / "short.toml"
    path.write_text("dram_bandwidth_gbps = 2.5\n", encoding="utf-8")
    with pytest.raises(mm.MemoryModelError, match="missing key 'dram_latency_ns'"):
        mm.load(path)
    result = subprocess.run(
        [sys.executable, "-m", "torch_qpu.calibrate", "--model", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"torch_qpu.calibrate: error: {path}: missing key"), (
        result.stderr
    )
    assert "Traceback" not in result.stderr


def test_calibrate_cli_writes_a_model_file(tmp_path: Path) -> None:
    out = tmp_path / "measured.toml"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch_qpu.calibrate",
            "--model",
            str(mm.DEFAULT_PATH),
            "--mv-rows",
            "12",
            "--mv-cols",
            "1000",
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    measured = mm.load(out)
    assert measured.dram_bandwidth_gbps == pytest.approx(mm.default().dram_bandwidth_gbps, rel=0.15)
    assert "DRAM bandwidth" in result.stderr


# ---- the cost model auto uses, against the emulator's counts ----------------------------

MODEL_CASES = {
    "mm 128^3": ((128, 128, 128), "mm"),
    "mm 64x300x200": ((64, 300, 200), "mm"),
    "linear 1024->1024 b1": ((1, 1024, 1024), "linear"),
    "linear 256->256 b8": ((8, 256, 256), "linear"),
    "mv 100x4000": ((1, 4000, 100), "mv"),
    "add 10^5": ((1, 1, 10**5), "add"),
}


@pytest.mark.parametrize("memory", ["free", "default"])
@pytest.mark.parametrize("name", sorted(MODEL_CASES))
def test_offload_model_follows_the_emulator(name: str, memory: str) -> None:
    """torch_qpu.offload's kernel time (what auto compares with the CPU) is within -20 % /
    +15 % of the cycles qpusim counts, under the free and the published-figures memory model:
    it may not flatter the QPUs by more than that. Cycle counts, not wall-clock time."""
    from torch_qpu import memory_model, offload

    (m, k, n), op = MODEL_CASES[name]
    if op == "mm":
        a, b = torch.randn(m, k), torch.randn(k, n)
        call = lambda: torch_qpu.mm(a, b, backend="qpusim")  # noqa: E731
    elif op == "linear":
        x, w = torch.randn(m, k), torch.randn(n, k)
        call = lambda: torch_qpu.linear(x, w, backend="qpusim", resident=True)  # noqa: E731
    elif op == "mv":
        mat, vec = torch.randn(n, k), torch.randn(k)
        call = lambda: torch_qpu.mv(mat, vec, backend="qpusim")  # noqa: E731
    else:
        a = torch.randn(n)
        call = lambda: torch_qpu.add(a, a, backend="qpusim")  # noqa: E731
    model = memory_model.free() if memory == "free" else memory_model.default()
    with memory_model.use(model, clock_mhz=250):
        call()  # the resident upload, the pool
        before = torch_qpu.stats()["qpusim_cycles"]
        call()
        cycles = torch_qpu.stats()["qpusim_cycles"] - before
    workload = offload.Workload(op, m, k, n, resident=op == "linear")
    gbps = model.dram_bandwidth_gbps  # inf in the free model: no memory part
    predicted = offload.kernel_seconds(workload, dram_gbps=gbps, clock_mhz=250) * 250e6 / 4
    assert 0.8 * predicted <= cycles <= 1.15 * predicted, (cycles, round(predicted))
