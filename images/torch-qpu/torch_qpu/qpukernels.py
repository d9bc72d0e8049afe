"""torch_qpu's hand-scheduled QPU kernels, written with torch_qpu.qpuasm.

Every kernel follows QPULib's launch protocol (its uniforms start with the QPU's index and
the QPU count, then the launch's parameters), so it runs through QPULib's own launch path:
the mailbox on a Pi, VC4C's emulator under qpusim. Work is described by a *work table* the
host writes into GPU memory: each QPU points its uniform stream at its own list of work items
(``unif_addr``), so the host balances the QPUs and no kernel divides. Loads go through the TMU
(at most three requests outstanding, within the four the hardware allows per QPU); stores go
through each QPU's own rows of the VPM and the VPM's DMA, never the mutex.

Kernels (the layouts they expect are produced by module.cpp):

``gemm``    C = A B, register-blocked. Each work item is a 32 x 16 tile of C. Per step k the QPU
            loads a0 = A[i0:i0+16, k], a1 = A[i0+16:i0+32, k] and b = B[k, j0:j0+16] (one TMU
            request each, from packed panels) and accumulates the 512 products of the outer
            product a x b: for each of the 16 rotations n of b (the mul ALU rotates a vector
            in the instruction that moves it), acc0[n] += a0 * rot(b, n), acc1[n] += a1 *
            rot(b, n). 48 instructions per step, every one a multiply, 32 of them paired with
            an add: 2/3 of the QPU's peak in the inner loop. Lane l of acc_i[n] holds
            C[i0 + 16 i + l, j0 + (l - n) mod 16]; the host undoes that permutation.
``gemv``    y = W x for row-major W. Each work item is one dot product of a row segment with
            the same segment of x (length a multiple of 16, >= 16); W streams through TMU0 and
            x through TMU1 (so x stays in TMU1's cache), the 16 lane sums are reduced on the
            QPU (four rotate-adds) and 16 results are stored per DMA row.
``ew_add``, ``ew_sub``, ``ew_mul``
            out = a OP b over 16-float slices; each work item is a run of slices, stored in
            blocks of four VPM rows per DMA.
"""

from __future__ import annotations

from collections.abc import Callable

from . import qpuasm as q
from .qpuasm import R0, R1, R2, R3, R4, Program, ra, rb, small_imm

# VPM rows each QPU owns: QPU i uses rows [4 i, 4 i + 4) (48 of the VPM's 64 rows).
VPM_ROWS_PER_QPU = 4
GEMM_TILE_ROWS = 32
GEMM_TILE_COLS = 16


def vpm_write_setup() -> int:
    """Generic VPM write setup: horizontal, 32-bit, stride 1 (the row is or'ed in later)."""
    return (1 << 12) | (1 << 11) | (2 << 8)


def dma_store_setup(units: int) -> int:
    """VDW setup: `units` rows of 16 words, horizontal, 32-bit, VPM row or'ed in at bit 7."""
    return (2 << 30) | (units << 23) | (16 << 16) | (1 << 14)


DMA_STORE_STRIDE_0 = 3 << 30  # VDW stride setup: rows contiguous in memory


def _prologue(p: Program, table_stride_reg_b: q.Reg, params: list[q.Reg]) -> None:
    """Common start: per-QPU constants and the uniform pointer moved to this QPU's work list.

    Uniforms: qpu index, qpu count, work table base, work table stride (bytes per QPU), then
    the kernel's own launch parameters (into `params`). After this the uniforms stream the
    QPU's work list, which starts with its number of items (read into ra23).
    Leaves: rb31 = VPM write setup for this QPU's rows, rb30 = DMA store setup base (units
    field empty), rb29 = 4 * elem_num, ra31 = this QPU's first VPM row << 7.
    """
    p.mov(R0, q.UNIF, comment="qpu index")
    p.mov(R1, q.UNIF, comment="qpu count (unused)")
    p.mov(R2, q.UNIF, comment="work table base")
    p.mov(table_stride_reg_b, q.UNIF, comment="work table stride")
    for reg in params:
        p.mov(reg, q.UNIF, comment="launch parameter")
    p.alu(add=("shl", R1, R0, small_imm(2)), comment="first VPM row = 4 * qpu")
    p.mul("mul24", R3, R0, table_stride_reg_b)
    p.add("add", q.UNIF_ADDR, R2, R3, comment="uniforms now stream this QPU's work list")
    p.add("shl", ra(31), R1, small_imm(7))
    p.ldi(R2, vpm_write_setup())
    p.add("or", rb(31), R2, R1)
    p.ldi(rb(30), dma_store_setup(0))
    p.ldi(q.VPMVCD_WR_SETUP, DMA_STORE_STRIDE_0)
    p.add("shl", rb(29), q.ELEM_NUM, small_imm(2))
    p.mov(ra(23), q.UNIF, comment="work items")


