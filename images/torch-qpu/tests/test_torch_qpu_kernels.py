"""The QPULib kernels (emulator anywhere, qpu on a Pi) against torch.

Marked 'qpulib': skipped loudly when torch_qpu was built without QPULib.
The emulator runs at a few tens of M elements/s, so large shapes are few.
"""

from __future__ import annotations

import pytest
import torch

import torch_qpu

pytestmark = pytest.mark.qpulib

ELEMENTWISE = [
    (torch_qpu.add, torch.add),
    (torch_qpu.sub, torch.sub),
    (torch_qpu.mul, torch.mul),
]
SIZES = [0, 1, 2, 15, 16, 17, 31, 32, 33, 191, 192, 193, 1000, 4097]


def assert_dot_close(result: torch.Tensor, expected: torch.Tensor, scale: torch.Tensor) -> None:
    """Float32 sums in another order: error bounded relative to sum(|a_i b_i|)."""
    assert result.shape == expected.shape
    assert result.dtype == torch.float32
    tolerance = 1e-5 * scale + 1e-6
    error = (result - expected).abs()
    assert bool((error <= tolerance).all()), f"max error {error.max().item()}"


@pytest.mark.parametrize(("op", "ref"), ELEMENTWISE)
@pytest.mark.parametrize("n", SIZES)
def test_elementwise_sizes(backend: str, op, ref, n: int) -> None:
    a, b = torch.randn(n), torch.randn(n)
    a0, b0 = a.clone(), b.clone()
    result = op(a, b, backend=backend)
    torch.testing.assert_close(result, ref(a, b), rtol=1e-6, atol=1e-6)
    assert torch.equal(a, a0) and torch.equal(b, b0), "inputs must not be modified"


@pytest.mark.parametrize("num_qpus", [1, 2, 5, 12])
@pytest.mark.parametrize("n", [16, 17, 100, 16 * 12 + 5])
def test_elementwise_qpu_counts(backend: str, num_qpus: int, n: int) -> None:
    a, b = torch.randn(n), torch.randn(n)
    torch.testing.assert_close(torch_qpu.mul(a, b, backend=backend, num_qpus=num_qpus), a * b)


def test_elementwise_large(backend: str) -> None:
    a, b = torch.randn(100_003), torch.randn(100_003)
    torch.testing.assert_close(torch_qpu.add(a, b, backend=backend), a + b)


def test_elementwise_non_contiguous_and_out_alias(backend: str) -> None:
    a = torch.randn(9, 21).t()
    b = torch.randn(21, 9)
    expected = a - b
    torch.testing.assert_close(torch_qpu.sub(a, b, backend=backend), expected)
    out = torch.empty(9, 21).t()  # non-contiguous out
    assert torch_qpu.sub(a, b, out=out, backend=backend) is out
    torch.testing.assert_close(out, expected)
    c = torch.randn(50)
    d = torch.randn(50)
    expected = c + d
    torch_qpu.add(c, d, out=c, backend=backend)  # out aliasing an input, on request
    torch.testing.assert_close(c, expected)


MV_SHAPES = [(0, 5), (5, 0), (1, 1), (1, 16), (15, 15), (16, 16), (17, 17), (3, 33), (13, 100)]
# Fewer rows than QPUs and long rows: split by columns (dot_cols).
MV_SHAPES += [(1, 33), (1, 100_000), (2, 4099), (11, 700)]
MV_SHAPES += [(100, 10**i) for i in range(6)]


@pytest.mark.parametrize(("h", "w"), MV_SHAPES)
def test_mv_shapes(backend: str, h: int, w: int) -> None:
    m, v = torch.randn(h, w), torch.randn(w)
    m0, v0 = m.clone(), v.clone()
    result = torch_qpu.mv(m, v, backend=backend)
    assert_dot_close(result, torch.mv(m, v), m.abs() @ v.abs())
    assert torch.equal(m, m0) and torch.equal(v, v0)


@pytest.mark.parametrize("num_qpus", [1, 2, 3, 12])
@pytest.mark.parametrize("rows", [1, 2, 40])
def test_mv_row_and_column_splits(backend: str, num_qpus: int, rows: int) -> None:
    m, v = torch.randn(rows, 1000), torch.randn(1000)
    result = torch_qpu.mv(m, v, backend=backend, num_qpus=num_qpus)
    assert_dot_close(result, m @ v, m.abs() @ v.abs())


@pytest.mark.parametrize("num_qpus", [1, 3, 12])
def test_mv_qpu_counts_and_non_contiguous(backend: str, num_qpus: int) -> None:
    m = torch.randn(40, 70)[:, ::2]  # 40 x 35, strided
    v = torch.randn(70)[::2]
    result = torch_qpu.mv(m, v, backend=backend, num_qpus=num_qpus)
    assert_dot_close(result, m @ v, m.abs() @ v.abs())


