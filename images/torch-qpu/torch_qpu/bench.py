"""``python -m torch_qpu.bench``: timings per backend, next to torch on this host.

Tables:

* per-call overhead: first call of each op (compiles its kernel, allocates
  the buffer pool) against the median of later calls, so the kernel cache
  shows;
* dispatch overhead: the registered operator (torch.ops.torch_qpu.*, through
  the PyTorch dispatcher and the autograd kernel), and the Python API on top,
  against a direct pybind11 call of the same C++ implementation (what the
  ops were before they were operators), per call, in microseconds, with
  autograd's dispatch keys active ("grad") and under torch.inference_mode();
* mv: the original table, matrix 100 x 10^i times vector 10^i, i = 0..--max-exp;
* elementwise (add, mul), mm, and a batch-1 linear layer with the weight
  copied per call vs kept resident in GPU memory (torch_qpu.nn.Linear).

Times are wall-clock per call including copies to and from GPU memory (the
original write-up timed the kernel only).

``--backend qpusim`` (a qpusim build, on the host) prints instead what the
QPUs would take: the cycles VC4C's emulator counted for each op (all its
launches), the time that means at 250 MHz, the seed's own Pi 3 figures for
the mv table, and torch on this host, with the ratios side by side. Memory
timing in the emulator is approximate. ratio = backend time / torch time
(below 1: the backend is faster). On x86 the 'emulator' column measures
QPULib's software emulator plus host overheads. Figures only: nothing is
asserted.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from . import _backend, memory_model, nn, offload, ops


def best_time(fn: Callable[[], object], repeat: int) -> float:
    """Best of `repeat` timed calls after one warm-up (seconds)."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def kernel_backends(requested: list[str] | None) -> list[str]:
    # qpusim's wall-clock time says nothing about the QPUs: it has its own tables.
    available = [name for name in _backend.available_backends() if name not in ("cpu", "qpusim")]
    if requested:
        return [name for name in requested if name in (*available, "cpu")]
    return [*available, "cpu"]


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)
    ]
    print(f"\n{title}")
    print("  ".join(h.rjust(w) for h, w in zip(header, widths)))
    for row in rows:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))


def comparison(
    title: str,
    cases: Sequence[tuple[str, Callable[..., object], Callable[..., object]]],
    backends: list[str],
    repeat: int,
) -> None:
    """cases: (label, torch call, backend call(name)) per row."""
    header = ["case", "torch s"]
    for name in backends:
        header += [f"{name} s", f"{name}/torch"]
    rows = []
    for label, torch_call, backend_call in cases:
        base = best_time(torch_call, repeat)
        row = [label, f"{base:.6f}"]
        for name in backends:
            elapsed = best_time(functools.partial(backend_call, name), repeat)
            row += [f"{elapsed:.6f}", f"{elapsed / base:.2f}" if base > 0 else "-"]
        rows.append(row)
    print_table(title, header, rows)


def overhead_table(backends: list[str]) -> None:
    """First call (kernel compile + pool allocation) vs later calls."""
    a, b = torch.randn(16), torch.randn(16)
    m, v = torch.randn(16, 16), torch.randn(16)
    calls = {
        "add 16": lambda name: ops.add(a, b, backend=name),
        "mv 16x16": lambda name: ops.mv(m, v, backend=name),
        "mm 16x16x16": lambda name: ops.mm(m, m, backend=name),
    }
    rows = []
    for name in backends:
        for label, call in calls.items():
            compiles = _backend.stats().get("kernel_compiles", 0)
            start = time.perf_counter()
            call(name)
            first = time.perf_counter() - start
            compiled = _backend.stats().get("kernel_compiles", 0) != compiles
            later = []
            for _ in range(20):
                start = time.perf_counter()
                call(name)
                later.append(time.perf_counter() - start)
            median = statistics.median(later)
            rows.append(
                [
                    name,
                    label,
                    "yes" if compiled else "no",
                    f"{first:.6f}",
                    f"{median:.6f}",
                    f"{first / median:.1f}",
                ]
            )
    print_table(
        "per-call overhead (a first call compiles its kernel once per process; mv, mm and "
        "linear share one kernel)",
        ["backend", "op", "compiled", "first s", "later s (median)", "first/later"],
        rows,
    )


def per_call_times(fns: list[Callable[[], object]], calls: int, samples: int) -> list[float]:
    """Per-call time of each function: best of `samples` loops of `calls` calls (timeit's
    way; the loops of the functions alternate, so a busy host slows all of them alike)."""
    best = [float("inf")] * len(fns)
    for fn in fns:
        fn()
    for _ in range(samples):
        for index, fn in enumerate(fns):
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            best[index] = min(best[index], (time.perf_counter() - start) / calls)
    return best


