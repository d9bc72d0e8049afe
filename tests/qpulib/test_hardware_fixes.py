"""QPU mode's host side (mailbox, GPU memory), fixed up by images/qpulib/fixup.py for what real
hardware trips on, run on this host against a fake firmware: programs/FakeMailbox.cpp defines
ioctl/open/mmap/munmap/close, which take libc's place for libqpu.so (symbol interposition).

- fix 4 (mailbox-replies-checked): a refused or unanswered property call throws;
- fix 5 (gpu-memory-freed-on-every-path): the mapping is unmapped by its size in bytes, and the
  GPU memory is unlocked and freed when a later step of the allocation fails.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from _qpulib_suite import QPULibBuild

pytestmark = pytest.mark.unit

PROGRAM = Path(__file__).parent / "programs" / "FakeMailbox.cpp"


def fake(qpulib_qpu: QPULibBuild, scenario: str) -> tuple[str, dict[str, int]]:
    out = qpulib_qpu.run(qpulib_qpu.compile("FakeMailbox", PROGRAM), args=[scenario])
    last = out.strip().splitlines()[-1]
    counts = dict(zip(last.split()[::2], map(int, last.split()[1::2]), strict=True))
    return out, counts


def test_allocation_unmaps_bytes_and_frees(qpulib_qpu: QPULibBuild) -> None:
    out, counts = fake(qpulib_qpu, "ok")
    assert "allocated 3221229568" in out, out  # the fake's bus address 0xC0001000
    # 16 ints: 64 bytes mapped and unmapped (upstream unmapped 16 "bytes", the element count)
    assert counts == {"allocs": 1, "locks": 1, "unlocks": 1, "frees": 1, "mapped": 64, "unmapped": 64}


@pytest.mark.parametrize(
    ("scenario", "message"),
    [
        ("status-error", "mailbox property tag 0x0003000c failed, status 0x80000001"),
        ("tag-unanswered", "mailbox property tag 0x0003000c not answered by the firmware"),
    ],
)
def test_refused_property_call_throws(qpulib_qpu: QPULibBuild, scenario: str, message: str) -> None:
    out, counts = fake(qpulib_qpu, scenario)
    assert re.search(rf"^caught: QPULib: {re.escape(message)}$", out, flags=re.MULTILINE), out
    assert counts["locks"] == 0 and counts["mapped"] == 0, counts  # nothing used a bogus handle


@pytest.mark.parametrize("scenario", ["lock-fails", "mmap-fails"])
def test_failed_allocation_frees_gpu_memory(qpulib_qpu: QPULibBuild, scenario: str) -> None:
    out, counts = fake(qpulib_qpu, scenario)
    assert "caught: QPULib: " in out, out
    # the allocation is given back to the firmware (which would keep it past process exit)
    assert counts["allocs"] == counts["frees"] == 1, counts
    assert counts["unlocks"] == (1 if scenario == "mmap-fails" else 0), counts
