"""When the QPUs beat the Pi's own CPU: the cost model behind ``auto`` and ``convert()``.

A GPU path slower than the CPU it replaces is not acceleration, so ``auto`` offloads a call
only when this model says the QPU path (host copies, launches and the kernel) finishes before
the Pi 3's four Cortex-A53 cores would, taking the CPU at its *best* published figure: a call
the model is unsure about stays on the CPU.

QPU side: the kernels' own instruction counts (torch_qpu/qpukernels.py; the bench compares
these with qpusim's cycle counts) and the memory model's DRAM bandwidth (torch_qpu.memory_model:
the calibrated file when there is one, else the published-figures default), the larger of
the two; plus copies into and out of GPU memory on the ARM and a fixed cost per launch.

CPU side (published anchors, QPU.md): OpenBLAS SGEMM about 5 GFLOPS on one Cortex-A53 at
1.2 GHz (OpenBLAS PR #2643, scaled), scaled linearly with torch's threads (the top of the
15-20 GFLOPS estimate for four); memory-bound ops at 0.9 GB/s, the top of the 0.5-0.9 GB/s
measured for NEON copies on the same SoC family.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# The Pi 3's CPU (published figures, see the module docstring).
CPU_GFLOPS_PER_CORE = 5.0
CPU_STREAM_GBPS = 0.9
CPU_CORES = 4
# Copies between torch's memory and GPU memory on the ARM (uncached, word by word): the low
# end of the measured NEON copy rates. A launch through the mailbox (est.).
HOST_COPY_GBPS = 0.5
LAUNCH_SECONDS = 100e-6

PEAK_FLOPS_PER_CLOCK = 12 * 4 * 2  # 12 QPUs x 4 lanes x (multiply + add)
# The share of the memory model's DRAM bandwidth the kernels reach (qpusim, default model:
# gemv 84-90 %, elementwise 99 %): the model takes the low end, so it never flatters the QPU.
DRAM_EFFICIENCY = 0.85
MODEL_MARGIN = 1.15
LANES = 16

# Per-QPU emulated cycles of torch_qpu's kernels (1 cycle = 4 QPU clocks) with memory free:
# gemm's from its code (instruction-bound); gemv's and elementwise's as qpusim counts them
# (their loads ahead do not cover the TMU's latency: 9 instructions per pair of vectors take
# about 22 cycles), which only matters when DRAM is faster than the kernels can stream.
GEMM_CYCLES_PER_STEP = 48.5  # 97 instructions per two k steps of a 32 x 16 tile
GEMM_CYCLES_PER_TILE = 250.0  # list entry, zeroing, first loads, eight DMA stores
GEMV_CYCLES_PER_PAIR = 22.0  # two 16-float vectors of a row segment
GEMV_CYCLES_PER_ITEM = 60.0  # uniforms, loads ahead, the lane sum
EW_CYCLES_PER_BLOCK = 45.0  # four 16-float vectors and their DMA store


@dataclass(frozen=True)
class Workload:
    """One call: ``op`` is mm (m x k @ k x n), mv (n rows of k), linear (m rows of x, k in,
    n out; ``resident`` weight) or add/sub/mul (``n`` elements)."""

    op: str
    m: int = 1
    k: int = 1
    n: int = 1
    resident: bool = False

    @property
    def flops(self) -> float:
        if self.op in ("add", "sub", "mul"):
            return float(self.n)
        return 2.0 * self.m * self.k * self.n


@dataclass(frozen=True)
class Estimate:
    """Seconds on each side, and what decides the QPU's time."""

    qpu_seconds: float
    cpu_seconds: float
    qpu_bound: str  # "compute", "memory" or "copies"

    @property
    def qpu_wins(self) -> bool:
        """Faster by more than the model's tested error (its kernel time is held within +15 %
        of qpusim's counts), so a call the model cannot tell apart stays on the CPU."""
        return self.qpu_seconds * MODEL_MARGIN < self.cpu_seconds


def _ceil(a: float, b: float) -> float:
    return float(math.ceil(a / b))


