"""Assemble a complete build context: rendered Dockerfile plus every file it COPYs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rpibuild.build import sources
from rpibuild.config.model import Profile
from rpibuild.errors import ConfigError
from rpibuild.planning.plan import make_plan, render_planned
from rpibuild.planning.render import Rendered


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


@dataclass(frozen=True)
class PinnedSources:
    """Every third-party source a build copies in, already fetched and checked."""

    qpulib: Path | None


def fetch_sources(profile: Profile) -> PinnedSources:
    """Resolve and fetch every pinned source now: a build calls this before any long step,
    so an unreachable upstream is found in seconds, not after a base bootstrap."""
    return PinnedSources(qpulib=qpulib_tree(profile))


def prepare_context(
    profile: Profile,
    directory: Path,
    base_ref: str | None = None,
    sources: PinnedSources | None = None,
) -> Rendered:
    """Render the context the build plan describes and write it into ``directory`` (new or empty)."""
    if directory.is_dir() and any(directory.iterdir()):
        raise ConfigError(f"output folder {directory} is not empty", field="--output")
    sources = sources or fetch_sources(profile)
    rendered = render_planned(profile, make_plan(profile), base_ref=base_ref, qpulib_src=sources.qpulib)
    rendered.write(directory)
    return rendered
