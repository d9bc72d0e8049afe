"""API tests on the cpu backend: always run (no QPULib needed).

The cpu backend runs torch's kernels behind torch_qpu's operators, so its
results are checked against references computed element by element in
Python (float64), not against the same torch call.
"""

from __future__ import annotations

import operator

import pytest
import torch

import torch_qpu

ELEMENTWISE = [
    (torch_qpu.add, torch.add),
    (torch_qpu.sub, torch.sub),
    (torch_qpu.mul, torch.mul),
]


def test_cpu_backend_always_available() -> None:
    assert "cpu" in torch_qpu.available_backends()
    assert torch_qpu.available_backends()[-1] == "cpu"


def test_unknown_backend_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown backend"):
        torch_qpu.set_backend("gpu")
    with pytest.raises(ValueError, match="unknown backend"):
        torch_qpu.add(torch.ones(2), torch.ones(2), backend="tpu")


def test_unavailable_backend_explains_the_fix() -> None:
    for name in ("qpu", "emulator"):
        if name in torch_qpu.available_backends():
            continue
        with pytest.raises(torch_qpu.BackendUnavailableError):
            torch_qpu.set_backend(name)
        with pytest.raises(torch_qpu.BackendUnavailableError, match=r"QPULIB|qpu|emulation"):
            torch_qpu.mv(torch.ones(2, 2), torch.ones(2), backend=name)


@pytest.mark.parametrize("bad", [0, 13, -1])
def test_num_qpus_range(bad: int) -> None:
    with pytest.raises(ValueError, match="num_qpus"):
        torch_qpu.set_num_qpus(bad)


def test_auto_uses_cpu_without_qpu() -> None:
    torch_qpu.set_backend("auto")
    torch_qpu.set_auto_threshold(0)
    a, b = torch.randn(100), torch.randn(100)
    launches = torch_qpu.stats()["launches"]
    result = torch_qpu.add(a, b)
    torch.testing.assert_close(result.double(), py_elementwise(operator.add, a, b))
    if "qpu" not in torch_qpu.available_backends():
        assert torch_qpu.stats()["launches"] == launches, "auto never picks the emulator"


PY_ELEMENTWISE = [
    (torch_qpu.add, operator.add),
    (torch_qpu.sub, operator.sub),
    (torch_qpu.mul, operator.mul),
]


