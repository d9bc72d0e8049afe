"""``torch.source: none``: no torch; the extension is then a pure-Python wheel with its cpu
backend, and the stages that need torch are left out."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rpibuild.torch_routes.route import TorchRoute

if TYPE_CHECKING:
    from rpibuild.config.model import Torch


class NoTorch(TorchRoute):
    name = "none"
    wheel_before_target = False
    installs_torch = False

    def label(self, torch: Torch) -> str:
        return "none"


ROUTE = NoTorch()
