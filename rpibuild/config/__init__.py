"""Build profiles: the schema (``model``) and the loader (``loader``)."""

from rpibuild.config.loader import (
    DEFAULT_PROFILE,
    LoadedProfile,
    available_profiles,
    load_profile,
    resolve_profile,
)
from rpibuild.config.model import Profile

__all__ = [
    "DEFAULT_PROFILE",
    "LoadedProfile",
    "Profile",
    "available_profiles",
    "load_profile",
    "resolve_profile",
]
