"""QPULib's example programs (Tests/*.cpp), run in emulation mode against the library as
built for the images, each checked against a result Python computes on its own.

The programs print their results; the expected values are derived here from what the
program is meant to compute (never by running another QPULib program). HeatMap runs at a
small size (its constants are rewritten in a copy) and is checked against a float32
re-implementation of its stencil.
"""

from __future__ import annotations

import math
import re
import struct
from pathlib import Path

import pytest
from _qpulib_suite import QPULibBuild

pytestmark = pytest.mark.unit  # fast and engine-free: `-m unit` runs them too

LANES = 16


def indexed_lines(out: str) -> list[str]:
    """The values of 'i: value' lines, checked to be numbered 0, 1, 2, ..."""
    values = []
    for number, line in enumerate(out.splitlines()):
        index, sep, value = line.partition(": ")
        assert sep and index == str(number), f"line {number}: {line!r}"
        values.append(value)
    return values


def run_example(qpulib: QPULibBuild, name: str) -> str:
    return qpulib.run(qpulib.compile(name))


def test_hello(qpulib: QPULibBuild) -> None:
    assert indexed_lines(run_example(qpulib, "Hello")) == ["1"] * LANES


def test_tri(qpulib: QPULibBuild) -> None:
    expected = [str(n * (n + 1) // 2) for n in range(LANES)]
    assert indexed_lines(run_example(qpulib, "Tri")) == expected


def test_tri_float(qpulib: QPULibBuild) -> None:
    expected = [f"{n * (n + 1) // 2:.6f}" for n in range(LANES)]
    assert indexed_lines(run_example(qpulib, "TriFloat")) == expected


def test_multi_tri_four_qpus(qpulib: QPULibBuild) -> None:
    expected = [str(n * (n + 1) // 2) for n in range(4 * LANES)]
    assert indexed_lines(run_example(qpulib, "MultiTri")) == expected


def test_gcd(qpulib: QPULibBuild) -> None:
    lines = run_example(qpulib, "GCD").splitlines()
    assert len(lines) == LANES
    for line in lines:
        match = re.fullmatch(r"gcd\((\d+), (\d+)\) = (-?\d+)", line)
        assert match, line
        a, b, result = map(int, match.groups())
        assert 100 <= a < 200 and 100 <= b < 200, line  # the program's inputs
        assert result == math.gcd(a, b), line


def test_print(qpulib: QPULibBuild) -> None:
    expected = ["<" + ",".join([str(i)] * LANES) + ">" for i in range(20)]
    assert run_example(qpulib, "Print").splitlines() == expected


def test_req_recv(qpulib: QPULibBuild) -> None:
    # p[i] = p[i] + p[16 + i] with p[j] = j, via gather/receive.
    expected = [str(i + (LANES + i)) for i in range(LANES)]
    assert indexed_lines(run_example(qpulib, "ReqRecv")) == expected


def test_id_twelve_qpus(qpulib: QPULibBuild) -> None:
    # Each of the 12 QPUs writes its id into its own 16-element row.
    expected = [str(i // LANES) for i in range(12 * LANES)]
    assert indexed_lines(run_example(qpulib, "ID")) == expected


@pytest.mark.parametrize("name", ["OET", "Sort"])
def test_odd_even_transposition_sort(qpulib: QPULibBuild, name: str) -> None:
    data = [100 - i for i in range(32)]
    assert indexed_lines(run_example(qpulib, name)) == [str(v) for v in sorted(data)]


# ---- HeatMap ---------------------------------------------------------------------------

HEATMAP_WIDTH = 48  # a multiple of 16
HEATMAP_HEIGHT = 24
HEATMAP_STEPS = 40
HEATMAP_EDITS = (
    ("const int WIDTH  = 512-16;", f"const int WIDTH  = {HEATMAP_WIDTH};"),
    ("const int HEIGHT = 504;", f"const int HEIGHT = {HEATMAP_HEIGHT};"),
    ("const int NSTEPS = 1500;", f"const int NSTEPS = {HEATMAP_STEPS};"),
    # The hot spots come from rand(): print them so the reference needs no libc rand.
    (
        "mapA[y*NCOLS+x] = (float) (1000*t);",
        'mapA[y*NCOLS+x] = (float) (1000*t); printf("# spot %d %d %d\\n", x, y, t);',
    ),
)


def small_heatmap_source(src: Path, workdir: Path) -> Path:
    text = (src / "Tests" / "HeatMap.cpp").read_text(encoding="utf-8")
    for old, new in HEATMAP_EDITS:
        assert text.count(old) == 1, f"HeatMap.cpp: expected one {old!r} (upstream changed?)"
        text = text.replace(old, new)
    path = workdir / "HeatMapSmall.cpp"
    path.write_text(text, encoding="utf-8")
    return path


def f32(x: float) -> float:
    """Round to IEEE single precision (the QPU's float)."""
    return struct.unpack("f", struct.pack("f", x))[0]


def heatmap_reference(spots: list[tuple[int, int, int]], width: int, height: int, steps: int) -> list[int]:
    """The program's output pixels: its stencil in float32, zero-padded, ping-ponged as it is."""
    ncols, nrows = width + 16, height + 2
    map_a = [[0.0] * ncols for _ in range(nrows)]
    map_b = [[0.0] * ncols for _ in range(nrows)]
    for x, y, t in spots:
        map_a[y][x] = float(1000 * t)

    def step(src: list[list[float]], dst: list[list[float]]) -> None:
        for y in range(height):
            rows = src[y : y + 3]
            out = dst[y + 1]
            for x in range(width):
                left = [0.0 if x == 0 else row[x - 1] for row in rows]
                right = [row[x + 1] for row in rows]  # column `width` is the zero padding
                # Same operands, same order as the kernel: f32 rounding after every op.
                terms = (left[0], rows[0][x], right[0], left[1], right[1], left[2], rows[2][x], right[2])
                total = terms[0]
                for term in terms[1:]:
                    total = f32(total + term)
                centre = rows[1][x]
                out[x] = f32(centre - f32(0.25 * f32(centre - f32(total * 0.125))))

    for i in range(steps):
        if i & 1:
            step(map_b, map_a)
        else:
            step(map_a, map_b)
    pixels = []
    for y in range(height):
        for x in range(width):
            value = int(map_b[y + 1][x])  # C's (int) truncates toward zero, as int() does
            pixels.append(min(max(value, 0), 255))
    return pixels


def test_heatmap_small(qpulib: QPULibBuild) -> None:
    exe = qpulib.compile("HeatMapSmall", small_heatmap_source(qpulib.src, qpulib.workdir))
    lines = qpulib.run(exe).splitlines()
    spots = [tuple(map(int, line.split()[2:])) for line in lines if line.startswith("# spot ")]
    assert len(spots) == 10, lines[:12]
    body = [line for line in lines if not line.startswith("#")]
    assert body[:3] == ["P2", f"{HEATMAP_WIDTH} {HEATMAP_HEIGHT}", "255"], body[:3]
    pixels = [int(v) for v in body[3:]]
    expected = heatmap_reference(spots, HEATMAP_WIDTH, HEATMAP_HEIGHT, HEATMAP_STEPS)
    assert len(pixels) == len(expected) == HEATMAP_WIDTH * HEATMAP_HEIGHT
    assert any(0 < v < 255 for v in expected), "reference is trivial: pick other sizes"
    wrong = [
        (i % HEATMAP_WIDTH, i // HEATMAP_WIDTH, p, e)
        for i, (p, e) in enumerate(zip(pixels, expected, strict=True))
        if p != e
    ]
    assert not wrong, f"{len(wrong)} pixels differ (x, y, got, expected), first: {wrong[:10]}"
