"""``python -m torch_qpu.calibrate``: measure the memory model's parameters and write them.

On a Raspberry Pi (the ``qpu`` backend) it times microbenchmarks on the real QPUs; on the
``qpusim`` backend (CI, a host) it runs them on VC4C's emulator under the memory model set
there, and "time" is the emulated cycle count at ``--clock-mhz``. Either way it fits the
parameters of ``torch_qpu.memory_model`` and prints the model file (``--output PATH`` writes
it; ``--json`` prints the fit with every measurement).

The microbenchmarks (csrc/calibrate_kernels.h; why each isolates one parameter is said there)
and the fits, all least squares of time against work, so fixed launch costs drop out:

* DRAM bandwidth: 12 QPUs streaming through the TMU; 1 / (slope of time vs bytes);
* DRAM latency: one QPU gathering one line at a time, from a ring too large for the L2 and
  from one that hits the L2; the difference per line, less one line's transfer time;
* DMA load and store rates: 12 QPUs doing QPULib's 64-byte DMA transfers back to back;
  1 / (slope of time vs bytes); QPULib sets each transfer up under the hardware mutex, which
  caps this path near one transfer per 4 emulated cycles (~1 GB/s at 250 MHz): a faster
  engine reads as that cap;
* DMA setup: one QPU's time per transfer, less the transfer's bytes at the fitted rate and
  the loop's own instruction cycles (ISSUE_CYCLES; the qpusim backend measures them, under a
  reference model, every run, and checks the table);
* mv at the seed's shape (100 x 10^5 on a Pi; 100 x 10^4 on qpusim by default) on 4 and 12
  QPUs: the matrix's GB/s, a check of the whole model against the seed's ~1.35 GB/s floor,
  not part of the fit.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import _backend
from . import memory_model as mm
from .memory_model import LINE_BYTES, MemoryModel, MemoryModelError

# Emulated cycles one iteration of the DMA benchmarks' loops costs besides the transfer
# (QPULib's code for `x = *p` / `*p = v` with the mutex of hardware fix 7, less the
# instructions that overlap the transfer). The qpusim backend measures them each run
# (measure_issue_cycles); on a Pi the table is used.
ISSUE_CYCLES = {"dma_load": 21.0, "dma_store": 16.0}
# Emulated cycles per transfer of 12 QPUs doing those loops when the DMA costs nothing: the
# mutex-guarded set-up serializes them, so QPULib's DMA path cannot beat 64 bytes per this
# many cycles (~15.7 bytes per cycle, ~0.98 GB/s at 250 MHz) whatever the engine's rate.
PATH_CAP_CYCLES = {"dma_load": 49.0 / 12, "dma_store": 49.0 / 12}
# The reference model's DMA setup for measuring them: a whole number of cycles at any clock.
_REFERENCE_SETUP_CYCLES = 64.0
STREAM_SIZES = (128, 256, 384, 512)  # vectors (64 bytes) per QPU
DMA_SIZES = (32, 64, 96, 128)  # 64-byte transfers per QPU
CHAIN_HIT_RING = 128  # lines: larger than the TMU cache (4 KiB), far smaller than the L2
CHAIN_MISS_RING = 8192  # lines (512 KiB): larger than any VideoCore IV L2 (128 KiB)
CHAIN_PASSES = (2, 3, 4)


class CalibrationError(RuntimeError):
    """The kit cannot run or fit here (no QPU backend, a degenerate fit)."""


@dataclass
class Fit:
    """A least-squares line time = slope * x + intercept, with what went in."""

    slope: float
    intercept: float
    xs: list[float]
    seconds: list[float]


@dataclass
class Calibration:
    """The fitted model and every measurement behind it."""

    model: MemoryModel
    backend: str
    clock_mhz: float
    fits: dict[str, Fit] = field(default_factory=dict)
    stream_gbps_per_qpu: dict[int, float] = field(default_factory=dict)
    mv_gbps: dict[int, float] = field(default_factory=dict)
    mv_shape: tuple[int, int] = (0, 0)
    issue_cycles: dict[str, float] = field(default_factory=dict)
    path_cap_cycles: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["model"] = {
            k: (None if isinstance(v, float) and math.isinf(v) else v)
            for k, v in asdict(self.model).items()
        }
        return data


def least_squares(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """(slope, intercept) of the least-squares line through the points."""
    n = len(xs)
    if n < 2 or len(ys) != n:
        raise CalibrationError("a fit needs at least two points")
    mx = sum(xs) / n
    my = sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        raise CalibrationError("a fit needs at least two different sizes")
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    return slope, my - slope * mx


class _Runner:
    """Runs microbenchmarks on a backend; "time" in seconds (qpusim: cycles at the clock)."""

    def __init__(self, backend: str, clock_mhz: float, repeat: int) -> None:
        self.backend = backend
        self.clock_mhz = clock_mhz
        self.repeat = repeat if backend == "qpu" else 1  # the emulator is deterministic
        self.ext = _backend.extension()

    def seconds(self, bench: str, num_qpus: int, n: int, ring: int = 1) -> float:
        best = math.inf
        for _ in range(self.repeat):
            cycles, wall = self.ext._calibrate_run(bench, self.backend, num_qpus, n, ring)
            value = self.cycles_to_seconds(cycles) if self.backend == "qpusim" else wall
            best = min(best, value)
        return best

    def cycles_to_seconds(self, cycles: float) -> float:
        return cycles * mm.CLOCKS_PER_CYCLE / (self.clock_mhz * 1e6)

    def fit(
        self, bench: str, num_qpus: int, sizes: Sequence[int], per_size: float, ring: int = 1
    ) -> Fit:
        """Time against x = size * per_size (bytes or steps)."""
        xs = [float(size) * per_size for size in sizes]
        ys = [self.seconds(bench, num_qpus, size, ring) for size in sizes]
        slope, intercept = least_squares(xs, ys)
        if not slope > 0:
            raise CalibrationError(
                f"{bench} on {num_qpus} QPU(s): time does not grow with the work"
            )
        return Fit(slope, intercept, xs, ys)

    def chain_fit(self, ring: int) -> Fit:
        xs = [float(p * ring) for p in CHAIN_PASSES]
        ys = [self.seconds("tmu_chain", 1, p, ring) for p in CHAIN_PASSES]
        slope, intercept = least_squares(xs, ys)
        return Fit(slope, intercept, xs, ys)


def measure_path_cap_cycles(runner: _Runner) -> dict[str, float]:
    """On qpusim: cycles per transfer of 12 QPUs' DMA loops when the DMA costs nothing."""
    zero = MemoryModel(math.inf, 0.0, math.inf, 0.0, math.inf, 0.0, name="zero")
    with mm.use(zero, runner.clock_mhz):
        return {
            bench: round(
                runner.fit(bench, 12, DMA_SIZES, 12.0).slope
                * runner.clock_mhz
                * 1e6
                / mm.CLOCKS_PER_CYCLE,
                3,
            )
            for bench in ISSUE_CYCLES
        }


