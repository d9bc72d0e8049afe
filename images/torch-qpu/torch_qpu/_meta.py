"""Fake kernels and autograd formulas for the torch_qpu operators.

The schemas and the real kernels are C++ (``csrc/module.cpp``). Here:

* ``torch.library.register_fake`` for every overload: the output's shape and
  dtype from the inputs', with the same checks (and exception types) as the
  C++ kernels, so ``torch.compile``/``torch.export`` trace the operators
  without running them and a bad call fails at trace time as it would eagerly;
* ``torch.library.register_autograd`` for the functional overloads: add/sub
  pass the gradient through (negated for sub's ``b``), mul multiplies by the
  other factor, mv/mm/linear are matrix products; every backward computes on
  the forward's backend with its QPU count, through the same operators.

``out=`` overloads do not take part in autograd (like torch's own ``out=``
functions, they refuse inputs that require grad).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from . import _backend

_OPS: Any = torch.ops.torch_qpu
_MAX_QPUS = _backend.MAX_QPUS
_KERNEL_BACKENDS = ("qpu", "emulator")


# ---------------------------------------------------------------------------
# Checks shared by the fake kernels (the C++ kernels make the same ones).


def _check_common(op: str, backend: str, num_qpus: int, tensors: dict[str, torch.Tensor]) -> None:
    if backend not in ("cpu", *_KERNEL_BACKENDS):
        raise ValueError(
            f"torch_qpu.{op}: unknown backend '{backend}': choose one of qpu, emulator, cpu"
        )
    if not 1 <= num_qpus <= _MAX_QPUS:
        raise ValueError(f"torch_qpu: num_qpus must be in 1..{_MAX_QPUS}, got {num_qpus}")
    allowed = (torch.float32,) if backend in _KERNEL_BACKENDS else (torch.float32, torch.float64)
    first_name, first = next(iter(tensors.items()))
    for name, t in tensors.items():
        if t.dtype not in allowed:
            extra = "" if backend in _KERNEL_BACKENDS else " (or float64 on the cpu backend)"
            raise TypeError(f"torch_qpu.{op}: {name} must be float32{extra}, got {t.dtype}")
        if t.dtype != first.dtype:
            raise TypeError(
                f"torch_qpu.{op}: {first_name} is {first.dtype} but {name} is {t.dtype} "
                "(float32 expected)"
            )


def _check_out(op: str, out: torch.Tensor, like: torch.Tensor, shape: tuple[int, ...]) -> None:
    if out.dtype != like.dtype:
        raise TypeError(f"torch_qpu.{op}: the input is {like.dtype} but out is {out.dtype}")
    if tuple(out.shape) != tuple(shape):
        raise ValueError(f"torch_qpu.{op}: out has shape {list(out.shape)}, expected {list(shape)}")


def _binary_shape(op: str, a: torch.Tensor, b: torch.Tensor, backend: str, nq: int) -> tuple:
    _check_common(op, backend, nq, {"a": a, "b": b})
    if a.shape != b.shape:
        raise ValueError(
            f"torch_qpu.{op}: shapes must match (no broadcasting), got {list(a.shape)} and "
            f"{list(b.shape)}"
        )
    return tuple(a.shape)


def _mv_shape(matrix: torch.Tensor, vector: torch.Tensor, backend: str, nq: int) -> tuple:
    _check_common("mv", backend, nq, {"matrix": matrix, "vector": vector})
    if matrix.dim() != 2 or vector.dim() != 1:
        raise ValueError(
            f"torch_qpu.mv: needs a 2-D matrix and a 1-D vector, got {matrix.dim()}-D and "
            f"{vector.dim()}-D"
        )
    if matrix.shape[1] != vector.shape[0]:
        raise ValueError(
            f"torch_qpu.mv: matrix is {list(matrix.shape)} but vector has {vector.shape[0]} "
            "elements"
        )
    return (matrix.shape[0],)


def _mm_shape(a: torch.Tensor, b: torch.Tensor, backend: str, nq: int) -> tuple:
    _check_common("mm", backend, nq, {"a": a, "b": b})
    if a.dim() != 2 or b.dim() != 2:
        raise ValueError(f"torch_qpu.mm: needs 2-D tensors, got {a.dim()}-D and {b.dim()}-D")
    if a.shape[1] != b.shape[0]:
        raise ValueError(
            f"torch_qpu.mm: shapes {list(a.shape)} and {list(b.shape)} cannot be multiplied"
        )
    return (a.shape[0], b.shape[1])


def _linear_shape(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, backend: str, nq: int
) -> tuple:
    tensors = {"x": x, "weight": weight}
    if bias is not None:
        tensors["bias"] = bias
    _check_common("linear", backend, nq, tensors)
    if weight.dim() != 2:
        raise ValueError(
            "torch_qpu.linear: weight must be 2-D (out_features, in_features), got "
            f"{weight.dim()}-D"
        )
    if x.dim() < 1 or x.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"torch_qpu.linear: x has shape {list(x.shape)}, expected (..., {weight.shape[1]})"
        )
    if bias is not None and (bias.dim() != 1 or bias.shape[0] != weight.shape[0]):
        raise ValueError(
            f"torch_qpu.linear: bias must have shape ({weight.shape[0]},), got {list(bias.shape)}"
        )
    return (*x.shape[:-1], weight.shape[0])


# ---------------------------------------------------------------------------
# Fake kernels: shapes only, every overload.


def _register_binary(name: str) -> None:
    def fake(a: torch.Tensor, b: torch.Tensor, backend: str = "cpu", num_qpus: int = 12):
        return a.new_empty(_binary_shape(name, a, b, backend, num_qpus))

    def fake_out(a, b, backend="cpu", num_qpus=12, *, out):
        _check_out(name, out, a, _binary_shape(name, a, b, backend, num_qpus))

    torch.library.register_fake(f"torch_qpu::{name}", fake)
    torch.library.register_fake(f"torch_qpu::{name}.out", fake_out)


for _name in ("add", "sub", "mul"):
    _register_binary(_name)


@torch.library.register_fake("torch_qpu::mv")
def _mv_fake(matrix, vector, backend="cpu", num_qpus=12):
    return matrix.new_empty(_mv_shape(matrix, vector, backend, num_qpus))


@torch.library.register_fake("torch_qpu::mv.out")
def _mv_out_fake(matrix, vector, backend="cpu", num_qpus=12, *, out):
    _check_out("mv", out, matrix, _mv_shape(matrix, vector, backend, num_qpus))


@torch.library.register_fake("torch_qpu::mm")
def _mm_fake(a, b, backend="cpu", num_qpus=12):
    return a.new_empty(_mm_shape(a, b, backend, num_qpus))


@torch.library.register_fake("torch_qpu::mm.out")
def _mm_out_fake(a, b, backend="cpu", num_qpus=12, *, out):
    _check_out("mm", out, a, _mm_shape(a, b, backend, num_qpus))


@torch.library.register_fake("torch_qpu::linear")
def _linear_fake(x, weight, bias=None, backend="cpu", num_qpus=12, resident=False):
    return x.new_empty(_linear_shape(x, weight, bias, backend, num_qpus))


@torch.library.register_fake("torch_qpu::linear.out")
def _linear_out_fake(x, weight, bias=None, backend="cpu", num_qpus=12, resident=False, *, out):
    _check_out("linear", out, x, _linear_shape(x, weight, bias, backend, num_qpus))


# ---------------------------------------------------------------------------
# Autograd: backward formulas on the forward's backend.


# The dispatcher may leave out trailing arguments equal to their schema
# defaults (backend "cpu", num_qpus 12, bias None, resident False): fill them
# in, and read needs_input_grad with that in mind.
_DEFAULTS = {"backend": "cpu", "num_qpus": _MAX_QPUS}


def _needs(ctx: Any, index: int) -> bool:
    return len(ctx.needs_input_grad) > index and bool(ctx.needs_input_grad[index])


def _setup(ctx: Any, inputs: tuple, first_setting: int) -> None:
    given = inputs[first_setting:]
    settings = (*given, *list(_DEFAULTS.values())[len(given) :])
    ctx.backend, ctx.num_qpus = settings[0], settings[1]


def _setup_binary(ctx: Any, inputs: tuple, output: torch.Tensor) -> None:
    _setup(ctx, inputs, 2)
    ctx.save_for_backward(inputs[0], inputs[1])


def _add_backward(ctx: Any, grad: torch.Tensor):
    return grad, grad, None, None


def _sub_backward(ctx: Any, grad: torch.Tensor):
    return grad, -grad if _needs(ctx, 1) else None, None, None


def _mul_backward(ctx: Any, grad: torch.Tensor):
    a, b = ctx.saved_tensors
    grad_a = grad_b = None
    if _needs(ctx, 0):
        grad_a = _OPS.mul(grad, b, ctx.backend, ctx.num_qpus)
    if _needs(ctx, 1):
        grad_b = _OPS.mul(grad, a, ctx.backend, ctx.num_qpus)
    return grad_a, grad_b, None, None


def _mv_backward(ctx: Any, grad: torch.Tensor):
    matrix, vector = ctx.saved_tensors
    be, nq = ctx.backend, ctx.num_qpus
    grad_matrix = grad_vector = None
    if _needs(ctx, 0):  # outer(grad, vector)
        grad_matrix = _OPS.mm(grad.unsqueeze(1), vector.unsqueeze(0), be, nq)
    if _needs(ctx, 1):  # matrix.T @ grad
        grad_vector = _OPS.mv(matrix.t(), grad, be, nq)
    return grad_matrix, grad_vector, None, None


def _mm_backward(ctx: Any, grad: torch.Tensor):
    a, b = ctx.saved_tensors
    be, nq = ctx.backend, ctx.num_qpus
    grad_a = grad_b = None
    if _needs(ctx, 0):
        grad_a = _OPS.mm(grad, b.t(), be, nq)
    if _needs(ctx, 1):
        grad_b = _OPS.mm(a.t(), grad, be, nq)
    return grad_a, grad_b, None, None


def _setup_linear(ctx: Any, inputs: tuple, output: torch.Tensor) -> None:
    _setup(ctx, inputs[:5], 3)
    ctx.save_for_backward(inputs[0], inputs[1])


def _linear_backward(ctx: Any, grad: torch.Tensor):
    x, weight = ctx.saved_tensors
    be, nq = ctx.backend, ctx.num_qpus
    rows = math.prod(x.shape[:-1])  # not -1: ambiguous for 0 features
    grad2 = grad.reshape(rows, weight.shape[0])
    grad_x = grad_weight = grad_bias = None
    if _needs(ctx, 0):
        grad_x = _OPS.mm(grad2, weight, be, nq).reshape(x.shape)
    if _needs(ctx, 1):
        grad_weight = _OPS.mm(grad2.t(), x.reshape(rows, weight.shape[1]), be, nq)
    if _needs(ctx, 2):
        grad_bias = grad2.sum(0)
    return grad_x, grad_weight, grad_bias, None, None, None


torch.library.register_autograd("torch_qpu::add", _add_backward, setup_context=_setup_binary)
torch.library.register_autograd("torch_qpu::sub", _sub_backward, setup_context=_setup_binary)
torch.library.register_autograd("torch_qpu::mul", _mul_backward, setup_context=_setup_binary)
torch.library.register_autograd("torch_qpu::mv", _mv_backward, setup_context=_setup_binary)
torch.library.register_autograd("torch_qpu::mm", _mm_backward, setup_context=_setup_binary)
torch.library.register_autograd("torch_qpu::linear", _linear_backward, setup_context=_setup_linear)
