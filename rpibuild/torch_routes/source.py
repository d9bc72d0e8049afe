"""``torch.source: source``: torch compiled from its git repository on the target itself
(under QEMU on an x86 host: days; kept for Pis and native arm hosts)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rpibuild.torch_routes.route import TARGET, TorchRoute

if TYPE_CHECKING:
    from rpibuild.config.model import Torch


# What torch's setup.py needs before it builds (dockerfiles/torch/source.j2 installs them).
SOURCE_BUILD_REQUIREMENTS = ("cython", "pyyaml", "typing_extensions", "cffi", "pillow")


class SourceRoute(TorchRoute):
    name = "source"
    wheel_before_target = False
    compiled_on = TARGET

    def required(self, torch: Torch) -> str | None:
        return None if torch.git_ref else "torch.source 'source' needs torch.git_ref (a tag or commit)"

    def index_requirements(self, torch: Torch) -> list[str]:
        return list(SOURCE_BUILD_REQUIREMENTS)

    def fetched_elsewhere(self, torch: Torch) -> str | None:
        return f"torch from git: {torch.git_url}"

    def origin(self, torch: Torch) -> tuple[str, str]:
        return f"{torch.git_url} {torch.git_ref}", "git ref"

    def label(self, torch: Torch) -> str:
        return torch.version or f"src-{torch.git_ref}"


ROUTE = SourceRoute()
