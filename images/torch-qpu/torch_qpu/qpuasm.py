"""A small assembler for the VideoCore IV QPU, for kernels QPULib cannot generate.

QPULib's code generator never pairs an add with a multiply in one instruction, so its
dot-product loops spend 22 instructions per 16 multiply-adds. The hot kernels
(torch_qpu/qpukernels.py) are therefore written here, instruction by instruction, and
assembled at build time (setup.py embeds the words in the extension); they run through
QPULib's own launch path (the mailbox on a Pi, VC4C's emulator under qpusim).

Encodings follow Broadcom's "VideoCore IV 3D Architecture Reference Guide" (2013), section 3
(instruction formats, signals, register addresses, small immediates). The assembler refuses what
the hardware cannot do or would do silently wrong, and says why: two register-file reads from the
same file, writes that need both ALUs on one file, a register-file value read by the next
instruction (a hazard the guide calls undefined), r4 read in the instruction that loads it, a
uniform read within two instructions of moving the uniform pointer.

Pure Python (no torch): setup.py imports it before torch is needed.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

__all__ = [
    "AsmError",
    "Program",
    "Reg",
    "decode",
    "disassemble",
    "ra",
    "rb",
    "small_imm",
]


class AsmError(ValueError):
    """An instruction the QPU cannot encode or would execute wrongly."""


# ---------------------------------------------------------------------------
# Registers.


@dataclass(frozen=True)
class Reg:
    """A register operand or destination.

    file: "acc" (r0-r5: read through the input muxes), "a"/"b" (a register-file address, in
    that file only), "any" (an I/O address valid in either file), "imm" (a small immediate,
    read through raddr_b). num: the mux (acc), address (a/b/any) or small-immediate field.
    """

    name: str
    file: str
    num: int
    readable: bool = True
    writable: bool = True

    def __repr__(self) -> str:
        return self.name


def ra(n: int) -> Reg:
    """General-purpose register n of register file A."""
    if not 0 <= n < 32:
        raise AsmError(f"ra{n}: register file A has ra0..ra31")
    return Reg(f"ra{n}", "a", n)


def rb(n: int) -> Reg:
    """General-purpose register n of register file B."""
    if not 0 <= n < 32:
        raise AsmError(f"rb{n}: register file B has rb0..rb31")
    return Reg(f"rb{n}", "b", n)


R0 = Reg("r0", "acc", 0)
R1 = Reg("r1", "acc", 1)
R2 = Reg("r2", "acc", 2)
R3 = Reg("r3", "acc", 3)
R4 = Reg("r4", "acc", 4, writable=False)  # TMU and SFU results (read only)
R5 = Reg("r5", "acc", 5, writable=False)  # written through R5_QUAD / R5_REP
ACC_WRITE = {0: 32, 1: 33, 2: 34, 3: 35}

# Reads (regfile-address side).
UNIF = Reg("unif", "any", 32, writable=False)
ELEM_NUM = Reg("elem_num", "a", 38, writable=False)
QPU_NUM = Reg("qpu_num", "b", 38, writable=False)
VPM_READ = Reg("vpm", "any", 48, writable=False)
VPM_LD_WAIT = Reg("vpm_ld_wait", "a", 50, writable=False)
VPM_ST_WAIT = Reg("vpm_st_wait", "b", 50, writable=False)
MUTEX_ACQUIRE = Reg("mutex_acq", "any", 51, writable=False)
NOP_READ = Reg("-", "any", 39, writable=False)

# Writes.
TMU_NOSWAP = Reg("tmu_noswap", "any", 36, readable=False)
R5_QUAD = Reg("r5quad", "a", 37, readable=False)
R5_REP = Reg("r5rep", "b", 37, readable=False)
HOST_INT = Reg("host_int", "any", 38, readable=False)
NOP = Reg("-", "any", 39, readable=False)
UNIF_ADDR = Reg("unif_addr", "any", 40, readable=False)
VPM_WRITE = Reg("vpm", "any", 48, readable=False)
VPMVCD_RD_SETUP = Reg("vr_setup", "a", 49, readable=False)
VPMVCD_WR_SETUP = Reg("vw_setup", "b", 49, readable=False)
VPM_LD_ADDR = Reg("vr_addr", "a", 50, readable=False)
VPM_ST_ADDR = Reg("vw_addr", "b", 50, readable=False)
MUTEX_RELEASE = Reg("mutex_rel", "any", 51, readable=False)
TMU0_S = Reg("tmu0_s", "any", 56, readable=False)
TMU1_S = Reg("tmu1_s", "any", 60, readable=False)


def small_imm(value: int | float) -> Reg:
    """A small immediate: an integer in -16..15 or a float power of two in 1/256..128."""
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value <= 15:
            return Reg(str(value), "imm", value)
        if -16 <= value < 0:
            return Reg(str(value), "imm", 32 + value)
    elif isinstance(value, float):
        for field_value in range(32, 48):
            if _small_float(field_value) == value:
                return Reg(repr(value), "imm", field_value)
    raise AsmError(
        f"{value!r} is not a small immediate (integers -16..15, powers of two 1/256..128)"
    )


def rotate(n: int) -> Reg:
    """The mul ALU's vector rotation by n (1..15) lanes upwards, or by r5 (n=0)."""
    if not 0 <= n <= 15:
        raise AsmError("a vector rotation is by 1..15 lanes, or 0 for r5")
    return Reg(f"<<{n}" if n else "<<r5", "imm", 48 + n)