def kernel_cycles(w: Workload, num_qpus: int = 12) -> float:
    """Per-QPU emulated cycles of the kernel alone (no memory stalls: the 'memory free' time)."""
    if w.op in ("add", "sub", "mul"):
        blocks = _ceil(w.n, 4 * LANES)
        return _ceil(blocks, min(num_qpus, blocks)) * EW_CYCLES_PER_BLOCK + 200
    rows, vectors = (w.n, w.m) if w.op == "linear" else (w.m, w.n) if w.op == "mm" else (w.n, 1)
    if w.op == "mv" or vectors == 1 or rows == 1:
        count = max(rows, vectors)
        pairs = _ceil(w.k, 2 * LANES)
        # as module.cpp cuts rows: 4 KiB of x at most, every QPU busy, within 3 % of each other
        segments = _ceil(pairs, 32)
        while segments < pairs and (
            count * segments < 4 * num_qpus
            or _ceil(count * segments, num_qpus) * num_qpus * 100 > count * segments * 103
        ):
            segments += 1
        items = count * segments
        per_item = GEMV_CYCLES_PER_ITEM + GEMV_CYCLES_PER_PAIR * pairs / segments
        return _ceil(items, min(num_qpus, items)) * per_item + 200
    tiles = _ceil(max(rows, vectors), 32) * _ceil(min(rows, vectors), 16)
    steps = w.k + (w.k % 2)
    per_tile = GEMM_CYCLES_PER_TILE + GEMM_CYCLES_PER_STEP * steps
    return _ceil(tiles, min(num_qpus, tiles)) * per_tile + 600


def dram_bytes(w: Workload, num_qpus: int = 12) -> float:
    """Bytes the kernel moves between DRAM and the QPUs. gemm: the QPUs work on neighbouring
    tiles of one A panel at the same time (module.cpp hands tiles out that way), so an A panel
    comes from DRAM once per group of QPUs and each tile streams its own B panel."""
    if w.op in ("add", "sub", "mul"):
        return 12.0 * w.n
    if w.op == "mv" or w.m == 1 or (w.op == "mm" and w.n == 1):
        return 4.0 * (w.k * max(w.m, w.n) + w.k)
    rows, vectors = (w.n, w.m) if w.op == "linear" else (w.m, w.n)
    col_panels = _ceil(min(rows, vectors), 16)
    tiles = _ceil(max(rows, vectors), 32) * col_panels
    sharing = min(num_qpus, col_panels)
    return tiles * (32 / sharing + 16) * (w.k + 2) * 4.0


def host_bytes(w: Workload) -> float:
    """Bytes the ARM copies into and out of GPU memory for one call (a resident weight: none)."""
    if w.op in ("add", "sub", "mul"):
        return 12.0 * w.n
    if w.op == "mv":
        return 4.0 * (w.n * w.k + w.k + w.n)
    weight = 0.0 if w.resident else 4.0 * w.k * w.n
    return weight + 4.0 * (w.m * w.k + w.m * w.n) + (4.0 * w.m * w.k if w.op == "mm" else 0.0)


def kernel_parts(
    w: Workload, *, dram_gbps: float, clock_mhz: float = 250.0, num_qpus: int = 12
) -> tuple[float, float]:
    """The kernel's seconds from its instructions and from its DRAM bytes (``dram_gbps``: the
    memory model's bandwidth; ``math.inf`` for the memory-free model)."""
    compute = kernel_cycles(w, num_qpus) * 4 / (clock_mhz * 1e6)
    memory = dram_bytes(w, num_qpus) / (dram_gbps * DRAM_EFFICIENCY * 1e9)
    return compute, memory


def kernel_seconds(
    w: Workload, *, dram_gbps: float, clock_mhz: float = 250.0, num_qpus: int = 12
) -> float:
    """The kernel's predicted time (the larger part): what the bench and tests hold against
    qpusim's cycles."""
    return max(kernel_parts(w, dram_gbps=dram_gbps, clock_mhz=clock_mhz, num_qpus=num_qpus))


