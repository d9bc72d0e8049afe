"""``torch.source: pypi``: the pinned version from the package index, the wheel pip chooses
for the target's tags (on the build platform in a cross build)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rpibuild.torch_routes.route import TorchRoute

if TYPE_CHECKING:
    from rpibuild.config.model import Torch


class PypiRoute(TorchRoute):
    name = "pypi"

    def required(self, torch: Torch) -> str | None:
        return None if torch.version else "torch.source 'pypi' needs torch.version (pin it)"

    def index_requirements(self, torch: Torch) -> list[str]:
        return [f"torch=={torch.version}"] if torch.version else []

    def origin(self, torch: Torch) -> tuple[str, str]:
        return f"torch=={torch.version} from the package index", "version"


ROUTE = PypiRoute()