def dispatch_table(backends: list[str], calls: int = 200, samples: int = 7) -> None:
    """Registered operator and Python API vs a direct call of the same C++ function."""
    direct = _backend.extension()
    nq = _backend.get_num_qpus()
    a, b = torch.randn(16), torch.randn(16)
    m, v = torch.randn(16, 16), torch.randn(16)
    cases = {
        "add 16": (
            lambda name: direct.direct_add(a, b, name, nq),
            lambda name: torch.ops.torch_qpu.add.default(a, b, name, nq),
            lambda name: ops.add(a, b, backend=name),
        ),
        "mv 16x16": (
            lambda name: direct.direct_mv(m, v, name, nq),
            lambda name: torch.ops.torch_qpu.mv.default(m, v, name, nq),
            lambda name: ops.mv(m, v, backend=name),
        ),
    }
    rows = []
    for name in backends:
        for label, (direct_call, op_call, api_call) in cases.items():
            for mode, context in (("grad", torch.enable_grad), ("inference", torch.inference_mode)):
                with context():
                    t_direct, t_op, t_api = per_call_times(
                        [functools.partial(f, name) for f in (direct_call, op_call, api_call)],
                        calls,
                        samples,
                    )
                rows.append(
                    [
                        name,
                        label,
                        mode,
                        f"{t_direct * 1e6:.1f}",
                        f"{t_op * 1e6:.1f}",
                        f"{(t_op - t_direct) * 1e6:+.1f}",
                        f"{t_api * 1e6:.1f}",
                        f"{(t_api - t_direct) * 1e6:+.1f}",
                    ]
                )
    print_table(
        "dispatch overhead, us per call (best of loops): the registered operator (torch.ops) "
        "and the Python API vs a direct call of the same C++ function",
        ["backend", "op", "mode", "direct", "torch.ops", "ops-direct", "API", "API-direct"],
        rows,
    )


CLOCKS_PER_CYCLE = 4  # one emulated cycle: a 16-way instruction on 4-way ALUs


def simulate(call: Callable[[], object]) -> tuple[int, int, float]:
    """(emulated cycles, launches, emulator wall s) of one qpusim call."""
    before = _backend.stats()
    start = time.perf_counter()
    call()
    wall = time.perf_counter() - start
    after = _backend.stats()
    cycles = int(after["qpusim_cycles"]) - int(before["qpusim_cycles"])  # type: ignore[call-overload]
    launches = int(after["launches"]) - int(before["launches"])  # type: ignore[call-overload]
    return cycles, launches, wall


@dataclass
class KernelCase:
    """One op and shape of the kernel table; ``sample`` runs a part of it (None: all)."""

    label: str
    workload: offload.Workload
    run: Callable[[int | None], object]  # rows of the sample (None: the whole op)
    samples: dict[str, int | None]  # per kernel set: rows to run
    total_rows: int
    flops: float
    nbytes: float  # bytes the op must move at least (inputs and outputs)


def kernel_cases(quick: bool) -> list[KernelCase]:
    """The issue's table: mm, linear (resident weight), mv and elementwise at Pi-sized shapes.

    The emulator runs about 10^5 QPU cycles a second here, so large shapes are *sampled*: a
    strip of rows that still keeps all 12 QPUs busy with the same work per QPU, scaled by
    total rows / strip rows (the table says which)."""
    cases = []
    for n in (256,) if quick else (256, 512, 1024):
        a, b = torch.randn(n, n), torch.randn(n, n)
        cases.append(
            KernelCase(
                f"mm {n}^3",
                offload.Workload("mm", n, n, n),
                lambda rows, a=a, b=b: ops.mm(a if rows is None else a[:rows], b, backend="qpusim"),
                {"asm": None if n <= 256 else 96, "qpulib": None if n <= 128 else 12},
                n,
                2.0 * n**3,
                12.0 * n * n,
            )
        )
    shapes = ((1024, 1024),) if quick else ((1024, 1024), (4096, 1024))
    for k, out in shapes:
        for batch in (1, 8, 64):
            w, x = torch.randn(out, k), torch.randn(batch, k)
            cases.append(
                KernelCase(
                    f"linear {k}->{out} b{batch}",
                    offload.Workload("linear", batch, k, out, resident=True),
                    lambda rows, w=w, x=x: ops.linear(
                        x, w if rows is None else w[:rows], backend="qpusim", resident=True
                    ),
                    {
                        "asm": None if batch < 64 or k < 4096 else 384,
                        "qpulib": 96 if batch == 1 else 24,
                    },
                    out,
                    2.0 * batch * k * out,
                    4.0 * (k * out + batch * (k + out)),
                )
            )
    rows, cols = (100, 10**4) if quick else (100, 10**5)
    m, v = torch.randn(rows, cols), torch.randn(cols)
    cases.append(
        KernelCase(
            f"mv {rows}x{cols}",
            offload.Workload("mv", 1, cols, rows),
            lambda sample, m=m, v=v: ops.mv(m, v, backend="qpusim"),
            {"asm": None, "qpulib": None},
            rows,
            2.0 * rows * cols,
            4.0 * (rows * cols + cols + rows),
        )
    )
    n = 10**5 if quick else 10**6
    a, b = torch.randn(n), torch.randn(n)
    for name in ("add", "mul"):
        op = getattr(ops, name)
        cases.append(
            KernelCase(
                f"{name} {n}",
                offload.Workload(name, 1, 1, n),
                lambda sample, a=a, b=b, op=op: op(a, b, backend="qpusim"),
                {"asm": None, "qpulib": None},
                n,
                float(n),
                12.0 * n,
            )
        )
    return cases


