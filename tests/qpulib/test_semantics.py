"""Shift and rotate semantics of the emulator and the interpreter, against the QPU's.

The QPU takes a shift/rotate amount modulo 32 (its low 5 bits) and a vector-rotate
amount modulo 16 (r4[3:0]). Upstream QPULib shifted by the raw amount (undefined in C++
for a negative or >= 32 amount) and its interpreter aborted on every `ror`; the fix-ups
interpreter-shift-mod32, interpreter-ror-break, emulator-shift-mod32 and
vector-rotate-mod16 (images/qpulib/fixup.py) make both follow the hardware. AutoTest does
not generate rotations, so this program covers them. Each result line is checked against
the Python model below, never against the other evaluator.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _qpulib_suite import QPULibBuild

pytestmark = pytest.mark.unit  # fast and engine-free: `-m unit` runs it too

PROGRAM = Path(__file__).parent / "programs" / "ShiftSemantics.cpp"
LANES = 16


def signed(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def model(op: str, xs: list[int], ss: list[int], rotation: int) -> list[int]:
    if op == "rotate":
        amount = rotation & 15
        return [xs[(lane - amount) % LANES] for lane in range(LANES)]
    results = []
    for x, s in zip(xs, ss, strict=True):
        n, u = s & 31, x & 0xFFFFFFFF
        results.append(
            {
                "shl": signed(u << n),
                "asr": x >> n,
                "shr": signed(u >> n),
                "ror": signed((u >> n) | (u << (32 - n))),
            }[op]
        )
    return results


def test_shift_and_rotate_follow_the_qpu(qpulib: QPULibBuild) -> None:
    lines = qpulib.run(qpulib.compile("ShiftSemantics", PROGRAM)).splitlines()
    inputs = {line.split()[0]: [int(v) for v in line.split()[1:]] for line in lines[-2:]}
    xs, ss = inputs["x"], inputs["s"]
    assert any(s < 0 for s in ss) and any(s >= 32 for s in ss)
    checked = set()
    for line in lines[:-2]:
        evaluator, rotation, op, *values = line.split()
        expected = model(op, xs, ss, int(rotation))
        assert [int(v) for v in values] == expected, f"{evaluator} {op} (rotate by {rotation}): {line}"
        checked.add((evaluator, op))
    ops = {"shl", "asr", "shr", "ror", "rotate"}
    assert checked == {(e, op) for e in ("emu", "interpret") for op in ops}
