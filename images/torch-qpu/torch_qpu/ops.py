"""The ops: elementwise add/sub/mul, mv, mm and linear on float32 CPU tensors.

Each function here is a thin front for an operator registered with the
PyTorch dispatcher, ``torch.ops.torch_qpu.<name>`` (schemas and kernels in
``csrc/module.cpp``, fake kernels and autograd formulas in ``_meta.py``), so
``torch.compile``, ``torch.export`` and autograd see one operator per call.

Every op takes ``backend=`` ('qpu', 'emulator', 'qpusim', 'cpu', 'auto'; default: the
global choice, see :func:`torch_qpu.set_backend`), ``num_qpus=`` (1-12) and
``out=``. This module resolves ``auto`` and the defaults to the concrete
backend name and QPU count the operator takes as schema arguments. Inputs are
never modified; they may be non-contiguous. The cpu backend also takes
float64 (for gradcheck); the QPU kernels take float32 only.
"""

from __future__ import annotations

from typing import Any

import torch

from . import _backend, _meta, offload  # noqa: F401  (_meta registers fake kernels and autograd)

_OPS: Any = torch.ops.torch_qpu


def _check_input(t: object, name: str) -> torch.Tensor:
    """Clear Python errors for what no backend can take (the operator checks the rest)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.is_cpu:
        raise ValueError(f"{name} must be on the CPU (the QPUs share CPU memory), got {t.device}")
    return t


def _is_double(t: torch.Tensor) -> bool:
    return t.dtype == torch.float64


# What torch.library.register_autograd's kernel does when no gradient is
# needed, done before the dispatcher reaches it: that Python kernel costs
# about 6 us per call (bench: dispatch overhead), the check here under 1 us.
_BELOW_AUTOGRAD = getattr(torch._C, "_AutoDispatchBelowAutograd", None)
_is_compiling = getattr(torch.compiler, "is_compiling", lambda: True)


def _needs_autograd(tensors: tuple[torch.Tensor | None, ...]) -> bool:
    """True unless these are plain eager tensors none of which needs a gradient.

    Traced calls (torch.compile, torch.export: fake or functional tensor
    subclasses) and Parameters always go through the registered autograd kernel.
    """
    if _BELOW_AUTOGRAD is None or _is_compiling():
        return True
    grad = torch.is_grad_enabled()
    for t in tensors:
        if t is not None and (t.__class__ is not torch.Tensor or (grad and t.requires_grad)):
            return True
    return False


def _call(
    op: Any,
    out: torch.Tensor | None,
    tensors: tuple[torch.Tensor | None, ...],
    *settings: Any,
) -> torch.Tensor:
    autograd = _needs_autograd(tensors) if out is None else True
    if out is None:
        if autograd:
            return op.default(*tensors, *settings)
        with _BELOW_AUTOGRAD():
            return op.default(*tensors, *settings)
    _check_input(out, "out")
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (*tensors, out)):
        raise RuntimeError(
            f"torch_qpu.{op.default._opname}(): out= does not support automatic "
            "differentiation, but an argument requires grad (call it without out=, or under "
            "torch.no_grad())"
        )
    op.out(*tensors, *settings, out=out)
    return out


def _elementwise(
    op: Any,
    name: str,
    a: torch.Tensor,
    b: torch.Tensor,
    out: torch.Tensor | None,
    backend: str | None,
    num_qpus: int | None,
) -> torch.Tensor:
    _check_input(a, "a")
    _check_input(b, "b")
    workload = offload.Workload(name, 1, 1, a.numel())
    chosen = _backend.resolve(backend, a.numel(), _is_double(a), workload)
    return _call(op, out, (a, b), chosen, _backend.resolve_num_qpus(num_qpus))


def add(
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    out: torch.Tensor | None = None,
    backend: str | None = None,
    num_qpus: int | None = None,
) -> torch.Tensor:
    """Elementwise a + b for same-shaped float32 tensors."""
    return _elementwise(_OPS.add, "add", a, b, out, backend, num_qpus)


def sub(
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    out: torch.Tensor | None = None,
    backend: str | None = None,
    num_qpus: int | None = None,
) -> torch.Tensor:
    """Elementwise a - b for same-shaped float32 tensors."""
    return _elementwise(_OPS.sub, "sub", a, b, out, backend, num_qpus)


def mul(
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    out: torch.Tensor | None = None,
    backend: str | None = None,
    num_qpus: int | None = None,
) -> torch.Tensor:
    """Elementwise a * b for same-shaped float32 tensors."""
    return _elementwise(_OPS.mul, "mul", a, b, out, backend, num_qpus)


def mv(
    matrix: torch.Tensor,
    vector: torch.Tensor,
    *,
    out: torch.Tensor | None = None,
    backend: str | None = None,
    num_qpus: int | None = None,
) -> torch.Tensor:
    """Matrix (H x W) times vector (W) -> H values (the original "scores" op)."""
    _check_input(matrix, "matrix")
    _check_input(vector, "vector")
    rows, cols = (matrix.shape[0], matrix.shape[-1]) if matrix.dim() == 2 else (1, 1)
    workload = offload.Workload("mv", 1, cols, rows)
    chosen = _backend.resolve(backend, matrix.numel(), _is_double(matrix), workload)
    return _call(_OPS.mv, out, (matrix, vector), chosen, _backend.resolve_num_qpus(num_qpus))


def mm(
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    out: torch.Tensor | None = None,
    backend: str | None = None,
    num_qpus: int | None = None,
) -> torch.Tensor:
    """Matrix product (M x K) @ (K x N) -> (M x N)."""
    _check_input(a, "a")
    _check_input(b, "b")
    work = a.numel() * (b.shape[-1] if b.dim() == 2 else 1)
    workload = None
    if a.dim() == 2 and b.dim() == 2:
        workload = offload.Workload("mm", a.shape[0], a.shape[1], b.shape[1])
    chosen = _backend.resolve(backend, work, _is_double(a), workload)
    return _call(_OPS.mm, out, (a, b), chosen, _backend.resolve_num_qpus(num_qpus))


class ResidentWeight:
    """Asks :func:`linear` to keep its weight in GPU-shared memory between calls.

    Copying the weight into GPU memory on every call costs more than a
    matrix-vector product on the QPUs, so the operator (``resident=True``)
    keeps a GPU copy per weight tensor and uploads it again only when the
    tensor changed: other storage or shape, or a bumped version counter (any
    in-place op, ``load_state_dict``, optimizer steps). Writes through
    ``.data`` do not bump the version: call :meth:`invalidate` after those.
    The copy is freed when the weight tensor is.
    """

    def invalidate(self, weight: torch.Tensor | None = None) -> None:
        """Upload ``weight`` again on its next use (every resident weight when None)."""
        _backend.extension().resident_forget(weight)

    # Holds no state: copies and pickles are plain new objects.
    def __deepcopy__(self, memo: dict[int, object]) -> ResidentWeight:
        return ResidentWeight()


def linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    out: torch.Tensor | None = None,
    backend: str | None = None,
    num_qpus: int | None = None,
    resident: ResidentWeight | None = None,
) -> torch.Tensor:
    """x @ weight.T + bias, like torch.nn.functional.linear (x is (..., in)).

    ``resident`` (a :class:`ResidentWeight`) keeps ``weight`` in GPU memory
    across calls on the qpu/emulator backends; nn.Linear passes its own.
    """
    _check_input(x, "x")
    _check_input(weight, "weight")
    if bias is not None:
        _check_input(bias, "bias")
    work = x.numel() * (weight.shape[0] if weight.dim() == 2 else 1)
    workload = None
    if weight.dim() == 2 and x.dim() >= 1:
        batch = x.numel() // max(1, x.shape[-1])
        workload = offload.Workload(
            "linear", batch, weight.shape[1], weight.shape[0], resident is not None
        )
    chosen = _backend.resolve(backend, work, _is_double(x), workload)
    nq = _backend.resolve_num_qpus(num_qpus)
    return _call(_OPS.linear, out, (x, weight, bias), chosen, nq, resident is not None)
