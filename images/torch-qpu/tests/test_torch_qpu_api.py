"""API tests on the cpu backend: always run (no QPULib needed)."""

from __future__ import annotations

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
    torch.testing.assert_close(torch_qpu.add(a, b), a + b)


@pytest.mark.parametrize(("op", "ref"), ELEMENTWISE)
@pytest.mark.parametrize("shape", [(0,), (1,), (17,), (3, 5), (2, 0, 4)])
def test_elementwise_cpu(op, ref, shape) -> None:
    a, b = torch.randn(shape), torch.randn(shape)
    a0, b0 = a.clone(), b.clone()
    torch.testing.assert_close(op(a, b, backend="cpu"), ref(a, b))
    assert torch.equal(a, a0) and torch.equal(b, b0)


def test_out_argument_is_filled_and_returned() -> None:
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    out = torch.empty(4, 4)
    assert torch_qpu.mul(a, b, out=out, backend="cpu") is out
    torch.testing.assert_close(out, a * b)
    out_mv = torch.empty(4)
    assert torch_qpu.mv(a, b[0], out=out_mv, backend="cpu") is out_mv


def test_non_contiguous_inputs() -> None:
    a = torch.randn(6, 8).t()
    b = torch.randn(8, 6)
    torch.testing.assert_close(torch_qpu.add(a, b, backend="cpu"), a + b)
    m = torch.randn(10, 7)[:, ::2]
    v = torch.randn(8)[::2]
    torch.testing.assert_close(torch_qpu.mv(m, v, backend="cpu"), m @ v)


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
    ],
)
def test_clear_errors(call, error, match) -> None:
    with pytest.raises(error, match=match):
        call()


def test_mm_and_linear_cpu() -> None:
    a, b = torch.randn(5, 7), torch.randn(7, 3)
    torch.testing.assert_close(torch_qpu.mm(a, b, backend="cpu"), a @ b)
    x, w, bias = torch.randn(2, 3, 7), torch.randn(4, 7), torch.randn(4)
    torch.testing.assert_close(
        torch_qpu.linear(x, w, bias, backend="cpu"), torch.nn.functional.linear(x, w, bias)
    )


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
    torch.testing.assert_close(new(x), layer(x).detach())


def test_stats_is_a_dict() -> None:
    assert isinstance(torch_qpu.stats(), dict)


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