@pytest.mark.parametrize(
    ("m", "k", "n"), [(0, 3, 4), (3, 0, 4), (1, 1, 1), (7, 33, 5), (16, 16, 16), (20, 47, 31)]
)
def test_mm_shapes(backend: str, m: int, k: int, n: int) -> None:
    a, b = torch.randn(m, k), torch.randn(k, n)
    assert_dot_close(torch_qpu.mm(a, b, backend=backend), a @ b, a.abs() @ b.abs())


def test_linear_and_layers(backend: str) -> None:
    torch.manual_seed(1)
    x, w, bias = torch.randn(2, 3, 19), torch.randn(6, 19), torch.randn(6)
    expected = torch.nn.functional.linear(x, w, bias)
    assert_dot_close(
        torch_qpu.linear(x, w, bias, backend=backend), expected, x.abs() @ w.abs().t() + bias.abs()
    )
    model = torch.nn.Sequential(torch.nn.Linear(19, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    with torch.no_grad():
        reference = model(x)
        torch_qpu.convert(model, backend=backend)
        torch.testing.assert_close(model(x), reference, rtol=1e-4, atol=1e-4)


def test_backward_runs_on_the_kernel_backend(backend: str) -> None:
    """Gradients of a small model match torch's, and the backward launched kernels too."""
    torch.manual_seed(2)
    x = torch.randn(5, 19, requires_grad=True)
    w = torch.randn(6, 19, requires_grad=True)
    bias = torch.randn(6, requires_grad=True)
    m, v = torch.randn(6, 6, requires_grad=True), torch.randn(6, requires_grad=True)

    def loss(fn_linear, fn_mv, fn_mul):
        y = fn_linear(x, w, bias)
        return fn_mul(fn_mv(m, y.sum(0)), v).sum()

    expected = torch.autograd.grad(
        loss(torch.nn.functional.linear, torch.mv, torch.mul), (x, w, bias, m, v)
    )
    launches = torch_qpu.stats()["launches"]
    got_loss = loss(
        lambda *t: torch_qpu.linear(*t, backend=backend),
        lambda *t: torch_qpu.mv(*t, backend=backend),
        lambda *t: torch_qpu.mul(*t, backend=backend),
    )
    forward_launches = torch_qpu.stats()["launches"] - launches
    got = torch.autograd.grad(got_loss, (x, w, bias, m, v))
    assert torch_qpu.stats()["launches"] - launches > forward_launches, "backward on the kernels"
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-4)


def test_kernels_compiled_once_and_pool_reused(backend: str) -> None:
    m, v = torch.randn(30, 50), torch.randn(50)
    a, b = torch.randn(500), torch.randn(500)
    torch_qpu.mv(m, v, backend=backend)
    torch_qpu.add(a, b, backend=backend)
    before = torch_qpu.stats()
    for _ in range(3):
        torch_qpu.mv(m, v, backend=backend, num_qpus=3)
        torch_qpu.add(a, b, backend=backend, num_qpus=7)
    after = torch_qpu.stats()
    assert after["kernel_compiles"] == before["kernel_compiles"]
    assert after["pool_capacity_floats"] == before["pool_capacity_floats"]
    assert after["launches"] == before["launches"] + 6


def test_operator_checks_reach_python(backend: str) -> None:
    """The C++ checks (TORCH_CHECK_TYPE/VALUE) arrive as TypeError/ValueError naming the problem."""
    ops = torch.ops.torch_qpu
    with pytest.raises(TypeError, match=r"a must be float32, got torch\.float64"):
        ops.mm(torch.ones(2, 2, dtype=torch.float64), torch.ones(2, 2), backend, 1)
    with pytest.raises(ValueError, match=r"num_qpus must be in 1\.\.12, got 13"):
        ops.mm(torch.ones(2, 2), torch.ones(2, 2), backend, 13)
    with pytest.raises(ValueError, match="out has shape"):
        ops.add.out(torch.ones(4), torch.ones(4), backend, 1, out=torch.ones(8)[::2][:3])
    other = "qpu" if backend == "emulator" else "emulator"
    with pytest.raises(RuntimeError, match=f"'{other}' backend is not part of this build"):
        ops.add(torch.ones(4), torch.ones(4), other, 1)
    with pytest.raises(torch_qpu.BackendUnavailableError):
        torch_qpu.add(torch.ones(4), torch.ones(4), backend=other)


def test_out_on_kernels_bumps_version_and_allows_aliasing(backend: str) -> None:
    a, b = torch.randn(33), torch.randn(33)
    expected = a * b
    version = a._version
    assert torch_qpu.mul(a, b, out=a, backend=backend) is a
    torch.testing.assert_close(a, expected)
    assert a._version > version
    m, v = torch.randn(5, 33), torch.randn(33)
    out = torch.empty(5)
    version = out._version
    torch_qpu.mv(m, v, out=out, backend=backend)
    assert_dot_close(out, m @ v, m.abs() @ v.abs())
    assert out._version > version


def test_concurrent_calls_from_threads(backend: str) -> None:
    """The GIL is released during launches; QPULib's global state is serialised."""
    from concurrent.futures import ThreadPoolExecutor

    torch.manual_seed(3)
    jobs = [
        (torch.randn(20, 77), torch.randn(77), torch.randn(300), torch.randn(300)) for _ in range(8)
    ]

    def run(job):
        m, v, a, b = job
        return torch_qpu.mv(m, v, backend=backend), torch_qpu.mul(a, b, backend=backend)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(run, jobs))
    for (m, v, a, b), (mv_result, mul_result) in zip(jobs, results):
        assert_dot_close(mv_result, m @ v, m.abs() @ v.abs())
        torch.testing.assert_close(mul_result, a * b)


