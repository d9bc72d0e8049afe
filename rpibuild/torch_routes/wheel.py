"""``torch.source: wheel``: a wheel the user gives, a file put into the context or a URL,
pinned by its sha256; it may carry its list of Debian runtime packages."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from rpibuild.config import grammar
from rpibuild.errors import ConfigError
from rpibuild.torch_routes.route import RouteFiles, TorchRoute

if TYPE_CHECKING:
    from rpibuild.config.model import Profile, Torch


class WheelRoute(TorchRoute):
    name = "wheel"
    carries_package_list = True

    def required(self, torch: Torch) -> str | None:
        if torch.wheel and torch.sha256:
            return None
        return "torch.source 'wheel' needs torch.wheel and torch.sha256 (a file or URL, and its hash)"

    def origin(self, torch: Torch) -> tuple[str, str]:
        return torch.wheel or "", f"sha256 {torch.sha256}"

    def label(self, torch: Torch) -> str:
        if torch.version or not torch.wheel:
            return torch.version or "wheel"
        match = re.match(r"torch-([^-]+)-", grammar.wheel_name(torch.wheel))
        return match.group(1) if match else "wheel"

    def host_files(self, torch: Torch) -> list[tuple[tuple[str, ...], str]]:
        return [(("torch", "wheel"), torch.wheel)] if torch.wheel else []

    def context(self, profile: Profile, images: Path, stored: Path | None) -> RouteFiles:
        files = {"rpibuild/wheel_packages.py": images / "torch-debian" / "wheel_packages.py"}
        given = profile.torch.wheel or ""
        if "://" in given:  # fetched by the template, checked by its sha256
            return RouteFiles(files)
        path = Path(given)
        if not path.is_file():
            raise ConfigError(f"torch wheel {given} does not exist", field="torch.wheel")
        inside = f"torch/{grammar.wheel_name(given)}"
        return RouteFiles({**files, inside: path}, wheel=inside)


ROUTE = WheelRoute()