def measure_issue_cycles(runner: _Runner) -> dict[str, float]:
    """On qpusim: the DMA loops' own cycles per transfer (time per transfer under a model
    whose DMA costs exactly its setup, less that setup)."""
    setup_ns = _REFERENCE_SETUP_CYCLES * mm.CLOCKS_PER_CYCLE * 1000.0 / runner.clock_mhz
    reference = MemoryModel(
        dram_bandwidth_gbps=math.inf,
        dram_latency_ns=0.0,
        dma_load_bandwidth_gbps=math.inf,
        dma_load_setup_ns=setup_ns,
        dma_store_bandwidth_gbps=math.inf,
        dma_store_setup_ns=setup_ns,
        name="calibration reference",
    )
    result = {}
    with mm.use(reference, runner.clock_mhz):
        for bench in ISSUE_CYCLES:
            per_transfer = runner.fit(bench, 1, DMA_SIZES, 1.0).slope
            cycles = per_transfer * runner.clock_mhz * 1e6 / mm.CLOCKS_PER_CYCLE
            result[bench] = round(cycles - _REFERENCE_SETUP_CYCLES, 3)
    return result


def calibrate(
    backend: str = "qpusim",
    clock_mhz: float = mm.DEFAULT_CLOCK_MHZ,
    repeat: int = 3,
    mv_shape: tuple[int, int] | None = None,
    name: str = "calibrated",
) -> Calibration:
    """Run the microbenchmarks on ``backend`` and fit the model (see the module's doc)."""
    if backend not in ("qpu", "qpusim"):
        raise CalibrationError(f"calibration runs on the qpu or qpusim backend, not {backend!r}")
    if backend not in _backend.available_backends():
        raise CalibrationError(
            f"the {backend} backend is not usable here (available: "
            f"{', '.join(_backend.available_backends())}); on a Pi use a qpu build as root, "
            "on a host a qpusim build (README)"
        )
    mm._check_clock(clock_mhz)
    runner = _Runner(backend, clock_mhz, repeat)
    ns = 1e9
    cal = Calibration(model=mm.free(), backend=backend, clock_mhz=clock_mhz)

    if backend == "qpusim" and not mm.current()[0].dma_waits_stall:
        cal.notes.append(
            "the qpusim model skips QPULib's DMA waits (dma_waits_stall = false): the DMA "
            "figures mean nothing under it"
        )
    # Issue cycles of the DMA loops: measured on qpusim (under a reference model), else the table.
    if backend == "qpusim":
        cal.issue_cycles = measure_issue_cycles(runner)
        cal.path_cap_cycles = measure_path_cap_cycles(runner)
        for what, got, table in (
            ("issue", cal.issue_cycles, ISSUE_CYCLES),
            ("12-QPU path", cal.path_cap_cycles, PATH_CAP_CYCLES),
        ):
            for bench, cycles in got.items():
                if abs(cycles - table[bench]) > 0.1:
                    cal.notes.append(
                        f"{bench}: {what} cycles per transfer {cycles:g}, the table says "
                        f"{table[bench]:g} (kernels changed? update calibrate.py's tables)"
                    )
    else:
        cal.issue_cycles = dict(ISSUE_CYCLES)
        cal.path_cap_cycles = dict(PATH_CAP_CYCLES)

    # DRAM bandwidth: 12 QPUs streaming; and what 1 and 4 QPUs get.
    stream = runner.fit("tmu_stream", 12, STREAM_SIZES, 12.0 * LINE_BYTES)
    cal.fits["tmu_stream_12"] = stream
    dram_gbps = 1.0 / stream.slope / ns
    for nq in (1, 4, 12):
        f = stream if nq == 12 else runner.fit("tmu_stream", nq, STREAM_SIZES, nq * LINE_BYTES)
        cal.stream_gbps_per_qpu[nq] = 1.0 / f.slope / ns / nq

    # DRAM latency: misses minus L2 hits per dependent step, less one line's transfer.
    miss = runner.chain_fit(CHAIN_MISS_RING)
    hit = runner.chain_fit(CHAIN_HIT_RING)
    cal.fits["tmu_chain_miss"] = miss
    cal.fits["tmu_chain_hit"] = hit
    line_ns = LINE_BYTES / dram_gbps
    latency_ns = (miss.slope - hit.slope) * ns - line_ns
    if latency_ns < 0:
        cal.notes.append(f"DRAM latency fitted as {latency_ns:.1f} ns: clamped to 0")
        latency_ns = 0.0

    # DMA: rates from 12 QPUs, setup from 1 QPU.
    cycle_ns = mm.CLOCKS_PER_CYCLE * 1000.0 / clock_mhz
    dma: dict[str, tuple[float, float]] = {}
    for bench in ("dma_load", "dma_store"):
        many = runner.fit(bench, 12, DMA_SIZES, 12.0 * LINE_BYTES)
        one = runner.fit(bench, 1, DMA_SIZES, 1.0)
        cal.fits[f"{bench}_12"] = many
        cal.fits[f"{bench}_1"] = one
        rate_gbps = 1.0 / many.slope / ns
        cap_gbps = LINE_BYTES / (cal.path_cap_cycles[bench] * cycle_ns)
        if rate_gbps > 0.85 * cap_gbps:
            cal.notes.append(
                f"{bench}: {rate_gbps:.3f} GB/s is near what QPULib's mutex-guarded DMA path "
                f"allows 12 QPUs ({cap_gbps:.3f} GB/s at {clock_mhz:g} MHz): the engine may be "
                "faster than measured"
            )
        setup_ns = one.slope * ns - cal.issue_cycles[bench] * cycle_ns - LINE_BYTES / rate_gbps
        if setup_ns < 0:
            cal.notes.append(f"{bench} setup fitted as {setup_ns:.1f} ns: clamped to 0")
            setup_ns = 0.0
        dma[bench] = (rate_gbps, setup_ns)

    cal.model = MemoryModel(
        dram_bandwidth_gbps=round(dram_gbps, 4),
        dram_latency_ns=round(latency_ns, 2),
        dma_load_bandwidth_gbps=round(dma["dma_load"][0], 4),
        dma_load_setup_ns=round(dma["dma_load"][1], 2),
        dma_store_bandwidth_gbps=round(dma["dma_store"][0], 4),
        dma_store_setup_ns=round(dma["dma_store"][1], 2),
        name=name,
        description=f"measured by python -m torch_qpu.calibrate on {backend} at {clock_mhz:g} MHz",
    )

    # mv: the whole model against the seed's streaming figure (not fitted).
    rows, cols = mv_shape or ((100, 10**5) if backend == "qpu" else (100, 10**4))
    cal.mv_shape = (rows, cols)
    cal.mv_gbps = _mv_gbps(runner, rows, cols)
    return cal


