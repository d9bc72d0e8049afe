"""The QPU assembler (torch_qpu/qpuasm.py) and the kernels written with it (qpukernels.py).

Encodings are checked against words fixed by Broadcom's reference guide (the canonical nop and
program end), against decoding (every kernel instruction decodes to what was written and
re-encodes to the same word), and the assembler refuses what the hardware cannot do. The
round trips against QPULib's encoder and VC4C's disassembler need those libraries and run in
the qpusim tests (test_torch_qpu_qpusim.py, tests/qpulib/test_qpusim.py).
"""

from __future__ import annotations

import pytest

from torch_qpu import qpuasm as q
from torch_qpu import qpukernels
from torch_qpu.qpuasm import R0, R1, R2, R3, R4, AsmError, Program, ra, rb, small_imm

pytestmark = pytest.mark.unit


def one(build) -> int:
    p = Program("t")
    build(p)
    return p.assemble()[0]


def test_canonical_words_of_the_reference_guide() -> None:
    # nop: signal 1, both ALUs nop writing address 39, both reads of address 39.
    assert one(lambda p: p.nop()) == 0x100009E7_009E7000
    assert one(lambda p: p.nop(sig="end")) == 0x300009E7_009E7000
    assert one(lambda p: p.nop(sig="ldtmu0")) == 0xA00009E7_009E7000


def test_fields_land_where_the_guide_says() -> None:
    word = one(lambda p: p.alu(add=("fadd", ra(5), ra(5), R1), mul=("fmul", R1, R4, q.UNIF)))
    fields = q.decode(word).fields
    assert (word >> 24) & 31 == q.ADD_OPS["fadd"] and (word >> 29) & 7 == q.MUL_OPS["fmul"]
    assert (word >> 18) & 63 == 5 and (word >> 12) & 63 == 32  # ra5 on A, uniform on B
    assert (word >> 38) & 63 == 5 and (word >> 44) & 1 == 0  # add writes file A
    assert fields["add_a"] == "ra5" and fields["mul_b"] == "unif" and fields["dst_mul"] == "r1"


def test_write_swap_follows_the_add_destination() -> None:
    word = one(lambda p: p.alu(add=("fadd", rb(3), rb(3), R1), mul=("fmul", R1, ra(7), R2)))
    assert (word >> 44) & 1 == 1
    assert q.decode(word).fields["dst_add"] == "rb3"


def test_small_immediates_and_rotation() -> None:
    assert small_imm(-16).num == 16 and small_imm(15).num == 15 and small_imm(0.5).num == 47
    word = one(lambda p: p.alu(mul=("v8min", R2, R0, R0), rotate=q.rotate(3)))
    assert word >> 60 == q.SIGNALS["small_imm"] and (word >> 12) & 63 == 51
    assert q.decode(word).text() == "v8min r2, r0, r0 <<3"
    with pytest.raises(AsmError, match="small immediate"):
        small_imm(16)
    with pytest.raises(AsmError, match="r0-r3"):
        one(lambda p: p.alu(mul=("v8min", R2, ra(1), ra(1)), rotate=q.rotate(3)))


def test_load_immediate_and_branch() -> None:
    word = one(lambda p: p.ldi(rb(20), 256))
    assert word >> 57 == 0b1110000 and word & 0xFFFFFFFF == 256 and (word >> 44) & 1 == 1
    p = Program("b")
    p.label("top")
    p.nop()
    p.branch("top", cond="all_zc")
    for _ in range(3):
        p.nop()
    branch = p.assemble()[1]
    assert branch >> 60 == 0xF and (branch >> 52) & 15 == q.BRANCH_CONDS["all_zc"]
    assert q.decode(branch).fields["offset"] == (0 - (1 + 4)) * 8  # relative to PC + 4


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda p: p.alu(add=("add", R0, ra(1), ra(2))), "register file A is already read"),
        (lambda p: p.alu(add=("add", R0, rb(1), small_imm(1))), "needs raddr_b"),
        (
            lambda p: p.alu(add=("or", ra(1), R0, R0), mul=("v8min", ra(2), R0, R0)),
            "cannot be written",
        ),
        (lambda p: p.alu(add=("or", R0, small_imm(1), small_imm(1)), sig="ldtmu0"), "signal"),
        (lambda p: p.mov(R0, q.TMU0_S), "cannot be read"),
        (lambda p: p.mov(R4, R0), "cannot be written"),
        (lambda p: p.alu(add=("fdiv", R0, R0, R0)), "unknown operation"),
        (lambda p: p.branch("nowhere"), "unknown label"),
    ],
)
def test_refuses_what_the_hardware_cannot_encode(build, message: str) -> None:
    p = Program("bad")
    with pytest.raises(AsmError, match=message):
        build(p)
        p.assemble()


