"""Where rpibuild's own data lives: profiles, templates and build-context files.

In a checkout (editable install) they are the top-level folders beside the package; a wheel
carries copies under ``rpibuild/_resources``. ``RPIBUILD_HOME`` overrides both.
"""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def home() -> Path:
    """The folder holding ``configs/``, ``dockerfiles/`` and ``images/``."""
    override = os.environ.get("RPIBUILD_HOME")
    if override:
        return Path(override)
    checkout = _PACKAGE.parent
    if (checkout / "configs").is_dir() and (checkout / "dockerfiles").is_dir():
        return checkout
    return _PACKAGE / "_resources"


def configs_dir() -> Path:
    return home() / "configs"


def dockerfiles_dir() -> Path:
    return home() / "dockerfiles"


def images_dir() -> Path:
    return home() / "images"