def _mv_gbps(runner: _Runner, rows: int, cols: int) -> dict[int, float]:
    """GB/s of the matrix streamed by torch_qpu.mv on 4 and 12 QPUs."""
    import time

    import torch

    from .ops import mv

    gen = torch.Generator().manual_seed(0)
    matrix = torch.randn(rows, cols, generator=gen)
    vector = torch.randn(cols, generator=gen)
    result = {}
    for nq in (4, 12):
        best = math.inf
        for _ in range(runner.repeat):
            before = _backend.stats()["qpusim_cycles"]
            start = time.perf_counter()
            mv(matrix, vector, backend=runner.backend, num_qpus=nq)
            wall = time.perf_counter() - start
            cycles = float(_backend.stats()["qpusim_cycles"]) - float(before)  # type: ignore[arg-type]
            best = min(
                best, runner.cycles_to_seconds(cycles) if runner.backend == "qpusim" else wall
            )
        result[nq] = rows * cols * 4 / best / 1e9
    return result


def report(cal: Calibration, known: MemoryModel | None = None) -> str:
    """A human-readable summary (stderr): the fit, and against ``known`` when given."""
    m = cal.model
    lines = [f"calibration on {cal.backend} at {cal.clock_mhz:g} MHz"]
    rows = [
        ("DRAM bandwidth", "dram_bandwidth_gbps", "GB/s"),
        ("DRAM latency", "dram_latency_ns", "ns"),
        ("DMA load rate", "dma_load_bandwidth_gbps", "GB/s"),
        ("DMA load setup", "dma_load_setup_ns", "ns"),
        ("DMA store rate", "dma_store_bandwidth_gbps", "GB/s"),
        ("DMA store setup", "dma_store_setup_ns", "ns"),
    ]
    for label, key, unit in rows:
        text = f"  {label:16} {getattr(m, key):9.3f} {unit}"
        if known is not None:
            want = getattr(known, key)
            text += f"  (set: {want:g}, {100 * (getattr(m, key) - want) / want:+.1f} %)"
        lines.append(text)
    per_qpu = ", ".join(f"{nq} QPUs {g:.3f}" for nq, g in cal.stream_gbps_per_qpu.items())
    lines.append(f"  TMU stream, GB/s per QPU: {per_qpu}")
    mv = ", ".join(f"{nq} QPUs {g:.3f}" for nq, g in cal.mv_gbps.items())
    lines.append(
        f"  mv {cal.mv_shape[0]} x {cal.mv_shape[1]}, matrix GB/s: {mv} (seed, Pi 3: ~1.35 on 4)"
    )
    lines.extend(f"  note: {note}" for note in cal.notes)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m torch_qpu.calibrate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--backend", default=None, help="qpu or qpusim (default: qpu if usable)")
    parser.add_argument(
        "--clock-mhz",
        type=float,
        default=mm.DEFAULT_CLOCK_MHZ,
        help="the QPU clock: qpusim converts cycles at it, qpu uses it for the loops' issue "
        "cycles (250 default; a Pi 3 runs at up to 400)",
    )
    parser.add_argument(
        "--model", help="qpusim: simulate under this model file (default: the one set)"
    )
    parser.add_argument(
        "--output", "-o", help="write the fitted model file here (default: print it)"
    )
    parser.add_argument(
        "--save",
        action="store_true",
        help="write the fitted model where auto reads this Pi's calibration "
        "($TORCH_QPU_MEMORY_MODEL, else ~/.config/torch_qpu/memory_model.toml)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the fit and measurements as JSON"
    )
    parser.add_argument("--repeat", type=int, default=3, help="qpu: runs per point, fastest kept")
    parser.add_argument("--mv-rows", type=int, default=None, help="mv check: rows (default 100)")
    parser.add_argument("--mv-cols", type=int, default=None, help="mv check: columns")
    args = parser.parse_args(argv)
    available = _backend.available_backends()
    backend = args.backend or ("qpu" if "qpu" in available else "qpusim")
    try:
        if args.repeat < 1:
            raise CalibrationError("--repeat must be at least 1")
        shape = None
        if args.mv_rows or args.mv_cols:
            shape = (args.mv_rows or 100, args.mv_cols or 10**4)
            if min(shape) < 1:
                raise CalibrationError("--mv-rows and --mv-cols must be positive")
        known = None
        if args.model:
            if backend != "qpusim":
                raise CalibrationError(
                    "--model is for the qpusim backend (it sets the emulator's model)"
                )
            known = mm.load(args.model)
        elif backend == "qpusim" and mm.current()[0] == mm.free():
            # Under the free model memory costs (almost) nothing: nothing to measure.
            known = mm.default()
            print(
                "torch_qpu.calibrate: qpusim runs the free model; simulating "
                f"{mm.DEFAULT_PATH.name} instead (--model FILE to choose)",
                file=sys.stderr,
            )
        if known is not None:
            with mm.use(known, args.clock_mhz):
                cal = calibrate(backend, args.clock_mhz, args.repeat, shape)
        else:
            cal = calibrate(backend, args.clock_mhz, args.repeat, shape)
    except (CalibrationError, MemoryModelError, _backend.BackendUnavailableError) as err:
        print(f"torch_qpu.calibrate: error: {err}", file=sys.stderr)
        return 2
    print(report(cal, known), file=sys.stderr)
    if args.save and not args.output:
        args.output = str(mm.calibrated_path())
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    if args.output:
        mm.save(cal.model, args.output)
        print(f"wrote {args.output}", file=sys.stderr)
    if args.json:
        print(json.dumps(cal.to_json(), indent=2))
    elif not args.output:
        print(cal.model.to_toml(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