def _count_down(p: Program, counter: q.Reg, exit_label: str) -> None:
    """counter -= 1; leave for `exit_label` once it went negative (three empty delay slots:
    nothing may be read past the work list)."""
    p.add("sub", counter, counter, small_imm(1), sf=True)
    p.branch(exit_label, cond="all_ns")
    for _ in range(3):
        p.nop()


def _finish(p: Program) -> None:
    p.label("done")
    p.mov(q.NOP, q.VPM_ST_WAIT, comment="last DMA store done")
    p.end()


# ---------------------------------------------------------------------------
# GEMM.


def gemm() -> Program:
    """The register-blocked SGEMM kernel (see the module docstring).

    Work list (uniforms): the number of items, then per item the A panel, B panel and C tile
    addresses.
    Launch parameter after the table: the k-loop count in bytes (64 per two k steps).
    Panels: A as [k][32] floats (rows i0..i0+31 at column k), B as [k][16] floats; both with
    one extra zero step at the end (the kernel fetches one step ahead) and K padded to even.
    C tile: 32 vectors of 16 floats, acc0[0..15] then acc1[0..15].
    """
    p = Program("gemm")
    c0 = [rb(n) for n in range(16)]  # acc0[n]: rows i0..i0+15
    c1 = [ra(n) for n in range(16)]  # acc1[n]: rows i0+16..i0+31
    a0 = (rb(16), rb(17))
    a1 = (ra(16), ra(17))
    b = (R0, R3)
    addr_a, addr_b, count, out, kbytes = ra(18), ra(19), ra(20), ra(21), ra(22)
    c256 = rb(20)
    _prologue(p, rb(28), [kbytes])
    p.ldi(q.R5_REP, 64)
    p.ldi(c256, 256)

    p.label("tile")
    p.add("sub", ra(23), ra(23), small_imm(1), sf=True)
    p.branch("done", cond="all_ns")
    p.mov(R2, q.UNIF, comment="A panel")
    p.mov(R1, q.UNIF, comment="B panel")
    p.mov(out, q.UNIF, comment="C tile")
    p.add("add", addr_a, R2, rb(29), comment="lane addresses")
    p.add("add", addr_b, R1, rb(29))
    p.mov(count, kbytes)
    # Step 0's operands now, into the "current" registers; the loop fetches one step ahead.
    p.mov(q.TMU0_S, addr_a)
    p.add("add", q.TMU0_S, addr_a, q.R5)
    p.mov(q.TMU0_S, addr_b)
    for n in range(16):
        p.alu(
            add=("or", c1[n], small_imm(0), small_imm(0)),
            mul=("v8min", c0[n], small_imm(0), small_imm(0)),
        )
    p.add("add", addr_a, addr_a, q.R5)
    for dst in (a0[0], a1[0], b[0]):
        p.nop(sig="ldtmu0")
        p.mov(dst, R4)
    p.mul("v8min", R1, small_imm(0), small_imm(0))
    p.add("add", addr_a, addr_a, q.R5)
    p.add("add", addr_b, addr_b, q.R5)

    body: list[Callable[[], None]] = []
    for s in (0, 1):
        cur, nxt = s, 1 - s
        overhead: dict[int, tuple] = {
            0: ("or", q.TMU0_S, addr_a, addr_a),
            1: ("add", q.TMU0_S, addr_a, q.R5),
            2: ("or", q.TMU0_S, addr_b, addr_b),
            3: ("add", addr_a, addr_a, q.R5),
            4: ("add", addr_a, addr_a, q.R5),
            5: ("add", addr_b, addr_b, q.R5),
            13: ("or", a0[nxt], R4, R4),
            14: ("or", a1[nxt], R4, R4),
            15: ("or", b[nxt], R4, R4),
        }
        if s == 1:
            overhead[6] = ("sub", count, count, q.R5)
        for n in range(16):
            prev_c1 = c1[n - 1] if n else c1[15]
            rot = ("v8min", R2, b[cur], b[cur], q.rotate(n)) if n else ("v8min", R2, b[cur], b[cur])
            body.append(_rotate_step(p, rot, prev_c1))
            body.append(
                _bind(
                    p.alu,
                    add=overhead.get(n),
                    mul=("fmul", R1, a0[cur], R2),
                    sf=(s == 1 and n == 6),
                )
            )
            body.append(
                _bind(
                    p.alu,
                    add=("fadd", c0[n], c0[n], R1),
                    mul=("fmul", R1, a1[cur], R2),
                    sig="ldtmu0" if n in (12, 13, 14) else "none",
                )
            )
    p.label("kloop")
    for i, emit in enumerate(body):
        if i == len(body) - 3:
            p.branch("kloop", cond="all_zc")
        emit()
    p.add("fadd", c1[15], c1[15], R1, comment="the last product")

    # Store the tile: 8 DMAs of 4 VPM rows.
    vectors = c0 + c1
    for chunk in range(8):
        p.mov(q.NOP, q.VPM_ST_WAIT, comment="the previous store has left the VPM")
        p.mov(q.VPMVCD_WR_SETUP, rb(31))
        for v in vectors[4 * chunk : 4 * chunk + 4]:
            p.mov(q.VPM_WRITE, v)
        p.ldi(R2, dma_store_setup(4))
        p.add("or", R2, R2, ra(31))
        p.mov(q.VPMVCD_WR_SETUP, R2)
        p.mov(q.VPM_ST_ADDR, out)
        p.add("add", out, out, c256)
    p.branch("tile")
    p.nop()
    p.nop()
    p.nop()
    _finish(p)
    return p