def kernel_records(cases: list[KernelCase], model: memory_model.MemoryModel) -> list[dict]:
    """Run every case with both kernel sets under the free and the calibrated memory model
    (the latter at 250 and 400 MHz: the model is in physical units, so cycles change with the
    clock); one record per op, shape, kernel and memory model."""
    ext = _backend.extension()
    records = []
    for case in cases:
        for kernels in ("qpulib", "asm"):
            ext.set_kernels(kernels)
            rows = case.samples[kernels]
            scale = 1.0 if rows is None else case.total_rows / rows
            case.run(rows)  # warm-up: kernel compile, resident upload
            record: dict = {
                "op": case.label,
                "kernels": kernels,
                "sampled": None if rows is None else f"{rows} of {case.total_rows} rows",
            }
            for memory, clocks in (("free", (250.0,)), (model.name, (250.0, 400.0))):
                chosen = memory_model.free() if memory == "free" else model
                for clock in clocks:
                    with memory_model.use(chosen, clock_mhz=clock):
                        cycles, launches, wall = simulate(
                            lambda case=case, rows=rows: case.run(rows)
                        )
                    cycles = round(cycles * scale)
                    print(
                        f"bench: {case.label}, {kernels} kernels, {memory} memory at {clock:.0f} "
                        f"MHz: {cycles} cycles ({wall:.0f} s of emulation)",
                        file=sys.stderr,
                        flush=True,
                    )
                    entry = {
                        "memory_model": memory,
                        "clock_mhz": clock,
                        "cycles": cycles,
                        "launches": launches,
                        "emulator_wall_s": round(wall, 2),
                    }
                    records.append({**record, **entry, **_figures(case, cycles, clock, model)})
                    if memory == "free":  # the free model's cycles do not depend on the clock
                        records.append(
                            {
                                **record,
                                **entry,
                                "clock_mhz": 400.0,
                                **_figures(case, cycles, 400.0, model),
                            }
                        )
    ext.set_kernels("asm")
    return records


def _figures(case: KernelCase, cycles: int, clock: float, model: memory_model.MemoryModel) -> dict:
    seconds = cycles * CLOCKS_PER_CYCLE / (clock * 1e6)
    peak = offload.PEAK_FLOPS_PER_CLOCK * clock * 1e6
    cpu = offload.estimate(case.workload, dram_gbps=model.dram_bandwidth_gbps, clock_mhz=clock)
    predicted = offload.kernel_seconds(
        case.workload, dram_gbps=model.dram_bandwidth_gbps, clock_mhz=clock
    )
    return {
        "seconds": seconds,
        "gflops": case.flops / seconds / 1e9 if seconds else 0.0,
        "gbps": case.nbytes / seconds / 1e9 if seconds else 0.0,
        "peak_fraction": case.flops / seconds / peak if seconds else 0.0,
        "bandwidth_fraction": case.nbytes / seconds / (model.dram_bandwidth_gbps * 1e9)
        if seconds
        else 0.0,
        "pi3_cpu_s": cpu.cpu_seconds,
        "model_kernel_s": predicted,
    }


# Published Pi 3 CPU figures the table compares with (torch_qpu.offload has the sources).
CPU_ANCHOR = (
    "Pi 3 CPU = 4 Cortex-A53 at their best published figures: SGEMM 5 GFLOPS per core "
    "(OpenBLAS PR #2643, scaled to 1.2 GHz) x 4, memory-bound ops at 0.9 GB/s (NEON copies, "
    "0.5-0.9 GB/s measured on the same SoC family)"
)


