"""QPULib's qpusim mode: the machine code QPU mode would hand the firmware (encode()'s words,
Invoke.cpp's uniforms) run on VC4C's cycle-stepped VideoCore IV emulator with rpibuild's
patches (images/vc4c/), checked against the same Python references as emulation mode.

VC4C's library is built once (about 3 minutes on 2 cores) and cached under rpibuild's cache
dir, keyed by the pinned archives, build.sh and the patches; libqpu.so in qpusim mode is built
once per session. Without VC4C's sources, cmake, LLVM 14 or clang these tests fail with the
reason (scripts/setup-host.sh installs the packages); they are never skipped.

Arithmetic: the programs here are integer-only, or (HeatMap) compared after the program's own
truncation to 0..255 with a tolerance of 1, because the QPU's float add/subtract round toward
zero and flush denormals, so a float32 reference can differ by an ulp before truncation.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
from pathlib import Path

import pytest
import test_examples as examples
from _qpulib_suite import REPO, QPULibBuild

pytestmark = pytest.mark.qpusim

PROGRAMS = Path(__file__).parent / "programs"
LANES = 16
QPU_COUNTS = (1, 4, 12)


def test_build_info_records_qpusim(qpusim: QPULibBuild) -> None:
    assert qpusim.info["mode"] == "qpusim"
    assert qpusim.info["define"].split() == ["EMULATION_MODE", "QPUSIM_MODE"]
    assert "-DQPUSIM_MODE" in qpusim.info["cxxflags"].split()


# QPULib's example programs, with the emulation-mode tests' own checks (test_examples.py).
EXAMPLES = {
    "hello": examples.test_hello,
    "tri": examples.test_tri,
    "tri_float": examples.test_tri_float,
    "multi_tri_four_qpus": examples.test_multi_tri_four_qpus,
    "gcd": examples.test_gcd,
    "req_recv": examples.test_req_recv,
    "id_twelve_qpus": examples.test_id_twelve_qpus,
}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example(qpusim: QPULibBuild, name: str) -> None:
    EXAMPLES[name](qpusim)


@pytest.mark.parametrize("name", ["OET", "Sort"])
def test_odd_even_transposition_sort(qpusim: QPULibBuild, name: str) -> None:
    examples.test_odd_even_transposition_sort(qpusim, name)


def edited_source(qpulib: QPULibBuild, name: str, edits: tuple[tuple[str, str], ...], tag: str) -> Path:
    """A copy of Tests/<name>.cpp with exact-text edits (each must match once)."""
    text = (qpulib.src / "Tests" / f"{name}.cpp").read_text(encoding="utf-8")
    for old, new in edits:
        assert text.count(old) == 1, f"{name}.cpp: expected one {old!r} (upstream changed?)"
        text = text.replace(old, new)
    path = qpulib.workdir / f"{name}{tag}.cpp"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("nqpus", QPU_COUNTS)
def test_id(qpusim: QPULibBuild, nqpus: int) -> None:
    source = edited_source(qpusim, "ID", (("k.setNumQPUs(12);", f"k.setNumQPUs({nqpus});"),), f"{nqpus}")
    lines = examples.indexed_lines(qpusim.run(qpusim.compile(f"ID{nqpus}", source)))
    expected = [str(i // LANES) if i < nqpus * LANES else "0" for i in range(12 * LANES)]
    assert lines == expected


@pytest.mark.parametrize("nqpus", QPU_COUNTS)
def test_multi_qpu_kernels(qpusim: QPULibBuild, nqpus: int) -> None:
    """GCD through DMA (per-QPU VPM columns) and a gather/store stream split over N QPUs."""
    exe = qpusim.compile("QpusimMulti", PROGRAMS / "QpusimMulti.cpp")
    out = qpusim.run(exe, args=[str(nqpus)])
    gcds = [tuple(map(int, line.split()[1:])) for line in out.splitlines() if line.startswith("gcd ")]
    assert len(gcds) == nqpus * LANES
    wrong = [(i, a, b, r) for i, a, b, r in gcds if r != math.gcd(a, b)]
    assert not wrong, f"{len(wrong)} of {len(gcds)} wrong (index, a, b, result): {wrong[:8]}"

    n = nqpus * LANES * 4
    axpy = [tuple(map(int, line.split()[1:])) for line in out.splitlines() if line.startswith("axpy ")]
    assert [i for i, _ in axpy] == list(range(n))
    wrong = [(i, v) for i, v in axpy if v != 3 * (i * 7 + 5) + (1000 - i)]
    assert not wrong, f"{len(wrong)} of {n} wrong (index, value): {wrong[:8]}"

    cycles = dict(re.findall(r"^cycles (\w+) (\d+)$", out, flags=re.MULTILINE))
    assert set(cycles) == {"gcd", "axpy"} and all(int(c) > 0 for c in cycles.values()), out[-300:]
    print(f"qpusim cycles on {nqpus} QPUs: gcd {cycles['gcd']}, axpy {cycles['axpy']} ({n} elements)")


@pytest.mark.parametrize("nqpus", QPU_COUNTS)
def test_heatmap_small(qpusim: QPULibBuild, nqpus: int) -> None:
    """HeatMap split over N QPUs (HEIGHT is a multiple of 1, 4 and 12), pixels within 1."""
    width, height, steps = examples.HEATMAP_WIDTH, examples.HEATMAP_HEIGHT, examples.HEATMAP_STEPS
    assert height % nqpus == 0
    base = examples.small_heatmap_source(qpusim.src, qpusim.workdir).read_text(encoding="utf-8")
    old = "const int NQPUS  = 1;"
    assert base.count(old) == 1, "HeatMap.cpp: NQPUS line changed upstream?"
    source = qpusim.workdir / f"HeatMapSmall{nqpus}.cpp"
    source.write_text(base.replace(old, f"const int NQPUS  = {nqpus};"), encoding="utf-8")
    lines = qpusim.run(qpusim.compile(f"HeatMapSmall{nqpus}", source)).splitlines()
    spots = [tuple(map(int, line.split()[2:])) for line in lines if line.startswith("# spot ")]
    body = [line for line in lines if not line.startswith("#")]
    assert body[:3] == ["P2", f"{width} {height}", "255"], body[:3]
    pixels = [int(v) for v in body[3:]]
    expected = examples.heatmap_reference(spots, width, height, steps)
    assert len(pixels) == len(expected) == width * height
    off = [
        (i % width, i // width, p, e) for i, (p, e) in enumerate(zip(pixels, expected, strict=True)) if p != e
    ]
    far = [d for d in off if abs(d[2] - d[3]) > 1]
    assert not far, f"{len(far)} pixels differ by more than 1 (x, y, got, expected): {far[:10]}"
    print(f"heatmap on {nqpus} QPUs: {len(off)} of {len(pixels)} pixels differ by 1 (float rounding)")


# ---- faults the emulator detects fail the call -------------------------------------------


def faults(qpusim: QPULibBuild, *args: str) -> str:
    return qpusim.run(qpusim.compile("QpusimFaults", PROGRAMS / "QpusimFaults.cpp"), args=list(args))


def test_four_outstanding_gathers_run(qpusim: QPULibBuild) -> None:
    out = faults(qpusim, "gathers", "4").splitlines()
    assert out[0] == "ok", out[:3]
    # lane i: sum over the 4 gathered rows of p[16*k + i] = 16*k + i
    assert examples.indexed_lines("\n".join(out[1:17])) == [str(4 * i + 16 * 6) for i in range(LANES)]


def test_fifth_outstanding_gather_fails(qpusim: QPULibBuild) -> None:
    out = faults(qpusim, "gathers", "5")
    assert out.startswith("caught: QPULib qpusim: "), out[:500]
    assert "TMU request queue is full" in out, out[:500]


def test_register_hazard_fails(qpusim: QPULibBuild) -> None:
    out = faults(qpusim, "hazard", "1")
    assert out.startswith("caught: QPULib qpusim: "), out[:500]
    assert "cannot be read in the next instruction" in out, out[:500]


def test_no_hazard_with_a_nop_between(qpusim: QPULibBuild) -> None:
    out = faults(qpusim, "hazard", "0").splitlines()
    assert out[0] == "ok", out[:3]
    assert re.fullmatch(r"cycles [1-9]\d*", out[1]), out[:3]


def test_cycle_limit_fails_the_call(qpusim: QPULibBuild) -> None:
    out = faults(qpusim, "limit", "20")
    assert out.startswith("caught: QPULib qpusim: the kernel did not finish"), out[:500]
    assert "cycle limit of 20 emulated cycles" in out, out[:500]


def test_semaphore_left_raised_fails_the_call(qpusim: QPULibBuild) -> None:
    assert faults(qpusim, "semaphore", "0").splitlines()[:2] == ["ok", "1"]
    out = faults(qpusim, "semaphore", "1")
    assert out.startswith("caught: QPULib qpusim: "), out[:500]
    assert "Semaphores are not in a good state" in out, out[:500]


@pytest.mark.parametrize("nqpus", QPU_COUNTS)
def test_dma_transfers_hold_the_mutex(qpusim: QPULibBuild, nqpus: int) -> None:
    """Hardware fix 7: each DMA load and store is set up under the hardware mutex (one
    acquire and one release per transfer in the encoded code), balanced on every QPU (the
    emulator fails a launch that frees an unowned mutex or ends with it locked)."""
    out = faults(qpusim, "dma-mutex", str(nqpus)).splitlines()
    assert out[0] == "ok", out[:3]
    assert out[1] == "acquires 2 releases 2 wrong 0", out[:3]


# ---- torch_qpu's assembler against VC4C's disassembler ----------------------------------

# VC4C's names for the registers torch_qpu's listing names as the reference guide does.
VC4C_NAMES = {
    "tmu0s": "tmu0_s", "tmu1s": "tmu1_s", "vpw_setup": "vw_setup", "vpr_setup": "vr_setup",
    "vpw_addr": "vw_addr", "vpr_addr": "vr_addr", "vpw_wait": "vpm_st_wait",
    "vpr_wait": "vpm_ld_wait", "rep_all|r5": "r5rep", "rep_quad|r5": "r5quad", "irq": "host_int",
    "mutex_release": "mutex_rel", "mutex_acquire": "mutex_acq",
}  # fmt: skip


def vc4c_parts(line: str) -> list[tuple[str, ...]]:
    """(op, destination, sources...) of each ALU of one line of VC4C's listing."""
    parts = []
    for part in line.strip().split(";"):
        part = re.sub(r"\s*<<\s*\d+\s*\((full|quad)\)", "", part.strip())
        part = re.sub(r"\s*\(-?[\d.e+]+\)", "", part)  # "2 (2)": a small immediate's value
        op, _, operands = part.partition(" ")
        names = [VC4C_NAMES.get(o.strip(), o.strip()) for o in operands.split(",") if o.strip()]
        parts.append((op.split(".")[0], *names))
    return parts


