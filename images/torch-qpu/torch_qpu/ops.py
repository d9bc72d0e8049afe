"""The ops: elementwise add/sub/mul, mv, mm and linear on float32 CPU tensors.

Every op takes ``backend=`` ('qpu', 'emulator', 'cpu', 'auto'; default: the
global choice, see :func:`torch_qpu.set_backend`), ``num_qpus=`` (1-12) and
``out=``. Inputs are never modified. Inputs may be non-contiguous (they are
copied into GPU-shared memory anyway). Results are plain torch tensors.

Forward only: the qpu and emulator backends compute outside autograd, so they
refuse inputs that require grad while grad mode is on (wrap inference in
``torch.no_grad()``/``torch.inference_mode()``); the cpu backend is plain
torch and differentiable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from . import _backend

_ELEMENTWISE_CODES = {"add": 0, "sub": 1, "mul": 2}
_TORCH_ELEMENTWISE: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "add": torch.add,
    "sub": torch.sub,
    "mul": torch.mul,
}


def _check_input(t: object, name: str) -> torch.Tensor:
    """Clear Python errors for what the kernels cannot take."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype != torch.float32:
        raise TypeError(f"{name} must be float32, got {t.dtype}")
    if t.device.type != "cpu":
        raise ValueError(f"{name} must be on the CPU (the QPUs share CPU memory), got {t.device}")
    return t


def _check_out(out: torch.Tensor | None, shape: torch.Size) -> None:
    if out is None:
        return
    _check_input(out, "out")
    if out.shape != shape:
        raise ValueError(f"out has shape {tuple(out.shape)}, expected {tuple(shape)}")


def _check_grad(backend: str, *tensors: torch.Tensor | None) -> None:
    if backend == "cpu" or not torch.is_grad_enabled():
        return
    if any(t is not None and t.requires_grad for t in tensors):
        raise RuntimeError(
            f"torch_qpu's {backend!r} backend is forward-only (no autograd): run it under "
            "torch.no_grad() / torch.inference_mode(), or use backend='cpu' for training"
        )


def _deliver(result: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
    if out is None:
        return result
    out.copy_(result)
    return out


def _extension() -> Any:
    ext = _backend.extension()
    if ext is None:  # resolve() already refused; this is a safety net
        raise _backend.BackendUnavailableError("torch_qpu was built without QPULib")
    return ext


def _elementwise(
    name: str,
    a: torch.Tensor,
    b: torch.Tensor,
    out: torch.Tensor | None,
    backend: str | None,
    num_qpus: int | None,
) -> torch.Tensor:
    _check_input(a, "a")
    _check_input(b, "b")
    if a.shape != b.shape:
        raise ValueError(
            f"{name}: shapes must match (no broadcasting), got {tuple(a.shape)} and "
            f"{tuple(b.shape)}"
        )
    _check_out(out, a.shape)
    chosen = _backend.resolve(backend, a.numel())
    nq = _backend.resolve_num_qpus(num_qpus)
    if chosen == "cpu":
        result = _TORCH_ELEMENTWISE[name](a, b)
        return _deliver(result, out)
    _check_grad(chosen, a, b)
    if out is not None and out.is_contiguous():
        # The extension copies the inputs out before writing, so `out` may
        # even alias `a` or `b`.
        _extension().elementwise(_ELEMENTWISE_CODES[name], a, b, out, nq)
        return out
    result = torch.empty(a.shape, dtype=torch.float32)
    _extension().elementwise(_ELEMENTWISE_CODES[name], a, b, result, nq)
    return _deliver(result, out)


def add(
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    out: torch.Tensor | None = None,
    backend: str | None = None,
    num_qpus: int | None = None,
) -> torch.Tensor:
    """Elementwise a + b for same-shaped float32 tensors."""
    return _elementwise("add", a, b, out, backend, num_qpus)


def sub(
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    out: torch.Tensor | None = None,
    backend: str | None = None,
    num_qpus: int | None = None,
) -> torch.Tensor:
    """Elementwise a - b for same-shaped float32 tensors."""
    return _elementwise("sub", a, b, out, backend, num_qpus)


def mul(
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    out: torch.Tensor | None = None,
    backend: str | None = None,
    num_qpus: int | None = None,
) -> torch.Tensor:
    """Elementwise a * b for same-shaped float32 tensors."""
    return _elementwise("mul", a, b, out, backend, num_qpus)


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
    if matrix.dim() != 2 or vector.dim() != 1:
        raise ValueError(
            f"mv needs a 2-D matrix and a 1-D vector, got {matrix.dim()}-D and {vector.dim()}-D"
        )
    if matrix.shape[1] != vector.shape[0]:
        raise ValueError(
            f"mv: matrix is {tuple(matrix.shape)} but vector has {vector.shape[0]} elements"
        )
    _check_out(out, torch.Size([matrix.shape[0]]))
    chosen = _backend.resolve(backend, matrix.numel())
    if chosen == "cpu":
        return _deliver(torch.mv(matrix, vector), out)
    _check_grad(chosen, matrix, vector)
    nq = _backend.resolve_num_qpus(num_qpus)
    result = _extension().dot_rows(vector.unsqueeze(0), matrix, nq)[0]
    return _deliver(result, out)


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
    if a.dim() != 2 or b.dim() != 2:
        raise ValueError(f"mm needs 2-D tensors, got {a.dim()}-D and {b.dim()}-D")
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"mm: shapes {tuple(a.shape)} and {tuple(b.shape)} cannot be multiplied")
    _check_out(out, torch.Size([a.shape[0], b.shape[1]]))
    chosen = _backend.resolve(backend, a.shape[0] * a.shape[1] * b.shape[1])
    if chosen == "cpu":
        return _deliver(torch.mm(a, b), out)
    _check_grad(chosen, a, b)
    nq = _backend.resolve_num_qpus(num_qpus)
    # The kernel takes dot products of rows, so it wants b's columns as rows.
    result = _extension().dot_rows(a, b.t().contiguous(), nq)
    return _deliver(result, out)


