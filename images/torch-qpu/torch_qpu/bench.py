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
import statistics
import sys
import time
from collections.abc import Callable, Sequence

import torch

from . import _backend, nn, ops


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


# The seed's table (docs: SEED.md): i -> (CPU loop s, QPU s) on a Pi 3, kernel only.
SEED_MV = {
    0: (0.000004, 0.000164),
    1: (0.000023, 0.000169),
    2: (0.000206, 0.000171),
    3: (0.002116, 0.000388),
    4: (0.021245, 0.003079),
    5: (0.214486, 0.029622),
}
QPU_CLOCK_HZ = 250e6
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


def simulated_seconds(cycles: int) -> float:
    return cycles * CLOCKS_PER_CYCLE / QPU_CLOCK_HZ


def qpusim_tables(max_exp: int, repeat: int, quick: bool) -> None:
    """Cycles and 250 MHz times from VC4C's emulator, next to the seed and torch here."""
    nq = _backend.get_num_qpus()
    print(
        f"qpusim: the QPU machine code run by VC4C's cycle-stepped VideoCore IV emulator on "
        f"{nq} QPUs; 'QPU s' = cycles x {CLOCKS_PER_CYCLE} clocks / 250 MHz. Memory timing in "
        "the emulator is approximate (TMU, VPM and DMA latencies are modelled, SDRAM bandwidth "
        "and contention are not): read the simulated times as a lower bound for memory-bound "
        "ops. Copies to and from GPU memory are not included (as in the seed's figures)."
    )
    rows = []
    for i in range(max_exp + 1):
        m, v = torch.randn(100, 10**i), torch.randn(10**i)
        cycles, launches, wall = simulate(lambda m=m, v=v: ops.mv(m, v, backend="qpusim"))
        sim = simulated_seconds(cycles)
        host = best_time(lambda m=m, v=v: torch.mv(m, v), repeat)
        seed_cpu, seed_qpu = SEED_MV[i]
        rows.append(
            [
                f"i={i} 100x{10**i}",
                str(launches),
                str(cycles),
                f"{sim:.6f}",
                f"{seed_qpu:.6f}",
                f"{seed_cpu:.6f}",
                f"{host:.6f}",
                f"{seed_qpu / sim:.2f}",
                f"{seed_cpu / sim:.2f}",
                f"{host / sim:.3f}",
                f"{wall:.1f}",
            ]
        )
    print_table(
        "mv: matrix 100 x 10^i times vector 10^i (seed: Pi 3, kernel only; ratios > 1: the "
        "simulated QPUs are faster)",
        [
            "case",
            "launches",
            "cycles",
            "QPU s (sim)",
            "seed QPU s",
            "seed CPU s",
            "torch here s",
            "seedQPU/sim",
            "seedCPU/sim",
            "torch/sim",
            "emulator wall s",
        ],
        rows,
    )

    cases: list[tuple[str, Callable[[], object], Callable[[], object]]] = []
    for n in [10**2, 10**4] if quick else [10**2, 10**3, 10**4, 10**5]:
        a, b = torch.randn(n), torch.randn(n)
        for op_name, torch_op in (("add", torch.add), ("sub", torch.sub), ("mul", torch.mul)):
            op = getattr(ops, op_name)
            cases.append(
                (
                    f"{op_name} {n}",
                    lambda a=a, b=b, t=torch_op: t(a, b),
                    lambda a=a, b=b, op=op: op(a, b, backend="qpusim"),
                )
            )
    for n in [16, 64] if quick else [16, 64, 128]:
        a, b = torch.randn(n, n), torch.randn(n, n)
        cases.append(
            (
                f"mm {n}x{n}x{n}",
                lambda a=a, b=b: torch.mm(a, b),
                lambda a=a, b=b: ops.mm(a, b, backend="qpusim"),
            )
        )
    n = 256 if quick else 1024
    x, w = torch.randn(1, n), torch.randn(n, n)
    cases.append(
        (
            f"linear {n}->{n} batch 1",
            lambda x=x, w=w: torch.nn.functional.linear(x, w),
            lambda x=x, w=w: ops.linear(x, w, backend="qpusim"),
        )
    )
    rows = []
    for label, torch_call, qpusim_call in cases:
        cycles, launches, wall = simulate(qpusim_call)
        sim = simulated_seconds(cycles)
        host = best_time(torch_call, repeat)
        rows.append(
            [
                label,
                str(launches),
                str(cycles),
                f"{sim:.6f}",
                f"{host:.6f}",
                f"{host / sim:.3f}",
                f"{wall:.1f}",
            ]
        )
    print_table(
        "elementwise, mm and linear on qpusim (sizes the emulator runs in seconds)",
        [
            "case",
            "launches",
            "cycles",
            "QPU s (sim)",
            "torch here s",
            "torch/sim",
            "emulator wall s",
        ],
        rows,
    )


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
        print(
            f"torch_qpu bench (qpusim): torch {torch.__version__}, "
            f"{torch.get_num_threads()} torch threads"
        )
        qpusim_tables(args.max_exp, args.repeat, args.quick)
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