def test_assembler_agrees_with_vc4c_disassembler(vc4c: Path, tmp_path: Path) -> None:
    """Every instruction of torch_qpu's kernels, as VC4C's disassembler reads the words: the same
    operations, destinations and sources (ALU), destination (load immediate), offset (branch)."""
    import subprocess

    from _qpulib_suite import cxx_compiler
    from torch_qpu import qpuasm, qpukernels

    exe = tmp_path / "vc4c-disassemble"
    lib = vc4c / "lib"
    build = subprocess.run(
        [cxx_compiler(), "-std=c++17", "-I", str(vc4c / "include"), str(PROGRAMS / "Vc4cDisassemble.cpp"),
         "-o", str(exe), f"-L{lib}", "-lVC4CC", f"-Wl,-rpath,{lib}"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-3000:]
    checked = 0
    for name, kernel in sorted(qpukernels.KERNELS.items()):
        words = kernel().assemble()
        run = subprocess.run(
            [str(exe)], input="".join(f"{w:016x}\n" for w in words), capture_output=True, text=True
        )
        assert run.returncode == 0, run.stderr[-2000:]
        lines = run.stdout.strip().splitlines()
        assert len(lines) == len(words), (name, len(lines), len(words))
        for pc, (word, line) in enumerate(zip(words, lines, strict=True)):
            ours = qpuasm.decode(word)
            where = f"{name}[{pc}]: ours {ours.text()!r}, VC4C {line!r}"
            if ours.kind == "branch":
                offset = re.search(r"\(pc\+4\) \+ (-?\d+)", line)
                assert (
                    line.startswith("brr") and offset and int(offset.group(1)) == ours.fields["offset"] // 8
                ), where
            elif ours.kind == "ldi":
                assert line.startswith("ldi"), where
                dst = vc4c_parts(line)[0][1].split("|")[-1] if "|r5" not in line else "r5rep"
                assert VC4C_NAMES.get(dst, dst) in (ours.fields["dst_add"], ours.fields["dst_mul"]), where
            else:
                f = ours.fields
                expected = [
                    (f[f"{alu}_op"], f[f"dst_{alu}"], f[f"{alu}_a"], f[f"{alu}_b"])
                    for alu in ("add", "mul")
                    if f[f"{alu}_op"] != "nop"
                ]
                got = [p for p in vc4c_parts(line) if p[0] != "nop"]
                assert [(e[0], e[1]) for e in expected] == [(g[0], g[1]) for g in got], where
                for e, g in zip(expected, got, strict=True):
                    sources = [s for s in e[2:] if not s.startswith("<<")]
                    assert list(g[2:]) == sources[: len(g) - 2], where
            checked += 1
    print(f"{checked} instructions agree")
    assert checked > 400


# ---- the memory model (images/vc4c/patches/0011-memory-model.patch) ------------------------
#
# QPUSIM_MEMORY_MODEL names a model file (torch_qpu's format: GB/s and ns, converted at 250
# MHz here). Cycle counts from the emulator are deterministic, so they are asserted exactly
# where the model fixes them.

DEFAULT_MODEL = REPO / "images" / "torch-qpu" / "torch_qpu" / "memory_model.toml"
# The emulator's original timing (an 8-cycle line fill, a 12-cycle DMA, QPULib's waits skipped)
FREE_MODEL = {
    "dram_bandwidth_gbps": "inf",
    "dram_latency_ns": "128",
    "dma_load_bandwidth_gbps": "inf",
    "dma_load_setup_ns": "192",
    "dma_store_bandwidth_gbps": "inf",
    "dma_store_setup_ns": "192",
    "dma_waits_stall": "false",
}
# DMA engines at 12.8 (load) and 8 (store) bytes per emulated cycle at 250 MHz, 100 ns setup
DMA_MODEL = {
    **FREE_MODEL,
    "dma_load_bandwidth_gbps": "0.8",
    "dma_load_setup_ns": "100",
    "dma_store_bandwidth_gbps": "0.5",
    "dma_store_setup_ns": "100",
    "dma_waits_stall": "true",
}


def model_file(tmp_path: Path, name: str, values: dict[str, str]) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text("".join(f"{key} = {value}\n" for key, value in values.items()), encoding="utf-8")
    return path


def run_with_model(qpusim: QPULibBuild, exe: Path, model: Path | None, *args: str) -> tuple[str, str]:
    """Run a program under a model file (None: the built-in default); (stdout, stderr)."""
    env = {**os.environ, "QPUSIM_TRACE": "1"}
    env.pop("QPUSIM_MEMORY_MODEL", None)
    if model is not None:
        env["QPUSIM_MEMORY_MODEL"] = str(model)
    result = subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, f"{exe.name} exited {result.returncode}:\n{result.stderr[-3000:]}"
    return result.stdout, result.stderr


def dma_cycles(qpusim: QPULibBuild, model: Path | None, mode: str, nqpus: int, rows: int) -> int:
    exe = qpusim.compile("QpusimMemory", PROGRAMS / "QpusimMemory.cpp")
    out, _ = run_with_model(qpusim, exe, model, mode, str(nqpus), str(rows))
    match = re.fullmatch(r"cycles (\d+)\n", out)
    assert match, out[-500:]
    return int(match.group(1))


def test_free_model_keeps_the_original_cycle_counts(qpusim: QPULibBuild, tmp_path: Path) -> None:
    """The free model, and no model at all, give the counts the emulator gave before the model
    existed (images/qpulib/README.md): Hello 138, GCD 898, Tri 325, OET 641 emulated cycles
    (135, 895, 313, 628 before patch 0014, which runs a branch's delay slots to the end even
    when one stalls)."""
    free = model_file(tmp_path, "free", FREE_MODEL)
    for name, cycles in {"Hello": 138, "GCD": 898, "Tri": 325, "OET": 641}.items():
        exe = qpusim.compile(name)
        for model in (None, free):
            _, err = run_with_model(qpusim, exe, model)
            got = [int(c) for c in re.findall(r"^qpusim: .*, (\d+) cycles", err, flags=re.MULTILINE)]
            assert got == [cycles], f"{name} under {model or 'no model'}: {err[-300:]}"


@pytest.mark.parametrize("mode", ["load", "store"])
def test_dma_time_grows_with_its_size(qpusim: QPULibBuild, tmp_path: Path, mode: str) -> None:
    """One DMA transfer of 1..16 rows of 64 bytes: 64 / rate cycles more per row under the
    model (12.8 bytes per cycle loading: 5 cycles; 8 storing: 8); the same time whatever the
    size without it."""
    model = model_file(tmp_path, "dma", DMA_MODEL)
    free = model_file(tmp_path, "free", FREE_MODEL)
    sizes = (1, 2, 4, 8, 16)
    timed = [dma_cycles(qpusim, model, mode, 1, rows) for rows in sizes]
    untimed = {dma_cycles(qpusim, free, mode, 1, rows) for rows in sizes}
    per_row = 5 if mode == "load" else 8
    assert timed == sorted(set(timed)), timed  # strictly growing
    assert abs((timed[-1] - timed[0]) - 15 * per_row) <= 1, timed
    assert len(untimed) == 1, untimed
    print(f"DMA {mode} of 1..16 rows: {timed} cycles (model), {untimed.pop()} (free)")


def test_dma_engine_is_shared(qpusim: QPULibBuild, tmp_path: Path) -> None:
    """12 QPUs each loading 1 KiB queue on the one DMA load engine: 12 x 1024 / 12.8 = 960
    cycles at least; without the model they overlap completely."""
    model = model_file(tmp_path, "dma", DMA_MODEL)
    free = model_file(tmp_path, "free", FREE_MODEL)
    one, twelve = (dma_cycles(qpusim, model, "load", n, 16) for n in (1, 12))
    assert twelve >= 960 and twelve > 8 * one, (one, twelve)
    assert dma_cycles(qpusim, free, "load", 12, 16) == dma_cycles(qpusim, free, "load", 1, 16)


def test_qpulib_dma_wait_stalls_under_a_model(qpusim: QPULibBuild, tmp_path: Path) -> None:
    """QPULib waits for a DMA with a condition-never `or` of vpm_ld_wait: the emulator used to
    skip it (kept in the free model); under a model it stalls like an executed read."""
    model = model_file(tmp_path, "dma", DMA_MODEL)
    free = model_file(tmp_path, "free", FREE_MODEL)
    assert dma_cycles(qpusim, model, "never", 1, 16) == dma_cycles(qpusim, model, "load", 1, 16)
    assert dma_cycles(qpusim, free, "never", 1, 16) < dma_cycles(qpusim, free, "load", 1, 16)


@pytest.mark.parametrize("nqpus", QPU_COUNTS)
def test_multi_qpu_kernels_under_the_default_model(qpusim: QPULibBuild, nqpus: int) -> None:
    """The published-figures model slows QPULib's DMA and TMU code down, results unchanged."""
    exe = qpusim.compile("QpusimMulti", PROGRAMS / "QpusimMulti.cpp")
    free_out, _ = run_with_model(qpusim, exe, None, str(nqpus))
    timed_out, _ = run_with_model(qpusim, exe, DEFAULT_MODEL, str(nqpus))

    def results(out: str) -> list[str]:
        return [line for line in out.splitlines() if not line.startswith(("cycles ", "seconds "))]

    assert results(timed_out) == results(free_out)
    free_cycles = dict(re.findall(r"^cycles (\w+) (\d+)$", free_out, flags=re.MULTILINE))
    timed_cycles = dict(re.findall(r"^cycles (\w+) (\d+)$", timed_out, flags=re.MULTILINE))
    for kernel in ("gcd", "axpy"):
        assert int(timed_cycles[kernel]) > int(free_cycles[kernel]), (free_cycles, timed_cycles)
    print(f"{nqpus} QPUs, cycles free {free_cycles} -> default model {timed_cycles}")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"dram_bandwith_gbps": "2.5"}, r":8: unknown key 'dram_bandwith_gbps'"),
        ({"dram_latency_ns": "-1"}, r":2: dram_latency_ns = -1 must be a finite number >= 0"),
        ({"dma_load_bandwidth_gbps": "fast"}, r":3: dma_load_bandwidth_gbps = 'fast' is not a number"),
        ({"dram_bandwidth_gbps": None}, r": missing key 'dram_bandwidth_gbps'"),
    ],
)
def test_bad_model_file_fails_naming_file_and_key(
    qpusim: QPULibBuild, tmp_path: Path, edit: dict[str, str | None], message: str
) -> None:
    values = {**DMA_MODEL, **edit}
    path = model_file(tmp_path, "bad", {k: v for k, v in values.items() if v is not None})
    exe = qpusim.compile("QpusimMemory", PROGRAMS / "QpusimMemory.cpp")
    out, _ = run_with_model(qpusim, exe, path, "load", "1", "1")
    assert out.startswith(f"caught: QPULib qpusim: {path}"), out[:500]
    assert re.search(re.escape(str(path)) + message, out), out[:500]