def _small_float(field_value: int) -> float:
    return 2.0 ** (field_value - 32) if field_value < 40 else 2.0 ** (field_value - 48)


# ---------------------------------------------------------------------------
# Operations, conditions, signals.

ADD_OPS = {
    "nop": 0, "fadd": 1, "fsub": 2, "fmin": 3, "fmax": 4, "fminabs": 5, "fmaxabs": 6, "ftoi": 7,
    "itof": 8, "add": 12, "sub": 13, "shr": 14, "asr": 15, "ror": 16, "shl": 17, "min": 18,
    "max": 19, "and": 20, "or": 21, "xor": 22, "not": 23, "clz": 24, "v8adds": 30, "v8subs": 31,
}  # fmt: skip
MUL_OPS = {
    "nop": 0,
    "fmul": 1,
    "mul24": 2,
    "v8muld": 3,
    "v8min": 4,
    "v8max": 5,
    "v8adds": 6,
    "v8subs": 7,
}
CONDS = {"never": 0, "always": 1, "zs": 2, "zc": 3, "ns": 4, "nc": 5, "cs": 6, "cc": 7}
BRANCH_CONDS = {
    "all_zs": 0, "all_zc": 1, "any_zs": 2, "any_zc": 3, "all_ns": 4, "all_nc": 5, "any_ns": 6,
    "any_nc": 7, "all_cs": 8, "all_cc": 9, "any_cs": 10, "any_cc": 11, "always": 15,
}  # fmt: skip
SIGNALS = {
    "bkpt": 0, "none": 1, "thrsw": 2, "end": 3, "wait_sb": 4, "unlock_sb": 5, "lthrsw": 6,
    "ldcov": 7, "ldcol": 8, "ldcol_end": 9, "ldtmu0": 10, "ldtmu1": 11, "ldalpha": 12,
    "small_imm": 13, "load_imm": 14, "branch": 15,
}  # fmt: skip
SIGNAL_NAMES = {v: k for k, v in SIGNALS.items()}
UNARY = {"ftoi", "itof", "not", "clz"}


@dataclass(frozen=True)
class Op:
    """One ALU's operation: op dst, a, b (b ignored by unary ops)."""

    op: str
    dst: Reg
    a: Reg
    b: Reg


def _op(table: dict[str, int], name: str, dst: Reg, a: Reg, b: Reg | None) -> Op:
    if name not in table:
        raise AsmError(f"unknown operation {name!r}")
    if not dst.writable:
        raise AsmError(f"{dst} cannot be written")
    for src in (a, b):
        if src is not None and not src.readable:
            raise AsmError(f"{src} cannot be read")
    return Op(name, dst, a, b if b is not None else a)


# ---------------------------------------------------------------------------
# Instructions.


