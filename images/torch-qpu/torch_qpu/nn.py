"""Inference layers: :class:`Linear` and :func:`convert`."""

from __future__ import annotations

import torch

from . import ops


class Linear(torch.nn.Module):
    """Inference-only drop-in for ``torch.nn.Linear`` running on a torch_qpu backend.

    Weights are kept as buffers (not Parameters): the layer is meant for
    trained models (the operators are differentiable, but an optimizer does
    not see buffers).
    ``backend=None`` follows the global choice (:func:`torch_qpu.set_backend`).

    On the qpu/emulator backends the weight stays in GPU-shared memory between
    calls (``resident=True``) and is re-uploaded when it changes (in-place ops,
    ``load_state_dict``); after writing through ``weight.data`` call
    :meth:`refresh`.
    """

    weight: torch.Tensor
    bias: torch.Tensor | None

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        backend: str | None = None,
        num_qpus: int | None = None,
        resident: bool = True,
    ) -> None:
        super().__init__()
        self._resident = ops.ResidentWeight() if resident else None
        self.in_features = in_features
        self.out_features = out_features
        self.backend = backend
        self.num_qpus = num_qpus
        self.register_buffer("weight", torch.zeros(out_features, in_features))
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)

    @classmethod
    def from_linear(
        cls,
        layer: torch.nn.Linear,
        *,
        backend: str | None = None,
        num_qpus: int | None = None,
    ) -> Linear:
        """Copy a trained ``torch.nn.Linear`` (weights detached, float32)."""
        new = cls(
            layer.in_features,
            layer.out_features,
            bias=layer.bias is not None,
            backend=backend,
            num_qpus=num_qpus,
        )
        with torch.no_grad():
            new.weight.copy_(layer.weight.detach().float())
            if layer.bias is not None and new.bias is not None:
                new.bias.copy_(layer.bias.detach().float())
        return new

    def refresh(self) -> None:
        """Re-upload the weight on the next call (after writes through .data)."""
        if self._resident is not None:
            self._resident.invalidate(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.linear(
            x,
            self.weight,
            self.bias,
            backend=self.backend,
            num_qpus=self.num_qpus,
            resident=self._resident,
        )

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, backend={self.backend or 'global'}"
        )


def convert(
    model: torch.nn.Module,
    *,
    backend: str | None = None,
    num_qpus: int | None = None,
) -> torch.nn.Module:
    """Replace every ``torch.nn.Linear`` in ``model`` (in place) by :class:`Linear`.

    Returns the model (or a new :class:`Linear` when ``model`` itself is a
    ``torch.nn.Linear``). Other layers keep running on torch.
    """
    if isinstance(model, torch.nn.Linear):
        return Linear.from_linear(model, backend=backend, num_qpus=num_qpus)
    for name, child in model.named_children():
        if isinstance(child, torch.nn.Linear):
            setattr(model, name, Linear.from_linear(child, backend=backend, num_qpus=num_qpus))
        else:
            convert(child, backend=backend, num_qpus=num_qpus)
    return model