def estimate(
    w: Workload,
    *,
    dram_gbps: float,
    clock_mhz: float = 250.0,
    threads: int = CPU_CORES,
    num_qpus: int = 12,
) -> Estimate:
    """Both sides' time for one call. ``dram_gbps``: the memory model's DRAM bandwidth."""
    compute, memory = kernel_parts(w, dram_gbps=dram_gbps, clock_mhz=clock_mhz, num_qpus=num_qpus)
    copies = host_bytes(w) / (HOST_COPY_GBPS * 1e9) + LAUNCH_SECONDS
    kernel = max(compute, memory)
    bound = "compute" if compute >= memory else "memory"
    if copies > kernel:
        bound = "copies"
    cores = max(1, min(threads, CPU_CORES))
    cpu = w.flops / (CPU_GFLOPS_PER_CORE * 1e9 * cores)
    if w.op in ("add", "sub", "mul", "mv") or (w.op in ("mm", "linear") and min(w.m, w.n) == 1):
        cpu = max(cpu, host_bytes(Workload(w.op, w.m, w.k, w.n, False)) / (CPU_STREAM_GBPS * 1e9))
    return Estimate(qpu_seconds=kernel + copies, cpu_seconds=cpu, qpu_bound=bound)


# Shapes of the README's table: the bench's, and layers of small models.
TABLE_WORKLOADS = (
    Workload("mm", 256, 256, 256),
    Workload("mm", 1024, 1024, 1024),
    Workload("linear", 1, 1024, 1024, resident=True),
    Workload("linear", 1, 1024, 1024, resident=False),
    Workload("linear", 1, 256, 128, resident=True),
    Workload("linear", 8, 1024, 1024, resident=True),
    Workload("linear", 64, 4096, 1024, resident=True),
    Workload("mv", 1, 10**5, 100),
    Workload("add", 1, 1, 10**6),
)


def describe(w: Workload) -> str:
    if w.op in ("add", "sub", "mul"):
        return f"{w.op} {w.n}"
    if w.op == "mv":
        return f"mv {w.n}x{w.k}"
    if w.op == "mm":
        return f"mm {w.m}x{w.k}x{w.n}"
    return f"linear {w.k}->{w.n} b{w.m} {'resident' if w.resident else 'copied'}"


def table(dram_gbps: float) -> list[list[str]]:
    """Rows of the decision table: per workload, QPU and CPU seconds at 250 and 400 MHz and
    1 and 4 CPU threads, and where auto puts the call."""
    rows = []
    for w in TABLE_WORKLOADS:
        row = [describe(w)]
        for clock in (250.0, 400.0):
            qpu = estimate(w, dram_gbps=dram_gbps, clock_mhz=clock)
            row += [f"{qpu.qpu_seconds * 1e3:.2f} ({qpu.qpu_bound})"]
        for threads in (1, 4):
            cpu = estimate(w, dram_gbps=dram_gbps, threads=threads).cpu_seconds
            row.append(f"{cpu * 1e3:.2f}")
        for clock in (250.0, 400.0):
            picks = [
                "qpu"
                if estimate(w, dram_gbps=dram_gbps, clock_mhz=clock, threads=t).qpu_wins
                else "cpu"
                for t in (1, 4)
            ]
            row.append("/".join(picks))
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    """``python -m torch_qpu offload``: the decision table for the calibrated (or default)
    memory model (TORCH_QPU_MEMORY_MODEL, calibrate --save)."""
    import argparse

    from . import memory_model

    parser = argparse.ArgumentParser(prog="python -m torch_qpu offload", description=main.__doc__)
    parser.parse_args(argv)
    model = memory_model.calibrated_or_default()
    header = [
        "call", "QPU ms @250", "QPU ms @400", "CPU ms 1 core", "CPU ms 4 cores",
        "auto @250 (1/4 threads)", "auto @400 (1/4 threads)",
    ]  # fmt: skip
    rows = table(model.dram_bandwidth_gbps)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print(f"memory model: {model.name} (DRAM {model.dram_bandwidth_gbps} GB/s)")
    print(" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    for row in rows:
        print(" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    return 0
