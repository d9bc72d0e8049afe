"""Assemble a complete build context: rendered Dockerfile plus every file it COPYs."""

from __future__ import annotations

from pathlib import Path

from rpibuild import sources
from rpibuild.config.model import Profile
from rpibuild.errors import ConfigError
from rpibuild.render import Rendered, render


def qpulib_tree(profile: Profile) -> Path | None:
    """The QPULib source tree: the local folder if given, else the pinned upstream archive."""
    qpulib = profile.qpulib
    if not qpulib.enabled:
        return None
    if qpulib.path:
        return sources.local_tree(qpulib.path, field="qpulib.path")
    url = qpulib.url.format(commit=qpulib.commit)
    return sources.fetch_tree(
        url, qpulib.tree_sha256, name=f"qpulib-{qpulib.commit}", archive_name=f"QPULib-{qpulib.commit}.tar.gz"
    )


def prepare_context(profile: Profile, directory: Path, base_ref: str | None = None) -> Rendered:
    """Render and write the context into ``directory`` (new or empty)."""
    if directory.is_dir() and any(directory.iterdir()):
        raise ConfigError(f"output folder {directory} is not empty", field="--output")
    rendered = render(profile, base_ref=base_ref, qpulib_src=qpulib_tree(profile))
    rendered.write(directory)
    return rendered