def test_resident_weight_memory_freed_with_the_weight(backend: str) -> None:
    import gc

    x = torch.randn(2, 24)
    with torch.no_grad():
        layer = torch_qpu.nn.Linear.from_linear(torch.nn.Linear(24, 5), backend=backend)
        layer(x)
        held = torch_qpu.stats()["resident_matrices"]
        assert held >= 1
        del layer
        gc.collect()
        fresh = torch_qpu.nn.Linear.from_linear(torch.nn.Linear(24, 5), backend=backend)
        fresh(x)  # a resident call sweeps the entries of dead weights
        assert torch_qpu.stats()["resident_matrices"] == held
        torch_qpu.ResidentWeight().invalidate(fresh.weight)
        assert torch_qpu.stats()["resident_matrices"] == held - 1


def ticks_during(fn, interval: float = 1.0) -> int:
    """How often this thread counted while `fn` ran in another one: 0 if `fn` held the GIL.

    The switch interval is raised so that the GIL changes hands only when a
    thread gives it up: the worker wakes this thread, which then waits for the
    GIL; it gets it during `fn` only if `fn` releases it (a GIL-holding call of
    under `interval` seconds, e.g. sum(range(5_000_000)), gives 0).
    """
    import sys
    import threading

    ticks = [0]
    started, done = threading.Event(), threading.Event()
    during: list[int] = []

    def run() -> None:
        started.set()
        before = ticks[0]
        fn()
        during.append(ticks[0] - before)
        done.set()

    old = sys.getswitchinterval()
    sys.setswitchinterval(interval)
    try:
        worker = threading.Thread(target=run)
        worker.start()
        started.wait()
        while not done.is_set():
            ticks[0] += 1
        worker.join()
    finally:
        sys.setswitchinterval(old)
    return during[0]


def test_ticks_during_sees_a_gil_holding_call() -> None:
    assert ticks_during(lambda: sum(range(2_000_000))) == 0


@pytest.mark.parametrize("path", ["torch.ops", "direct"])
def test_kernels_release_the_gil(backend: str, path: str) -> None:
    m, v = torch.randn(64, 20_000), torch.randn(20_000)
    direct = torch_qpu._backend.extension().direct_mv
    if path == "direct":
        assert ticks_during(lambda: direct(m, v, backend, 12)) > 1000
    else:
        assert ticks_during(lambda: torch.ops.torch_qpu.mv(m, v, backend, 12)) > 1000


def test_linear_layer_keeps_weight_resident(backend: str) -> None:
    import copy
    import io

    torch.manual_seed(4)
    layer = torch_qpu.nn.Linear.from_linear(torch.nn.Linear(40, 7), backend=backend)
    x = torch.randn(3, 40)

    def expected() -> torch.Tensor:
        return torch.nn.functional.linear(x, layer.weight, layer.bias)

    def uploads() -> int:
        return int(torch_qpu.stats()["resident_uploads"])

    with torch.no_grad():
        torch.testing.assert_close(layer(x), expected(), rtol=1e-4, atol=1e-4)
        start = uploads()
        for _ in range(3):
            torch.testing.assert_close(layer(x), expected(), rtol=1e-4, atol=1e-4)
        assert uploads() == start, "unchanged weights are not copied again"
        layer.weight.mul_(2)  # in place: version bump, re-upload
        torch.testing.assert_close(layer(x), expected(), rtol=1e-4, atol=1e-4)
        assert uploads() == start + 1
        layer.load_state_dict({"weight": torch.randn(7, 40), "bias": torch.randn(7)})
        torch.testing.assert_close(layer(x), expected(), rtol=1e-4, atol=1e-4)
        layer.weight.data.add_(1.0)  # no version bump through .data ...
        layer.refresh()  # ... hence refresh()
        torch.testing.assert_close(layer(x), expected(), rtol=1e-4, atol=1e-4)
        twin = copy.deepcopy(layer)
        torch.testing.assert_close(twin(x), expected(), rtol=1e-4, atol=1e-4)
        buffer = io.BytesIO()
        torch.save(layer, buffer)
        buffer.seek(0)
        loaded = torch.load(buffer, weights_only=False)
        torch.testing.assert_close(loaded(x), expected(), rtol=1e-4, atol=1e-4)
