"""``torch.source: wheel``: a wheel the user gives, a file put into the context or a URL,
pinned by its sha256; it may carry its list of Debian runtime packages."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from rpibuild.config import grammar
from rpibuild.errors import ConfigError
from rpibuild.torch_routes.route import WHEEL_PACKAGE_LIST, RouteFiles, TorchRoute, package_list

if TYPE_CHECKING:
    from rpibuild.config.model import Profile, Torch


class WheelRoute(TorchRoute):
    name = "wheel"
    carries_package_list = True

    def required(self, torch: Torch) -> str | None:
        if torch.wheel and torch.sha256:
            return None
        return (
            "torch.source 'wheel' needs torch.wheel and torch.sha256 "
            "(e.g. --set torch.wheel=URL_OR_PATH --set torch.sha256=SHA256)"
        )

    def fetched_elsewhere(self, torch: Torch) -> str | None:
        return "torch.wheel: the file or URL the profile names"

    def origin(self, torch: Torch) -> tuple[str, str]:
        return torch.wheel or "", f"sha256 {torch.sha256}"

    def label(self, torch: Torch) -> str:
        if torch.version or not torch.wheel:
            return torch.version or "wheel"
        match = re.match(r"torch-([^-]+)-", grammar.wheel_name(torch.wheel))
        return match.group(1) if match else "wheel"

    def host_files(self, torch: Torch) -> list[tuple[tuple[str, ...], str]]:
        return [(("torch", "wheel"), torch.wheel)] if torch.wheel else []

    def debian_packages(self, profile: Profile, stored: Path | None) -> tuple[str, ...] | None:
        """Read from the wheel when it is a file here; a URL's wheel is only seen by the build."""
        given = profile.torch.wheel or ""
        if "://" in given or not Path(given).is_file():
            return None
        try:
            with zipfile.ZipFile(given) as wheel:
                names = [n for n in wheel.namelist() if n.endswith(f".dist-info/{WHEEL_PACKAGE_LIST}")]
                return package_list(wheel.read(names[0]).decode("utf-8")) if names else ()
        except (OSError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
            raise ConfigError(f"torch wheel {given} cannot be read: {exc}", field="torch.wheel") from None

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