def py_elementwise(fn, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Reference computed in Python floats, element by element."""
    flat = [fn(x, y) for x, y in zip(a.reshape(-1).tolist(), b.reshape(-1).tolist())]
    return torch.tensor(flat, dtype=torch.float64).reshape(a.shape)


def py_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(M, K) @ (K, N) as Python sums of products (float64)."""
    rows, cols = a.tolist(), b.t().tolist()
    return torch.tensor(
        [[sum(x * y for x, y in zip(r, c)) for c in cols] for r in rows], dtype=torch.float64
    ).reshape(a.shape[0], b.shape[1])


def assert_close32(result: torch.Tensor, expected: torch.Tensor) -> None:
    """A float32 result against a float64 reference (sums in another order)."""
    assert result.dtype == torch.float32
    torch.testing.assert_close(result.double(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("op", "fn"), PY_ELEMENTWISE)
@pytest.mark.parametrize("shape", [(0,), (1,), (17,), (3, 5), (2, 0, 4)])
def test_elementwise_cpu(op, fn, shape) -> None:
    a, b = torch.randn(shape), torch.randn(shape)
    a0, b0 = a.clone(), b.clone()
    result = op(a, b, backend="cpu")
    assert result.dtype == torch.float32 and result.shape == a.shape
    torch.testing.assert_close(result.double(), py_elementwise(fn, a, b), rtol=1e-6, atol=1e-6)
    assert torch.equal(a, a0) and torch.equal(b, b0)
    assert result.data_ptr() not in (a.data_ptr(), b.data_ptr()) or a.numel() == 0


def test_cpu_backend_takes_float64_for_reference_work() -> None:
    a, b = torch.randn(7, dtype=torch.float64), torch.randn(7, dtype=torch.float64)
    result = torch_qpu.mul(a, b)  # auto picks cpu for float64
    assert result.dtype == torch.float64
    torch.testing.assert_close(result, py_elementwise(operator.mul, a, b))


def test_out_argument_is_filled_and_returned() -> None:
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    out = torch.empty(4, 4)
    version = out._version
    assert torch_qpu.mul(a, b, out=out, backend="cpu") is out
    torch.testing.assert_close(out.double(), py_elementwise(operator.mul, a, b))
    assert out._version > version, "out= must bump the version counter"
    out_mv = torch.empty(4)
    assert torch_qpu.mv(a, b[0], out=out_mv, backend="cpu") is out_mv
    assert_close32(out_mv, py_matmul(a, b[0].unsqueeze(1)).squeeze(1))
    out_mm = torch.empty(4, 4)
    assert torch_qpu.mm(a, b, out=out_mm, backend="cpu") is out_mm
    assert_close32(out_mm, py_matmul(a, b))


def test_out_refuses_autograd() -> None:
    a = torch.randn(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="out= does not support automatic differentiation"):
        torch_qpu.add(a, a, out=torch.empty(3), backend="cpu")
    with pytest.raises(RuntimeError, match="don't support automatic differentiation"):
        torch.ops.torch_qpu.add.out(a, a, "cpu", 12, out=torch.empty(3))
    with torch.no_grad():
        torch_qpu.add(a, a, out=torch.empty(3), backend="cpu")


def test_non_contiguous_inputs() -> None:
    a = torch.randn(6, 8).t()
    b = torch.randn(8, 6)
    torch.testing.assert_close(
        torch_qpu.add(a, b, backend="cpu").double(), py_elementwise(operator.add, a, b)
    )
    m = torch.randn(10, 7)[:, ::2]
    v = torch.randn(8)[::2]
    assert_close32(torch_qpu.mv(m, v, backend="cpu"), py_matmul(m, v.unsqueeze(1)).squeeze(1))


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda: torch_qpu.add(torch.ones(3, dtype=torch.float64), torch.ones(3)),
            TypeError,
            "float32",
        ),
        (
            lambda: torch_qpu.add(torch.ones(3), torch.ones(3, dtype=torch.int32)),
            TypeError,
            "float32",
        ),
        (lambda: torch_qpu.add([1.0], torch.ones(1)), TypeError, "torch.Tensor"),
        (lambda: torch_qpu.add(torch.ones(3), torch.ones(4)), ValueError, "shapes"),
        (lambda: torch_qpu.add(torch.ones(3, device="meta"), torch.ones(3)), ValueError, "CPU"),
        (lambda: torch_qpu.mv(torch.ones(3, 4), torch.ones(3)), ValueError, "mv"),
        (lambda: torch_qpu.mv(torch.ones(3), torch.ones(3)), ValueError, "2-D"),
        (
            lambda: torch_qpu.mm(torch.ones(3, 4), torch.ones(3, 4)),
            ValueError,
            "cannot be multiplied",
        ),
        (lambda: torch_qpu.linear(torch.ones(2, 3), torch.ones(4, 5)), ValueError, "linear"),
        (
            lambda: torch_qpu.linear(torch.ones(2, 3), torch.ones(4, 3), torch.ones(3)),
            ValueError,
            "bias",
        ),
        (lambda: torch_qpu.add(torch.ones(3), torch.ones(3), out=torch.ones(4)), ValueError, "out"),
        (
            lambda: torch_qpu.add(
                torch.ones(3), torch.ones(3), out=torch.ones(3, dtype=torch.float64)
            ),
            TypeError,
            "out is torch.float64",
        ),
        (
            lambda: torch_qpu.mv(torch.ones(3, 4, dtype=torch.int32), torch.ones(4)),
            TypeError,
            "int32",
        ),
        (
            lambda: torch.ops.torch_qpu.mm(torch.ones(2, 2), torch.ones(2, 2), "cpu", 13),
            ValueError,
            "num_qpus",
        ),
        (
            lambda: torch.ops.torch_qpu.mm(torch.ones(2, 2), torch.ones(2, 2), "gpu", 1),
            ValueError,
            "unknown backend 'gpu'",
        ),
    ],
)
def test_clear_errors(call, error, match) -> None:
    with pytest.raises(error, match=match):
        call()


def test_mm_and_linear_cpu() -> None:
    a, b = torch.randn(5, 7), torch.randn(7, 3)
    assert_close32(torch_qpu.mm(a, b, backend="cpu"), py_matmul(a, b))
    x, w, bias = torch.randn(2, 3, 7), torch.randn(4, 7), torch.randn(4)
    expected = (py_matmul(x.reshape(6, 7), w.t()) + bias.double()).reshape(2, 3, 4)
    assert_close32(torch_qpu.linear(x, w, bias, backend="cpu"), expected)


def test_convert_swaps_linear_layers() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Sequential(torch.nn.Linear(16, 3))
    )
    x = torch.randn(4, 8)
    with torch.no_grad():
        expected = model(x)
    converted = torch_qpu.convert(model, backend="cpu")
    assert converted is model
    assert isinstance(model[0], torch_qpu.nn.Linear)
    assert isinstance(model[2][0], torch_qpu.nn.Linear)
    assert not any(type(m) is torch.nn.Linear for m in model.modules())
    torch.testing.assert_close(model(x), expected)