class ResidentWeight:
    """Keeps a weight matrix in GPU-shared memory between calls.

    Copying the weight into GPU memory on every call costs more than a
    matrix-vector product on the QPUs, so :class:`torch_qpu.nn.Linear` keeps
    it resident and re-uploads only when the tensor changed: a different
    tensor, another shape, or a bumped version counter (any in-place op,
    ``load_state_dict``, optimizer steps). Writes through ``.data`` do not
    bump the version: call :meth:`invalidate` after those.
    """

    def __init__(self) -> None:
        self._matrix: Any = None
        self._key: tuple[int, int, tuple[int, ...]] | None = None

    def invalidate(self) -> None:
        self._key = None

    # The GPU copy is a cache: copies and pickles start without one (the
    # extension object can be neither copied nor pickled).
    def __deepcopy__(self, memo: dict[int, object]) -> ResidentWeight:
        return ResidentWeight()

    def __getstate__(self) -> dict[str, object]:
        return {}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__init__()  # type: ignore[misc]

    def get(self, weight: torch.Tensor) -> Any:
        """The extension's ResidentMatrix holding `weight`'s current values."""
        key = (weight._version, weight.data_ptr(), tuple(weight.shape))
        if self._matrix is None:
            self._matrix = _extension().ResidentMatrix(weight)
        elif key != self._key:
            self._matrix.upload(weight)
        self._key = key
        return self._matrix


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
    if weight.dim() != 2:
        raise ValueError(f"weight must be 2-D (out_features, in_features), got {weight.dim()}-D")
    if x.dim() < 1 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: x has shape {tuple(x.shape)}, expected (..., {weight.shape[1]})")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}")
    out_shape = torch.Size([*x.shape[:-1], weight.shape[0]])
    _check_out(out, out_shape)
    rows = 1
    for size in x.shape[:-1]:
        rows *= size
    chosen = _backend.resolve(backend, rows * weight.shape[0] * weight.shape[1])
    if chosen == "cpu":
        return _deliver(torch.nn.functional.linear(x, weight, bias), out)
    _check_grad(chosen, x, weight, bias)
    nq = _backend.resolve_num_qpus(num_qpus)
    x2 = x.reshape(rows, weight.shape[1])
    if resident is not None:
        result = _extension().dot_resident(x2, resident.get(weight), nq)
    else:
        result = _extension().dot_rows(x2, weight, nq)
    if bias is not None:
        result += bias
    return _deliver(result.reshape(out_shape), out)