@dataclass
class Instr:
    """One instruction before encoding (kept for the hazard checks and the listing)."""

    kind: str  # "alu", "ldi", "branch", "sema"
    add: Op | None = None
    mul: Op | None = None
    sig: str = "none"
    cond_add: str = "always"
    cond_mul: str = "always"
    sf: bool = False
    imm: int = 0
    dsts: tuple[Reg, Reg] = (NOP, NOP)
    label: str | None = None  # branch target
    branch_cond: str = "always"
    comment: str = ""
    labels: list[str] = field(default_factory=list)
    rotate: Reg | None = None  # the mul ALU's vector rotation (a small immediate 48..63)


def _read_slots(
    ops: Sequence[Op], rotate: Reg | None = None
) -> tuple[int, int, dict[Reg, int], bool]:
    """raddr_a, raddr_b and the mux of every source; whether a small immediate is used."""
    raddr_a: int | None = None
    raddr_b: int | None = rotate.num if rotate is not None else None
    small = rotate is not None
    muxes: dict[Reg, int] = {}
    sources = [src for op in ops for src in (op.a, op.b)]
    # Fixed-file operands first, then either-file ones into whatever is left.
    for src in sorted(sources, key=lambda s: s.file == "any"):
        if src in muxes:
            continue
        if src.file == "acc":
            muxes[src] = src.num
        elif src.file == "imm":
            if raddr_b is not None and not (small and raddr_b == src.num):
                raise AsmError(f"{src}: a small immediate needs raddr_b, which is taken")
            raddr_b, small, muxes[src] = src.num, True, 7
        elif src.file == "a" or (src.file == "any" and raddr_a in (None, src.num)):
            if raddr_a not in (None, src.num):
                raise AsmError(f"{src}: register file A is already read in this instruction")
            raddr_a, muxes[src] = src.num, 6
        else:
            if raddr_b not in (None, src.num) or small:
                raise AsmError(f"{src}: register file B is already read in this instruction")
            raddr_b, muxes[src] = src.num, 7
    return (39 if raddr_a is None else raddr_a), (39 if raddr_b is None else raddr_b), muxes, small


def _write_swap(add_dst: Reg, mul_dst: Reg) -> int:
    """ws: 0 = add writes file A and mul file B, 1 = the other way round."""
    options = []
    for ws in (0, 1):
        add_file, mul_file = ("a", "b") if ws == 0 else ("b", "a")
        if add_dst.file in ("acc", "any", add_file) and mul_dst.file in ("acc", "any", mul_file):
            options.append(ws)
    if not options:
        raise AsmError(f"{add_dst} (add) and {mul_dst} (mul) cannot be written in one instruction")
    return options[0]


def _dst_addr(dst: Reg) -> int:
    return ACC_WRITE[dst.num] if dst.file == "acc" else dst.num


def encode(ins: Instr, pc: int, labels: dict[str, int]) -> int:
    """The 64-bit word of one instruction at address pc (in instructions)."""
    ws = _write_swap(*ins.dsts)
    waddr_add, waddr_mul = (_dst_addr(d) for d in ins.dsts)
    cond_add, cond_mul = CONDS[ins.cond_add], CONDS[ins.cond_mul]
    common = (ws << 44) | (waddr_add << 38) | (waddr_mul << 32) | (int(ins.sf) << 45)
    if ins.kind == "ldi":
        return (0xE << 60) | (cond_add << 49) | (cond_mul << 46) | common | (ins.imm & 0xFFFFFFFF)
    if ins.kind == "sema":
        return (0xE << 60) | (0b100 << 57) | (cond_add << 49) | (cond_mul << 46) | common | ins.imm
    if ins.kind == "branch":
        if ins.label not in labels:
            raise AsmError(f"branch to unknown label {ins.label!r}")
        offset = (labels[ins.label] - (pc + 4)) * 8
        return (
            (0xF << 60)
            | (BRANCH_CONDS[ins.branch_cond] << 52)
            | (1 << 51)
            | common
            | (offset & 0xFFFFFFFF)
        )
    add = ins.add or Op("nop", NOP, R0, R0)
    mul = ins.mul or Op("nop", NOP, R0, R0)
    used = [op for op in (add, mul) if op.op != "nop"]
    raddr_a, raddr_b, muxes, small = _read_slots(used, ins.rotate)
    if ins.rotate is not None and any(m not in (0, 1, 2, 3) for m in (muxes[mul.a], muxes[mul.b])):
        raise AsmError("a full vector rotation needs both mul ALU inputs from r0-r3")
    sig = SIGNALS["small_imm"] if small else SIGNALS[ins.sig]
    if small and ins.sig != "none":
        raise AsmError(f"a small immediate and the signal {ins.sig} cannot share an instruction")
    if add.op == "nop":
        cond_add = 0
    if mul.op == "nop":
        cond_mul = 0

    def mux(op: Op, src: Reg) -> int:
        return muxes[src] if op.op != "nop" else 0

    return (
        (sig << 60)
        | (cond_add << 49)
        | (cond_mul << 46)
        | common
        | (MUL_OPS[mul.op] << 29)
        | (ADD_OPS[add.op] << 24)
        | (raddr_a << 18)
        | (raddr_b << 12)
        | (mux(add, add.a) << 9)
        | (mux(add, add.b) << 6)
        | (mux(mul, mul.a) << 3)
        | mux(mul, mul.b)
    )