def _bind(fn: Callable, **kw) -> Callable[[], None]:
    return lambda: fn(**{k: v for k, v in kw.items() if v is not None})


def _rotate_step(p: Program, rot: tuple, prev_c1: q.Reg) -> Callable[[], None]:
    """I1 of a rotation: r2 = rot(b, n) on the mul ALU, the previous acc1 add on the add ALU."""
    if len(rot) == 5:
        op, dst, x, y, amount = rot

        def emit() -> None:
            p.alu(add=("fadd", prev_c1, prev_c1, R1), mul=(op, dst, x, y), rotate=amount)

        return emit
    return _bind(p.alu, add=("fadd", prev_c1, prev_c1, R1), mul=rot)


# ---------------------------------------------------------------------------
# GEMV.


def _tmu_step(p: Program, tmu: q.Reg, addr: q.Reg, sig: str) -> None:
    """Request the vector at `addr` (and advance it by r5 bytes) while receiving with `sig`."""
    p.alu(add=("add", addr, addr, q.R5), mul=("v8min", tmu, addr, addr), sig=sig)


def gemv() -> Program:
    """Dot products of row segments with vector segments, reduced on the QPU.

    Work list: the number of groups, this QPU's output address, then per group the number of
    items (1..16) and per item the W segment address, the x segment address and the segment
    length in pairs of 16-float vectors (>= 1). Item j of a group lands in lane j of one
    16-float row stored per group (the host reads the lanes it filled). W and x buffers need
    two vectors of readable memory after every segment (the kernel fetches two ahead).
    """
    p = Program("gemv")
    w_addr, x_addr, pairs, items, out = (ra(n) for n in (10, 11, 12, 13, 16))
    lane, collect = R3, rb(15)
    _prologue(p, rb(28), [])
    p.ldi(q.R5_REP, 64)
    p.mov(out, q.UNIF, comment="output rows")

    p.label("group")
    _count_down(p, ra(23), "done")
    p.mov(items, q.UNIF, comment="items in this group")
    p.alu(
        add=("or", lane, small_imm(0), small_imm(0)),
        mul=("v8min", collect, small_imm(0), small_imm(0)),
    )

    p.label("item")
    _count_down(p, items, "store")
    p.mov(R0, q.UNIF, comment="W segment")
    p.mov(R1, q.UNIF, comment="x segment")
    p.mov(pairs, q.UNIF, comment="pairs of vectors")
    p.add("add", w_addr, R0, rb(29))
    p.add("add", x_addr, R1, rb(29))
    p.alu(add=("or", R2, small_imm(0), small_imm(0)), mul=("v8min", R1, small_imm(0), small_imm(0)))
    for _ in range(2):  # two vectors ahead
        _tmu_step(p, q.TMU0_S, w_addr, "none")
        _tmu_step(p, q.TMU1_S, x_addr, "none")

    # Per vector: receive W (into r0) and x (r4), request two ahead, multiply, accumulate.
    p.label("kloop")
    for half in (0, 1):
        _tmu_step(p, q.TMU0_S, w_addr, "ldtmu0")
        if half == 1:
            p.branch("kloop", cond="all_zc")
        p.alu(add=("fadd", R2, R2, R1), mul=("v8min", R0, R4, R4))
        _tmu_step(p, q.TMU1_S, x_addr, "ldtmu1")
        p.alu(
            add=("sub", pairs, pairs, small_imm(1)) if half == 0 else None,
            mul=("fmul", R1, R0, R4),
            sf=half == 0,
        )
    # The last product, the four requests fetched ahead (dropped), and the lane sum.
    p.add("fadd", R2, R2, R1)
    p.nop()
    drops = iter(("ldtmu0", "ldtmu1", "ldtmu0", "ldtmu1", "none", "none", "none", "none"))
    for amount in (8, 4, 2, 1):
        p.alu(mul=("v8min", R1, R2, R2), rotate=q.rotate(amount))
        p.add("fadd", R2, R2, R1, sig=next(drops))
        p.nop(sig=next(drops))
    p.add("sub", q.NOP, q.ELEM_NUM, lane, sf=True, comment="Z in this item's lane")
    p.alu(add=("or", collect, R2, R2), cond_add="zs")
    p.branch("item")
    p.add("add", lane, lane, small_imm(1))
    p.nop()
    p.nop()

    p.label("store")
    p.mov(q.NOP, q.VPM_ST_WAIT)
    p.mov(q.VPMVCD_WR_SETUP, rb(31))
    p.mov(q.VPM_WRITE, collect)
    p.ldi(R2, dma_store_setup(1))
    p.add("or", q.VPMVCD_WR_SETUP, R2, ra(31))
    p.mov(q.VPM_ST_ADDR, out)
    p.branch("group")
    p.add("add", out, out, q.R5)
    p.nop()
    p.nop()
    _finish(p)
    return p