def test_convert_single_linear_and_state_dict() -> None:
    layer = torch.nn.Linear(5, 2, bias=False)
    new = torch_qpu.convert(layer, backend="cpu")
    assert isinstance(new, torch_qpu.nn.Linear)
    assert set(new.state_dict()) == {"weight"}
    x = torch.randn(3, 5)
    assert_close32(new(x), py_matmul(x, layer.weight.detach().t()))


def test_stats_counts_launches() -> None:
    stats = torch_qpu.stats()
    assert set(stats) == {
        "kernel_compiles",
        "launches",
        "resident_uploads",
        "resident_matrices",
        "pool_capacity_floats",
        "gpu_floats",
        "abandoned_floats",
        "qpusim_cycles",
        "qpusim_max_launch_cycles",
        "launch_estimate_ratio_max",
        "launch_estimate_ratio_qpus",
        "unusable",
    }
    a = torch.randn(40)
    torch_qpu.add(a, a, backend="cpu")
    assert torch_qpu.stats()["launches"] == stats["launches"], "the cpu backend launches nothing"
    kernel = next((b for b in torch_qpu.available_backends() if b != "cpu"), None)
    if kernel is None:
        assert torch_qpu.build_mode() is None and stats["launches"] == 0
    else:
        torch_qpu.add(a, a, backend=kernel)
        assert torch_qpu.stats()["launches"] == stats["launches"] + 1


def test_operators_take_the_backend_as_a_string() -> None:
    for name in ("add", "sub", "mul", "mv", "mm", "linear"):
        packet = getattr(torch.ops.torch_qpu, name)
        assert 'str backend="cpu"' in str(packet.default._schema)
        assert "Tensor(a!) out" in str(packet.out._schema)


def test_auto_picks_qpu_only_above_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    from torch_qpu import _backend

    monkeypatch.setattr(_backend, "available_backends", lambda: ["qpu", "cpu"])
    torch_qpu.set_auto_threshold(1000)
    assert _backend.resolve("auto", 999) == "cpu"
    assert _backend.resolve("auto", 1000) == "qpu"
    monkeypatch.setattr(_backend, "available_backends", lambda: ["emulator", "cpu"])
    assert _backend.resolve("auto", 10**9) == "cpu", "auto never picks the emulator"


def test_requires_grad_is_fine_on_cpu_backend() -> None:
    a = torch.randn(3, requires_grad=True)
    torch_qpu.mul(a, a, backend="cpu").sum().backward()
    torch.testing.assert_close(a.grad, 2 * a.detach())


def test_auto_without_working_qpus_uses_cpu_with_one_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Hardware fix 3: a qpu build whose probe launch failed (faked here: the firmware's
    refusal cannot be caused off a Pi) does not offer qpu; auto warns once, then uses cpu."""
    from torch_qpu import _backend

    monkeypatch.setattr(_backend, "build_mode", lambda: "qpu")
    monkeypatch.setattr(_backend, "qpu_probe", lambda: "the firmware refused the QPU job")
    monkeypatch.setattr(_backend, "qpu_device_problems", lambda: [])
    monkeypatch.setattr(_backend, "_warned_auto", False)
    assert _backend.available_backends() == ["cpu"]
    torch_qpu.set_auto_threshold(0)
    with pytest.warns(RuntimeWarning, match="the firmware refused the QPU job") as caught:
        assert _backend.resolve("auto", 10**6) == "cpu"
        assert _backend.resolve("auto", 10**6) == "cpu"
    assert len(caught) == 1
    with pytest.raises(torch_qpu.BackendUnavailableError, match="probe launch failed"):
        _backend.resolve("qpu", 10**6)


def test_gpu_memory_is_copied_by_aligned_word_loops() -> None:
    """Hardware fix 1: no memcpy/memset on GPU memory (Device memory on arm64, where their
    unaligned tails fault): the only memcpy calls bit-cast one word in host memory."""
    from pathlib import Path

    source = (Path(__file__).resolve().parents[1] / "csrc" / "module.cpp").read_text()
    assert "memset(" not in source
    calls = [line.strip() for line in source.splitlines() if "memcpy(" in line]
    assert calls == [
        "std::memcpy(&word, src + i, sizeof word);",
        "std::memcpy(dst + i, &word, sizeof word);",
    ]
    assert "volatile uint32_t* gpu_words(Buffer& buffer)" in source