class Program:
    """A QPU program: instructions appended in order, labels, then ``assemble()``.

    Each ALU op is given as (op, dst, a[, b]); ``alu(add=..., mul=...)`` pairs them in one
    instruction. The checks in ``assemble()`` run over program order and branch targets.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.instrs: list[Instr] = []
        self._pending_labels: list[str] = []

    # -- building ----------------------------------------------------------
    def label(self, name: str) -> None:
        self._pending_labels.append(name)

    def _append(self, ins: Instr) -> Instr:
        ins.labels, self._pending_labels = self._pending_labels, []
        self.instrs.append(ins)
        return ins

    def alu(
        self,
        add: tuple | None = None,
        mul: tuple | None = None,
        *,
        sig: str = "none",
        cond_add: str = "always",
        cond_mul: str = "always",
        sf: bool = False,
        rotate: Reg | None = None,
        comment: str = "",
    ) -> Instr:
        """One ALU instruction; rotate: rotate the mul ALU's inputs (qpuasm.rotate(n))."""
        add_op = _op(ADD_OPS, *_pad(add)) if add else None
        mul_op = _op(MUL_OPS, *_pad(mul)) if mul else None
        if sig not in SIGNALS or sig in ("small_imm", "load_imm", "branch"):
            raise AsmError(f"{sig!r} is not a signal an ALU instruction can carry")
        dsts = (add_op.dst if add_op else NOP, mul_op.dst if mul_op else NOP)
        if rotate is not None and (mul_op is None or rotate.file != "imm" or rotate.num < 48):
            raise AsmError("rotate= takes qpuasm.rotate(n) and needs a mul ALU operation")
        return self._append(
            Instr(
                "alu",
                add_op,
                mul_op,
                sig,
                cond_add,
                cond_mul,
                sf,
                dsts=dsts,
                comment=comment,
                rotate=rotate,
            )
        )

    def add(self, op: str, dst: Reg, a: Reg, b: Reg | None = None, **kw) -> Instr:
        return self.alu(add=(op, dst, a, b), **kw)

    def mul(self, op: str, dst: Reg, a: Reg, b: Reg | None = None, **kw) -> Instr:
        return self.alu(mul=(op, dst, a, b), **kw)

    def mov(self, dst: Reg, src: Reg, **kw) -> Instr:
        return self.alu(add=("or", dst, src, src), **kw)

    def nop(self, sig: str = "none", comment: str = "") -> Instr:
        return self.alu(sig=sig, comment=comment)

    def ldi(self, dst: Reg, value: int | float, dst2: Reg = NOP, cond: str = "always") -> Instr:
        """Load a 32-bit immediate (an int, or a float's bits) into one or two registers."""
        word = (
            struct.unpack("<I", struct.pack("<f", value))[0] if isinstance(value, float) else value
        )
        if not -(2**31) <= word < 2**32:
            raise AsmError(f"{value} does not fit 32 bits")
        for dst_reg in (dst, dst2):
            if not dst_reg.writable:
                raise AsmError(f"{dst_reg} cannot be written")
        return self._append(
            Instr("ldi", imm=word & 0xFFFFFFFF, dsts=(dst, dst2), cond_add=cond, cond_mul=cond)
        )

    def branch(self, label: str, cond: str = "always") -> Instr:
        """A relative branch; the next three instructions (delay slots) always execute."""
        if cond not in BRANCH_CONDS:
            raise AsmError(f"unknown branch condition {cond!r}")
        return self._append(Instr("branch", label=label, branch_cond=cond))

    def sema(self, number: int, acquire: bool) -> Instr:
        if not 0 <= number < 16:
            raise AsmError("semaphores are 0..15")
        return self._append(Instr("sema", imm=(int(acquire) << 4) | number))

    def end(self) -> None:
        """Interrupt the host, then the program-end signal and its two delay slots."""
        self.mov(HOST_INT, small_imm(1))
        self.nop(sig="end")
        self.nop()
        self.nop()

    # -- output ------------------------------------------------------------
    def labels(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for pc, ins in enumerate(self.instrs):
            for name in ins.labels:
                if name in found:
                    raise AsmError(f"{self.name}: label {name!r} defined twice")
                found[name] = pc
        return found

    def assemble(self, check: bool = True) -> list[int]:
        """The program's 64-bit words, after the hazard checks (``check=False`` skips them:
        only for tests that show the emulator catching a bad kernel)."""
        if self._pending_labels:
            raise AsmError(
                f"{self.name}: label(s) {self._pending_labels} after the last instruction"
            )
        labels = self.labels()
        if check:
            check_hazards(self.name, self.instrs, labels)
        words = []
        for pc, ins in enumerate(self.instrs):
            try:
                words.append(encode(ins, pc, labels))
            except AsmError as error:
                raise AsmError(f"{self.name}, instruction {pc}: {error}") from None
        return words


def _pad(spec: tuple) -> tuple:
    return (*spec, None) if len(spec) == 3 else spec


# ---------------------------------------------------------------------------
# Static checks.


def _regfile_reads(ins: Instr) -> set[tuple[str, int]]:
    if ins.kind != "alu":
        return set()
    reads = set()
    for op in (ins.add, ins.mul):
        if op is None or op.op == "nop":
            continue
        for src in (op.a, op.b):
            if src.file in ("a", "b") and src.num < 32:
                reads.add((src.file, src.num))
    return reads


def _regfile_writes(ins: Instr) -> set[tuple[str, int]]:
    if ins.kind == "sema":
        return set()
    ws = _write_swap(*ins.dsts)
    files = ("a", "b") if ws == 0 else ("b", "a")
    return {(f, d.num) for f, d in zip(files, ins.dsts) if d.file in ("a", "b") and d.num < 32}


def _reads_r4(ins: Instr) -> bool:
    return ins.kind == "alu" and any(
        op is not None and op.op != "nop" and R4 in (op.a, op.b) for op in (ins.add, ins.mul)
    )


def _reads(ins: Instr, reg: Reg) -> bool:
    return ins.kind == "alu" and any(
        op is not None
        and op.op != "nop"
        and any(s.num == reg.num and s.file in ("any", reg.file) for s in (op.a, op.b))
        for op in (ins.add, ins.mul)
    )


def check_hazards(name: str, instrs: Sequence[Instr], labels: dict[str, int]) -> None:
    """Refuse what the reference guide leaves undefined (see the module docstring).

    Successors of an instruction: the next one, and for a branch's third delay slot the
    branch target as well (the instruction after it only when the branch is conditional).
    """
    successors: dict[int, set[int]] = {pc: {pc + 1} for pc in range(len(instrs))}
    for pc, ins in enumerate(instrs):
        if ins.kind == "branch" and ins.label in labels and pc + 3 < len(instrs):
            last_slot = pc + 3
            if ins.branch_cond == "always":
                successors[last_slot] = {labels[ins.label]}
            else:
                successors[last_slot].add(labels[ins.label])
    for pc, ins in enumerate(instrs):
        where = f"{name}, instruction {pc}"
        if ins.sig in ("ldtmu0", "ldtmu1") and _reads_r4(ins):
            raise AsmError(f"{where}: reads r4 in the instruction that loads it ({ins.sig})")
        writes = _regfile_writes(ins)
        acc_writes = (
            {d.num for d in ins.dsts if d.file == "acc"} if ins.kind in ("alu", "ldi") else set()
        )
        for nxt in successors[pc]:
            if nxt < len(instrs) and instrs[nxt].rotate is not None and instrs[nxt].mul is not None:
                rotated = {s.num for s in (instrs[nxt].mul.a, instrs[nxt].mul.b) if s.file == "acc"}
                if acc_writes & rotated:
                    raise AsmError(
                        f"{where}: r{sorted(acc_writes & rotated)[0]} is written here and rotated "
                        f"by instruction {nxt}; a rotated accumulator needs one instruction "
                        "between its write and the rotation"
                    )
        for nxt in successors[pc]:
            if nxt >= len(instrs):
                continue
            early = writes & _regfile_reads(instrs[nxt])
            if early:
                file, num = sorted(early)[0]
                raise AsmError(
                    f"{where}: r{file}{num} is written here and read by instruction {nxt}; "
                    "a register-file value can be read two instructions after its write"
                )
        if ins.kind in ("alu", "ldi") and UNIF_ADDR in ins.dsts:
            frontier = set(successors[pc])
            for _ in range(2):
                for nxt in frontier:
                    if nxt < len(instrs) and _reads(instrs[nxt], UNIF):
                        raise AsmError(
                            f"{where}: instruction {nxt} reads a uniform within two instructions "
                            "of the uniform pointer's change"
                        )
                frontier = {s for f in frontier if f < len(instrs) for s in successors[f]}


# ---------------------------------------------------------------------------
# Disassembly (for the listing and the round-trip tests against QPULib's and VC4C's encoders).

_ADD_NAMES = {v: k for k, v in ADD_OPS.items()}
_MUL_NAMES = {v: k for k, v in MUL_OPS.items()}
_COND_NAMES = {v: k for k, v in CONDS.items()}
_BRANCH_NAMES = {v: k for k, v in BRANCH_CONDS.items()}


def _waddr_name(addr: int, file: str) -> str:
    if addr < 32:
        return f"r{file}{addr}"
    names = {
        32: "r0", 33: "r1", 34: "r2", 35: "r3", 36: "tmu_noswap", 38: "host_int", 39: "-",
        40: "unif_addr", 48: "vpm", 51: "mutex_rel", 56: "tmu0_s", 57: "tmu0_t", 58: "tmu0_r",
        59: "tmu0_b", 60: "tmu1_s", 61: "tmu1_t", 62: "tmu1_r", 63: "tmu1_b", 52: "sfu_recip",
        53: "sfu_recipsqrt", 54: "sfu_exp", 55: "sfu_log",
    }  # fmt: skip
    per_file = {37: ("r5quad", "r5rep"), 49: ("vr_setup", "vw_setup"), 50: ("vr_addr", "vw_addr")}
    if addr in per_file:
        return per_file[addr][0 if file == "a" else 1]
    return names.get(addr, f"w{file}{addr}")


def _raddr_name(addr: int, file: str) -> str:
    if addr < 32:
        return f"r{file}{addr}"
    names = {32: "unif", 39: "-", 48: "vpm", 51: "mutex_acq"}
    per_file = {38: ("elem_num", "qpu_num"), 50: ("vpm_ld_wait", "vpm_st_wait")}
    if addr in per_file:
        return per_file[addr][0 if file == "a" else 1]
    return names.get(addr, f"r{file}?{addr}")


@dataclass(frozen=True)
class Decoded:
    """The fields of one instruction word (what the round-trip tests compare)."""

    kind: str
    fields: dict

    def text(self) -> str:
        f = self.fields
        if self.kind == "ldi":
            return f"ldi {f['dst_add']}, {f['dst_mul']}, 0x{f['imm']:08x}"
        if self.kind == "sema":
            return f"{'sacq' if f['acquire'] else 'srel'} {f['number']}"
        if self.kind == "branch":
            return f"brr.{f['cond']} {f['offset'] // 8:+d}"
        parts = []
        for alu in ("add", "mul"):
            if f[f"{alu}_op"] != "nop":
                cond = "" if f[f"cond_{alu}"] == "always" else f".{f[f'cond_{alu}']}"
                parts.append(
                    f"{f[f'{alu}_op']}{cond} {f[f'dst_{alu}']}, {f[f'{alu}_a']}, {f[f'{alu}_b']}"
                )
        if f["rotate"]:
            parts[-1] += f" {f['rotate']}"
        sig = "" if f["sig"] in ("none", "small_imm") else f" ; {f['sig']}"
        return (" ; ".join(parts) or "nop") + (".sf" if f["sf"] else "") + sig


def decode(word: int) -> Decoded:
    """Decode one 64-bit instruction word (a negative int is taken as its two's complement)."""
    word &= 0xFFFFFFFFFFFFFFFF
    sig = word >> 60
    ws = (word >> 44) & 1
    waddr_add, waddr_mul = (word >> 38) & 63, (word >> 32) & 63
    add_file, mul_file = ("a", "b") if ws == 0 else ("b", "a")
    dsts = {
        "dst_add": _waddr_name(waddr_add, add_file),
        "dst_mul": _waddr_name(waddr_mul, mul_file),
    }
    if sig == 0xF:
        offset = word & 0xFFFFFFFF
        offset = offset - (1 << 32) if offset & 0x80000000 else offset
        cond = _BRANCH_NAMES.get((word >> 52) & 15, "?")
        return Decoded("branch", {"cond": cond, "rel": (word >> 51) & 1, "offset": offset, **dsts})
    if sig == 0xE:
        kind = (word >> 57) & 7
        if kind == 0b100:
            return Decoded("sema", {"acquire": bool((word >> 4) & 1), "number": word & 15, **dsts})
        return Decoded("ldi", {"imm": word & 0xFFFFFFFF, "sf": bool((word >> 45) & 1), **dsts})
    raddr_a, raddr_b = (word >> 18) & 63, (word >> 12) & 63

    def source(mux: int) -> str:
        if mux < 6:
            return f"r{mux}"
        if mux == 6:
            return _raddr_name(raddr_a, "a")
        if sig == SIGNALS["small_imm"]:
            if raddr_b < 16:
                return str(raddr_b)
            if raddr_b < 32:
                return str(raddr_b - 32)
            if raddr_b < 48:
                return repr(_small_float(raddr_b))
            return f"<<{raddr_b - 48}" if raddr_b > 48 else "<<r5"
        return _raddr_name(raddr_b, "b")

    rotation = ""
    if sig == SIGNALS["small_imm"] and raddr_b >= 48 and ((word >> 29) & 7) != 0:
        rotation = f"<<{raddr_b - 48}" if raddr_b > 48 else "<<r5"
    fields = {
        "rotate": rotation,
        "sig": SIGNAL_NAMES[sig],
        "sf": bool((word >> 45) & 1),
        "cond_add": _COND_NAMES[(word >> 49) & 7],
        "cond_mul": _COND_NAMES[(word >> 46) & 7],
        "add_op": _ADD_NAMES.get((word >> 24) & 31, f"add?{(word >> 24) & 31}"),
        "mul_op": _MUL_NAMES[(word >> 29) & 7],
        "add_a": source((word >> 9) & 7),
        "add_b": source((word >> 6) & 7),
        "mul_a": source((word >> 3) & 7),
        "mul_b": source(word & 7),
        "unpack": (word >> 57) & 7,
        "pm": (word >> 56) & 1,
        "pack": (word >> 52) & 15,
        **dsts,
    }
    return Decoded("alu", fields)


def disassemble(words: Iterable[int]) -> str:
    return "\n".join(f"{pc:5d}: {decode(w).text()}" for pc, w in enumerate(words))


def c_array(name: str, words: Sequence[int]) -> str:
    """A C++ definition of the words as the 32-bit pairs QPULib's launch path takes
    (low word first, as QPULib's encode() emits them)."""
    lines = [f"inline constexpr uint32_t {name}[] = {{"]
    for word in words:
        lines.append(f"    0x{word & 0xFFFFFFFF:08x}u, 0x{word >> 32:08x}u,")
    lines.append("};")
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Re-assembly of decoded words (the round-trip tests against other encoders).

_WRITE_REGS = {
    36: TMU_NOSWAP, 38: HOST_INT, 39: NOP, 40: UNIF_ADDR, 48: VPM_WRITE, 51: MUTEX_RELEASE,
    56: TMU0_S, 60: TMU1_S,
}  # fmt: skip


def _write_reg(addr: int, file: str) -> Reg:
    if addr < 32:
        return Reg(f"r{file}{addr}", file, addr)
    if 32 <= addr <= 35:
        return (R0, R1, R2, R3)[addr - 32]
    per_file = {
        37: (R5_QUAD, R5_REP),
        49: (VPMVCD_RD_SETUP, VPMVCD_WR_SETUP),
        50: (VPM_LD_ADDR, VPM_ST_ADDR),
    }
    if addr in per_file:
        return per_file[addr][0 if file == "a" else 1]
    if addr in _WRITE_REGS:
        return _WRITE_REGS[addr]
    return Reg(_waddr_name(addr, file), "any", addr, readable=False)


def _read_reg(addr: int, file: str) -> Reg:
    if addr < 32:
        return Reg(f"r{file}{addr}", file, addr)
    fixed = {38: (ELEM_NUM, QPU_NUM), 50: (VPM_LD_WAIT, VPM_ST_WAIT)}
    if addr in fixed:
        return fixed[addr][0 if file == "a" else 1]
    return Reg(
        _raddr_name(addr, file), "any" if addr in (32, 39, 48, 51) else file, addr, writable=False
    )


def reassemble(word: int) -> int:
    """Decode an ALU, load-immediate or branch word into operations and registers and encode
    it again with this assembler (what the round-trip tests compare, by meaning)."""
    word &= 0xFFFFFFFFFFFFFFFF
    sig = word >> 60
    ws = (word >> 44) & 1
    add_file, mul_file = ("a", "b") if ws == 0 else ("b", "a")
    dsts = (_write_reg((word >> 38) & 63, add_file), _write_reg((word >> 32) & 63, mul_file))
    cond_add = _COND_NAMES[(word >> 49) & 7]
    cond_mul = _COND_NAMES[(word >> 46) & 7]
    sf = bool((word >> 45) & 1)
    if sig == 0xF:
        offset = word & 0xFFFFFFFF
        offset = offset - (1 << 32) if offset & 0x80000000 else offset
        ins = Instr(
            "branch", label="target", branch_cond=_BRANCH_NAMES[(word >> 52) & 15], dsts=dsts
        )
        return encode(ins, 0, {"target": 4 + offset // 8})
    if sig == 0xE:
        kind = "sema" if (word >> 57) & 7 == 0b100 else "ldi"
        imm = word & (0x1F if kind == "sema" else 0xFFFFFFFF)
        ins = Instr(kind, imm=imm, dsts=dsts, cond_add=cond_add, cond_mul=cond_mul, sf=sf)
        return encode(ins, 0, {})
    raddr_a, raddr_b = (word >> 18) & 63, (word >> 12) & 63
    small = sig == SIGNALS["small_imm"]
    rotate_reg = None
    if small and raddr_b >= 48:
        rotate_reg = rotate(raddr_b - 48)

    def source(mux: int) -> Reg:
        if mux < 6:
            return (R0, R1, R2, R3, R4, R5)[mux]
        if mux == 6:
            return _read_reg(raddr_a, "a")
        if small:
            if raddr_b < 32:
                return small_imm(raddr_b if raddr_b < 16 else raddr_b - 32)
            return small_imm(_small_float(raddr_b))
        return _read_reg(raddr_b, "b")

    add_op = _ADD_NAMES[(word >> 24) & 31]
    mul_op = _MUL_NAMES[(word >> 29) & 7]
    add = (
        Op(add_op, dsts[0], source((word >> 9) & 7), source((word >> 6) & 7))
        if add_op != "nop"
        else None
    )
    mul = (
        Op(mul_op, dsts[1], source((word >> 3) & 7), source(word & 7)) if mul_op != "nop" else None
    )
    ins = Instr(
        "alu", add, mul, "none" if small else SIGNAL_NAMES[sig], cond_add, cond_mul, sf,
        dsts=dsts, rotate=rotate_reg if mul is not None else None,
    )  # fmt: skip
    return encode(ins, 0, {})