def print_kernel_table(records: list[dict], model: memory_model.MemoryModel) -> None:
    header = [
        "op", "kernels", "memory", "cycles", "s @250", "s @400", "GFLOPS", "GB/s",
        "%peak", "%DRAM", "Pi3 CPU s", "CPU/QPU", "model s", "sampled",
    ]  # fmt: skip
    rows = []
    by_key = {(r["op"], r["kernels"], r["memory_model"], r["clock_mhz"]): r for r in records}
    for (op, kernels, memory, clock), r in by_key.items():
        if clock != 250.0:
            continue
        r400 = by_key[(op, kernels, memory, 400.0)]
        speedup = f"{r['pi3_cpu_s'] / r['seconds']:.2f}" if r["seconds"] else "-"
        rows.append(
            [
                op, kernels, memory, str(r["cycles"]), f"{r['seconds']:.6f}",
                f"{r400['seconds']:.6f}", f"{r['gflops']:.2f}", f"{r['gbps']:.2f}",
                f"{100 * r['peak_fraction']:.1f}", f"{100 * r['bandwidth_fraction']:.0f}",
                f"{r['pi3_cpu_s']:.6f}", speedup,
                f"{r['model_kernel_s']:.6f}" if kernels == "asm" else "", r["sampled"] or "",
            ]
        )  # fmt: skip
    print_table(
        f"QPU kernels on qpusim, 12 QPUs: QPULib's (qpulib) and torch_qpu's own (asm), under the "
        f"'free' memory model (the emulator's original timing: memory costs almost nothing) and "
        f"'{model.name}' (DRAM {model.dram_bandwidth_gbps} GB/s, {model.dram_latency_ns:.0f} ns; "
        f"DMA load {model.dma_load_bandwidth_gbps}, store {model.dma_store_bandwidth_gbps} "
        f"GB/s). Figures at 250 MHz unless marked; %peak of 24 GFLOPS (38.4 at 400 MHz), %DRAM "
        f"of the model's bandwidth for the bytes the op must move; kernel time only (no copies "
        f"to or from GPU memory). 'model s': torch_qpu.offload's prediction (what auto uses). "
        f"{CPU_ANCHOR}; CPU/QPU > 1: the QPUs are faster. Sampled rows: a strip of the op, "
        f"scaled.",
        header,
        rows,
    )