def test_refuses_a_register_file_read_right_after_its_write() -> None:
    p = Program("hazard")
    p.mov(ra(3), R0)
    p.mov(R1, ra(3))
    with pytest.raises(AsmError, match="ra3 is written here and read by instruction 1"):
        p.assemble()
    p = Program("fine")
    p.mov(ra(3), R0)
    p.nop()
    p.mov(R1, ra(3))
    p.assemble()


def test_refuses_a_hazard_across_a_branch_target() -> None:
    p = Program("loop")
    p.label("top")
    p.mov(R1, ra(3))
    p.branch("top")
    p.nop()
    p.nop()
    p.mov(ra(3), R0)  # the last delay slot: the next instruction is "top"
    with pytest.raises(AsmError, match="read by instruction 0"):
        p.assemble()


def test_refuses_r4_in_the_instruction_that_loads_it() -> None:
    p = Program("r4")
    p.alu(add=("or", R0, R4, R4), sig="ldtmu0")
    with pytest.raises(AsmError, match="reads r4 in the instruction that loads it"):
        p.assemble()


def test_refuses_a_uniform_read_just_after_moving_the_pointer() -> None:
    p = Program("unif")
    p.mov(q.UNIF_ADDR, R0)
    p.nop()
    p.mov(R1, q.UNIF)
    with pytest.raises(AsmError, match="within two instructions"):
        p.assemble()


def test_refuses_rotating_an_accumulator_written_just_before() -> None:
    p = Program("rot")
    p.mov(R3, R0)
    p.alu(mul=("v8min", R2, R3, R3), rotate=q.rotate(1))
    with pytest.raises(AsmError, match="rotated"):
        p.assemble()


@pytest.mark.parametrize("name", sorted(qpukernels.KERNELS))
def test_every_kernel_assembles_and_round_trips(name: str) -> None:
    words = qpukernels.KERNELS[name]().assemble()
    assert words[-3:] == [0x300009E7_009E7000, 0x100009E7_009E7000, 0x100009E7_009E7000]
    for word in words:
        assert (
            q.reassemble(word) == word
            or q.decode(q.reassemble(word)).text() == q.decode(word).text()
        )


def test_gemm_inner_loop_pairs_a_multiply_with_every_add() -> None:
    """The claim the kernel is built on: 48 instructions per k step, every one multiplying."""
    words = qpukernels.gemm().assemble()
    listing = [q.decode(w) for w in words]
    start = next(
        i for i, d in enumerate(listing) if d.kind == "alu" and d.fields["mul_op"] == "fmul"
    )
    loop = listing[start - 1 : start - 1 + 97]  # two k steps and the branch
    alu = [d for d in loop if d.kind == "alu"]
    assert sum(d.kind == "branch" for d in loop) == 1 and len(alu) == 96
    assert all(d.fields["mul_op"] in ("fmul", "v8min") for d in alu)
    assert sum(d.fields["mul_op"] == "fmul" for d in alu) == 64
    assert sum(d.fields["add_op"] == "fadd" for d in alu) == 64


def test_c_array_is_low_word_first() -> None:
    text = q.c_array("k", [0x100009E7_009E7000])
    assert "0x009e7000u, 0x100009e7u" in text


def test_listing_names_registers_as_the_guide_does() -> None:
    words = qpukernels.elementwise("add").assemble()
    text = q.disassemble(words)
    assert "tmu0_s" in text and "vw_setup" in text and "vpm_st_wait" in text and "ldtmu1" in text


def test_unused_r3_rotation_source_is_allowed_after_a_gap() -> None:
    p = Program("gap")
    p.mov(R3, R0)
    p.nop()
    p.alu(mul=("v8min", R2, R3, R3), rotate=q.rotate(1))
    p.assemble()
