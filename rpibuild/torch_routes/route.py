"""What every torch route provides: the one protocol the planner, renderer and checks ask.

A route is where a build's torch comes from (``torch.source``). Each lives in its own module
of this package (pypi, wheel, debian, source, none) and answers the same questions, so that
adding a route touches one module and one template (``dockerfiles/torch/<name>.j2``), and
nothing else branches on a route's name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rpibuild.config.model import Profile, Torch

# Inside a wheel that carries its Debian runtime packages (images/torch-debian/wheel_packages.py).
WHEEL_PACKAGE_LIST = "rpibuild-debian-packages.txt"
# Where a route compiles torch (``TorchRoute.compiled_on``).
BUILD_PLATFORM = "build platform"
TARGET = "target"


def package_list(text: str) -> tuple[str, ...]:
    """One Debian package name a line (as runtime_packages.py writes them)."""
    return tuple(line.strip() for line in text.splitlines() if line.strip())


@dataclass(frozen=True)
class RouteFiles:
    """What a route puts into the build context: files and folders (context path -> host
    path), and the context path of the wheel its template installs (None: none in the context)."""

    files: dict[str, Path] = field(default_factory=dict)
    dirs: dict[str, Path] = field(default_factory=dict)
    wheel: str | None = None


class TorchRoute:
    """One ``torch.source``. The defaults describe a route that installs a finished wheel
    fetched by its template; a route module overrides what differs."""

    name = ""
    # A finished wheel exists before the target's torch stage (fetched, given or compiled on
    # the build platform), so a cross build installs it natively (torch-install).
    wheel_before_target = True
    # Where torch itself is compiled: BUILD_PLATFORM, TARGET or "" (not compiled).
    compiled_on = ""
    # The wheel may carry its list of Debian runtime packages (images/torch-debian/wheel_packages.py).
    carries_package_list = False
    # Its torch was built against the suite's pybind11 and does not bundle it (Debian's), so a
    # cross-built extension needs pybind11-dev on the build platform.
    needs_system_pybind11 = False
    installs_torch = True

    def required(self, torch: Torch) -> str | None:
        """Why the profile's torch section is incomplete for this route (None: it is not)."""
        return None

    def origin(self, torch: Torch) -> tuple[str, str] | None:
        """What is fetched for torch and how it is pinned (the plan's sources), or None; URLs as
        given (the plan masks their credentials)."""
        return None

    def index_requirements(self, torch: Torch) -> list[str]:
        """What the route pip-installs from the package index (an offline mirror gathers them)."""
        return []

    def debian_source(self, torch: Torch) -> tuple[str, str] | None:
        """(package, version) of a Debian source package the route fetches with apt (an offline
        mirror gathers it with the signed indexes that vouch for it); None: none."""
        return None

    def fetched_elsewhere(self, torch: Torch) -> str | None:
        """What the route fetches that an offline mirror folder cannot hold (None: nothing);
        URLs as given (the caller masks their credentials)."""
        return None

    def pinned_sources(self, torch: Torch) -> list[dict[str, str]]:
        """What the SBOM lists for the route's own sources, besides the torch wheel itself."""
        return []

    def label(self, torch: Torch) -> str:
        """The torch version the image's tags and labels name."""
        return torch.version or ""

    def host_files(self, torch: Torch) -> list[tuple[tuple[str, ...], str]]:
        """(field path, value) of host files the route reads: checked to exist at load time."""
        return []

    def build_platform_stages(self, *, stored: bool) -> tuple[str, ...]:
        """The route's own build-platform stages in a cross build (``stored``: its compiled
        wheel is in the store already)."""
        return ()

    def context(self, profile: Profile, images: Path, stored: Path | None) -> RouteFiles:
        """The files the route's stages copy in (``images``: rpibuild's images/ folder;
        ``stored``: the stored wheel of a keyed route)."""
        return RouteFiles()

    def debian_packages(self, profile: Profile, stored: Path | None) -> tuple[str, ...] | None:
        """The Debian packages its torch's libraries need on the target, folded into the bases
        (rpibuild.planning.bases); None when they are known only once the build has the wheel."""
        return ()

    def cross_values(self, profile: Profile, torch_key: str) -> dict[str, object]:
        """Template values of the route's build-platform stages in a cross build."""
        return {}

    @property
    def keyed(self) -> bool:
        """Its wheel is compiled by rpibuild and stored under a content key."""
        return self.compiled_on == BUILD_PLATFORM

    def __repr__(self) -> str:
        return f"<torch route {self.name}>"
