"""torch_qpu's ops as PyTorch operators: opcheck, gradcheck, torch.compile, torch.export.

The cpu-backend cases run in every build; the kernel-backend cases (emulator
anywhere, qpu on a Pi) are marked 'qpulib'.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import torch

import torch_qpu

OPS = torch.ops.torch_qpu
ELEMENTWISE_SHAPES = [(0,), (1,), (17,), (3, 5), (2, 3, 33)]
MV_SHAPES = [(0, 3), (3, 0), (1, 1), (5, 17), (40, 33)]
MM_SHAPES = [(0, 3, 2), (1, 1, 1), (4, 7, 3), (17, 33, 5)]
LINEAR_SHAPES = [
    ((3, 7), 4, True),
    ((2, 3, 19), 6, True),
    ((5, 16), 1, False),
    ((0, 8), 3, True),
    ((3, 0), 4, True),
    ((2, 5), 0, False),
    ((7,), 3, True),
]


def op_cases(dtype: torch.dtype):
    """(op overload, args, kwargs) for every operator and overload on many shapes."""

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, dtype=dtype)

    for name in ("add", "sub", "mul"):
        for shape in ELEMENTWISE_SHAPES:
            yield getattr(OPS, name), (rand(*shape), rand(*shape)), torch.empty(shape, dtype=dtype)
    for h, w in MV_SHAPES:
        yield OPS.mv, (rand(h, w), rand(w)), torch.empty(h, dtype=dtype)
    for m, k, n in MM_SHAPES:
        yield OPS.mm, (rand(m, k), rand(k, n)), torch.empty(m, n, dtype=dtype)
    for x_shape, out_features, bias in LINEAR_SHAPES:
        x = rand(*x_shape)
        w = rand(out_features, x_shape[-1])
        b = rand(out_features) if bias else None
        yield OPS.linear, (x, w, b), torch.empty(*x_shape[:-1], out_features, dtype=dtype)


def case_id(case) -> str:
    packet, args, _ = case
    return f"{packet._qualified_op_name.split('::')[1]}-" + "x".join(
        str(tuple(a.shape)) for a in args if a is not None
    )


def run_opcheck(backend: str, dtype: torch.dtype) -> None:
    for packet, args, out in op_cases(dtype):
        extra = (backend, 3)
        if packet is OPS.linear:
            extra = (backend, 3, False)
        result = torch.library.opcheck(packet.default, (*args, *extra))
        assert set(result.values()) == {"SUCCESS"}, (case_id((packet, args, out)), result)
        result = torch.library.opcheck(packet.out, (*args, *extra), {"out": out})
        assert set(result.values()) == {"SUCCESS"}, (case_id((packet, args, out)), result)
    linear_args = (torch.randn(3, 8, dtype=dtype), torch.randn(5, 8, dtype=dtype), None)
    if dtype == torch.float32:  # resident weights: kernel backends only use them
        result = torch.library.opcheck(OPS.linear.default, (*linear_args, backend, 12, True))
        assert set(result.values()) == {"SUCCESS"}, result


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_opcheck_cpu_backend(dtype: torch.dtype) -> None:
    run_opcheck("cpu", dtype)


@pytest.mark.qpulib
def test_opcheck_kernel_backend(backend: str) -> None:
    run_opcheck(backend, torch.float32)


def gradcheck_calls(backend: str, dtype: torch.dtype):
    """(label, function, inputs) for every differentiable op."""

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, dtype=dtype, requires_grad=True)

    for name in ("add", "sub", "mul"):
        op = getattr(torch_qpu, name)
        yield name, lambda a, b, op=op: op(a, b, backend=backend), (rand(3, 5), rand(3, 5))
    yield "mv", lambda m, v: torch_qpu.mv(m, v, backend=backend), (rand(4, 6), rand(6))
    yield "mm", lambda a, b: torch_qpu.mm(a, b, backend=backend), (rand(3, 5), rand(5, 2))
    yield (
        "linear",
        lambda x, w, b: torch_qpu.linear(x, w, b, backend=backend),
        (rand(2, 3, 5), rand(4, 5), rand(4)),
    )
    # Not resident: gradcheck perturbs inputs through .data, which a resident
    # copy does not see (README: call invalidate() after writes through .data).
    yield (
        "linear, no bias",
        lambda x, w: torch_qpu.linear(x, w, backend=backend),
        (rand(3, 5), rand(4, 5)),
    )


def test_gradcheck_cpu_float64() -> None:
    for label, fn, inputs in gradcheck_calls("cpu", torch.float64):
        assert torch.autograd.gradcheck(fn, inputs), label
        assert torch.autograd.gradgradcheck(fn, inputs), label


@pytest.mark.qpulib
@pytest.mark.filterwarnings("ignore:Input #\\d+ requires gradient and is not a double")
def test_gradcheck_kernel_backend_float32(backend: str) -> None:
    # Every op is (bi)linear: central differences are exact up to float32
    # rounding, so a coarse eps with float32 tolerances is a real check.
    for label, fn, inputs in gradcheck_calls(backend, torch.float32):
        assert torch.autograd.gradcheck(fn, inputs, eps=1e-2, atol=1e-2, rtol=1e-2), label


def small_model(backend: str) -> torch.nn.Module:
    torch.manual_seed(5)
    model = torch.nn.Sequential(
        torch.nn.Linear(19, 32), torch.nn.ReLU(), torch.nn.Linear(32, 16, bias=False)
    )
    model = torch_qpu.convert(model, backend=backend)
    head = torch_qpu.nn.Linear.from_linear(torch.nn.Linear(16, 4), backend=backend)
    return torch.nn.Sequential(model, head).eval()


def compiled_graph_ops(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[str]]:
    """Run torch.compile(fullgraph=True) with a recording backend: (result, ops in the graph)."""
    graphs: list[torch.fx.GraphModule] = []

    def record(gm: torch.fx.GraphModule, example_inputs):
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    result = torch.compile(model, backend=record, fullgraph=True)(x)
    assert len(graphs) == 1, "one graph: no graph break"
    targets = [str(n.target) for n in graphs[0].graph.nodes if n.op == "call_function"]
    return result, targets


def backends_for_compile() -> list:
    kernel = [b for b in torch_qpu.available_backends() if b != "cpu"]
    return ["cpu", *(pytest.param(b, marks=pytest.mark.qpulib) for b in kernel)]


@pytest.mark.parametrize("backend_name", backends_for_compile())
# inductor imports torch.jit pieces that warn about their own deprecation
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_compile_fullgraph_matches_eager(backend_name: str) -> None:
    model = small_model(backend_name)
    x = torch.randn(3, 19)
    with torch.no_grad():
        eager = model(x)
        result, targets = compiled_graph_ops(model, x)
        torch.testing.assert_close(result, eager)
        assert targets.count("torch_qpu.linear.default") == 3, targets
        torch._dynamo.reset()
        # inductor (the default backend) generates C++ and needs a compiler; an image without
        # one (a Pi image from a cross build) compiles the same graph with aot_eager.
        backend = "inductor" if shutil.which("g++") or shutil.which("c++") else "aot_eager"
        compiled = torch.compile(model, fullgraph=True, backend=backend)
        torch.testing.assert_close(compiled(x), eager, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(compiled(x + 1), model(x + 1), rtol=1e-5, atol=1e-5)
    torch._dynamo.reset()


@pytest.mark.parametrize("backend_name", backends_for_compile())
def test_export_captures_the_operators(backend_name: str) -> None:
    model = small_model(backend_name)
    x = torch.randn(3, 19)
    with torch.no_grad():
        eager = model(x)
    exported = torch.export.export(model, (x,))
    targets = [str(n.target) for n in exported.graph.nodes if n.op == "call_function"]
    assert targets.count("torch_qpu.linear.default") == 3, targets
    assert f"'{backend_name}'" in str(exported.graph) or backend_name in str(exported.graph)
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(x), eager)
        other = torch.randn(3, 19)
        torch.testing.assert_close(exported.module()(other), model(other))


def test_compile_errors_are_clear_at_trace_time() -> None:
    """The fake kernels check like the C++ ones: same exception types under torch.compile."""

    def bad_shapes(a, b):
        return torch_qpu.add(a, b, backend="cpu")

    torch._dynamo.reset()
    # Dynamo wraps what the fake kernel raised, keeping its message; it names the type in the
    # message (newer torch) or keeps the error as the context (torch 2.6, Debian's armv7 build:
    # `raise ... from None`).
    with pytest.raises(Exception, match=r"torch_qpu.add: shapes must match") as caught:
        torch.compile(bad_shapes, fullgraph=True, backend="eager")(torch.ones(3), torch.ones(4))
    chain, error = [], caught.value
    while error is not None and len(chain) < 20:
        chain.append(error)
        error = error.__cause__ or error.__context__
    assert "ValueError('torch_qpu.add" in str(caught.value) or any(
        isinstance(e, ValueError) and "shapes must match" in str(e) for e in chain
    )
    torch._dynamo.reset()


def test_import_names_the_torch_it_needs() -> None:
    code = (
        "import torch; torch.__version__ = '2.3.1'\n"
        "try:\n    import torch_qpu\nexcept ImportError as err:\n    print(err)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "needs torch >= 2.4" in run.stdout and "2.3.1" in run.stdout


def test_a_package_without_operators_says_how_to_rebuild(tmp_path) -> None:
    """A wheel built where torch was missing has no _C: import fails with the fix."""
    import shutil
    from pathlib import Path

    copy = tmp_path / "torch_qpu"
    shutil.copytree(
        Path(torch_qpu.__file__).parent, copy, ignore=shutil.ignore_patterns("_C*", "__pycache__")
    )
    code = "import torch_qpu"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode != 0
    assert "no operators (no torch_qpu._C)" in run.stderr
    assert "--no-build-isolation" in run.stderr