def qpusim_tables(
    quick: bool, model_path: str | None, as_json: bool, only: str | None = None
) -> None:
    """The kernel table (see kernel_cases), as text or JSON.

    Each case runs in a child process of its own (``--case``): QPULib's emulation heap, which
    qpusim maps as GPU memory, only grows, and the whole table moves more than its 128 MiB."""
    model = memory_model.load(model_path) if model_path else memory_model.default()
    if only is not None:
        cases = [case for case in kernel_cases(quick) if case.label == only]
        if not cases:
            raise ValueError(f"no bench case {only!r}")
        json.dump(kernel_records(cases, model), sys.stdout)
        return
    records = []
    for case in kernel_cases(quick):
        command = [sys.executable, "-m", "torch_qpu.bench", "--backend", "qpusim", "--json"]
        command += ["--case", case.label, *(["--quick"] if quick else [])]
        command += ["--memory-model", model_path] if model_path else []
        child = subprocess.run(command, stdout=subprocess.PIPE, text=True)
        if child.returncode != 0:
            raise RuntimeError(f"bench case {case.label!r} failed (exit {child.returncode})")
        records += json.loads(child.stdout)
    if as_json:
        json.dump(records, sys.stdout, indent=1)
        print()
        return
    print_kernel_table(records, model)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m torch_qpu.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--max-exp", type=int, default=5, help="largest i in 100 x 10^i (default 5)"
    )
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per case, best kept")
    parser.add_argument(
        "--backends",
        "--backend",
        help="comma-separated subset (default: all available but qpusim); 'qpusim' alone: "
        "simulated QPU cycles and times instead of wall-clock timings",
    )
    parser.add_argument("--num-qpus", type=int, default=None, help="QPUs per kernel (1-12)")
    parser.add_argument("--quick", action="store_true", help="small elementwise/mm sizes only")
    parser.add_argument(
        "--memory-model",
        metavar="PATH",
        help="qpusim: the calibrated memory model file (default: torch_qpu's published-figures "
        "model, torch_qpu/memory_model.toml; python -m torch_qpu.calibrate writes one)",
    )
    parser.add_argument("--json", action="store_true", help="qpusim: the table as JSON records")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # qpusim: one case (a child process)
    args = parser.parse_args(argv)
    if not 0 <= args.max_exp <= 7:
        parser.error("--max-exp must be in 0..7")
    if args.num_qpus is not None:
        _backend.set_num_qpus(args.num_qpus)
    requested = args.backends.split(",") if args.backends else None
    if requested == ["qpusim"]:
        if "qpusim" not in _backend.available_backends():
            parser.error(
                "the qpusim backend is not usable here: it needs torch_qpu built against a "
                "qpusim-mode QPULib (QPULIB_MODE=qpusim, VC4C_PREFIX; see the README) "
                f"(available: {', '.join(_backend.available_backends())})"
            )
        torch.manual_seed(0)
        if not args.json and not args.case:
            print(f"torch_qpu bench (qpusim): torch {torch.__version__}")
        try:
            qpusim_tables(args.quick, args.memory_model, args.json, args.case)
        except (memory_model.MemoryModelError, ValueError) as err:
            parser.error(str(err))
        except RuntimeError as err:
            print(f"torch_qpu bench: {err}", file=sys.stderr)
            return 1
        return 0
    if requested and "qpusim" in requested:
        parser.error("qpusim counts cycles instead of timing: use --backend qpusim on its own")
    backends = kernel_backends(requested)
    if requested and set(requested) - set(backends):
        unusable = ", ".join(sorted(set(requested) - set(backends)))
        parser.error(
            f"backend(s) not usable here: {unusable} "
            f"(available: {', '.join(_backend.available_backends())})"
        )
    torch.manual_seed(0)
    print(
        f"torch_qpu bench: torch {torch.__version__}, {torch.get_num_threads()} torch threads, "
        f"build {_backend.build_mode() or 'cpu only'}, backends {', '.join(backends)}, "
        f"{_backend.get_num_qpus()} QPUs"
    )
    overhead_table(backends)
    dispatch_table(backends)

    mv_cases = []
    for i in range(args.max_exp + 1):
        m, v = torch.randn(100, 10**i), torch.randn(10**i)
        mv_cases.append(
            (
                f"i={i} 100x{10**i}",
                lambda m=m, v=v: torch.mv(m, v),
                lambda name, m=m, v=v: ops.mv(m, v, backend=name),
            )
        )
    comparison("mv: matrix 100 x 10^i times vector 10^i", mv_cases, backends, args.repeat)

    sizes = [10**2, 10**4] if args.quick else [10**2, 10**3, 10**4, 10**5, 10**6]
    ew_cases = []
    for n in sizes:
        a, b = torch.randn(n), torch.randn(n)
        for op_name, torch_op in (("add", torch.add), ("mul", torch.mul)):
            op = getattr(ops, op_name)
            ew_cases.append(
                (
                    f"{op_name} {n}",
                    lambda a=a, b=b, t=torch_op: t(a, b),
                    lambda name, a=a, b=b, op=op: op(a, b, backend=name),
                )
            )
    comparison("elementwise", ew_cases, backends, args.repeat)

    mm_sizes = [16, 32] if args.quick else [16, 64, 128, 256]
    mm_cases = []
    for n in mm_sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        mm_cases.append(
            (
                f"mm {n}x{n}x{n}",
                lambda a=a, b=b: torch.mm(a, b),
                lambda name, a=a, b=b: ops.mm(a, b, backend=name),
            )
        )
    comparison("mm (square)", mm_cases, backends, args.repeat)

    # A batch-1 linear layer: copying the weight to GPU memory each call vs
    # keeping it resident (what torch_qpu.nn.Linear does).
    layer_sizes = [64, 256] if args.quick else [256, 1024]
    layer_cases: list[tuple[str, Callable[..., object], Callable[..., object]]] = []
    for n in layer_sizes:
        torch_layer = torch.nn.Linear(n, n)
        x = torch.randn(1, n)
        weight, bias = torch_layer.weight.detach(), torch_layer.bias.detach()
        resident = {name: nn.Linear.from_linear(torch_layer, backend=name) for name in backends}
        layer_cases.append(
            (
                f"linear {n}->{n} copy",
                lambda layer=torch_layer, x=x: layer(x),
                lambda name, x=x, w=weight, b=bias: ops.linear(x, w, b, backend=name),
            )
        )
        layer_cases.append(
            (
                f"linear {n}->{n} resident",
                lambda layer=torch_layer, x=x: layer(x),
                lambda name, x=x, layers=resident: layers[name](x),
            )
        )
    with torch.no_grad():
        comparison(
            "linear layer, batch 1 (weight copied per call vs resident)",
            layer_cases,
            backends,
            args.repeat,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