# ---------------------------------------------------------------------------
# Elementwise.

ELEMENTWISE_OPS = {"add": ("add", "fadd"), "sub": ("add", "fsub"), "mul": ("mul", "fmul")}


def elementwise(op: str) -> Program:
    """out = a OP b over blocks of four 16-float vectors.

    Work list: the number of items, then per item the a, b and out addresses of a run and its
    length in blocks of four vectors (>= 1). a and b need two vectors of readable memory after
    every run (the kernel fetches two ahead).
    """
    alu, name = ELEMENTWISE_OPS[op]
    p = Program(f"ew_{op}")
    a_addr, b_addr, out, blocks = ra(10), ra(11), ra(12), ra(13)
    _prologue(p, rb(28), [])
    p.ldi(q.R5_REP, 64)
    p.ldi(rb(20), 256)
    p.ldi(R2, dma_store_setup(4))
    p.add("or", rb(21), R2, ra(31), comment="DMA store setup for this QPU's four rows")

    p.label("item")
    _count_down(p, ra(23), "done")
    p.mov(R0, q.UNIF, comment="a")
    p.mov(R1, q.UNIF, comment="b")
    p.mov(out, q.UNIF, comment="out")
    p.mov(blocks, q.UNIF, comment="blocks of four vectors")
    p.add("add", a_addr, R0, rb(29))
    p.add("add", b_addr, R1, rb(29))
    for _ in range(2):
        _tmu_step(p, q.TMU0_S, a_addr, "none")
        _tmu_step(p, q.TMU1_S, b_addr, "none")

    p.label("block")
    p.mov(q.NOP, q.VPM_ST_WAIT, comment="the previous block has left the VPM")
    p.mov(q.VPMVCD_WR_SETUP, rb(31))
    for v in range(4):
        _tmu_step(p, q.TMU0_S, a_addr, "ldtmu0")
        p.alu(mul=("v8min", R0, R4, R4))
        _tmu_step(p, q.TMU1_S, b_addr, "ldtmu1")
        compute = (name, q.VPM_WRITE, R0, R4)
        p.alu(
            add=compute
            if alu == "add"
            else ("sub", blocks, blocks, small_imm(1))
            if v == 0
            else None,
            mul=compute if alu == "mul" else None,
            sf=v == 0 and alu == "mul",
        )
        if v == 0 and alu == "add":
            p.add("sub", blocks, blocks, small_imm(1), sf=True)
    p.mov(q.VPMVCD_WR_SETUP, rb(21))
    p.branch("block", cond="all_zc")
    p.mov(q.VPM_ST_ADDR, out)
    p.add("add", out, out, rb(20))
    p.nop()
    # Drop the four requests fetched ahead.
    for sig in ("ldtmu0", "ldtmu1", "ldtmu0", "ldtmu1"):
        p.nop(sig=sig)
    p.branch("item")
    p.nop()
    p.nop()
    p.nop()
    _finish(p)
    return p


KERNELS: dict[str, Callable[[], Program]] = {
    "gemm": gemm,
    "gemv": gemv,
    "ew_add": lambda: elementwise("add"),
    "ew_sub": lambda: elementwise("sub"),
    "ew_mul": lambda: elementwise("mul"),
}
