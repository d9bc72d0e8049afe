"""Where a build's torch comes from (``torch.source``): one module per route.

Each module (pypi, wheel, debian, source, none) defines ``ROUTE``, an instance of
``rpibuild.torch_routes.route.TorchRoute``; the Dockerfile steps of a route are in
``dockerfiles/torch/<name>.j2``. Nothing outside these modules branches on a route's name.
"""

from __future__ import annotations

from rpibuild.torch_routes import debian, none, pypi, source, wheel
from rpibuild.torch_routes.route import TorchRoute

ROUTES: dict[str, TorchRoute] = {m.ROUTE.name: m.ROUTE for m in (pypi, wheel, debian, source, none)}


def route_of(source_name: str) -> TorchRoute:
    """The route a ``torch.source`` value names (the profile's schema admits only these)."""
    return ROUTES[source_name]
