"""Image naming: the tags and labels of a profile's image, in one module every consumer imports.

render, plan, config checks, push, rootfs and artifacts all name the same image; they ask
here (it depends on the profile's model and grammar only, so no import cycle needs dodging).
"""

from __future__ import annotations

from rpibuild import __version__
from rpibuild.config import grammar
from rpibuild.config.model import Profile
from rpibuild.errors import ConfigError
from rpibuild.torch_routes import route_of


def torch_label(profile: Profile) -> str:
    """The torch version the tags and labels name (each route says how it knows it)."""
    return route_of(profile.torch.source).label(profile.torch)


def qpulib_revision(profile: Profile) -> str:
    if not profile.qpulib.enabled:
        return "none"
    return "local" if profile.qpulib.path else profile.qpulib.commit


def image_tags(profile: Profile) -> tuple[str, ...]:
    """The profile's tag templates filled in: ``{profile}``, ``{platform}``, ``{torch}``..."""
    values = {
        "profile": profile.name,
        "platform": profile.target.slug,
        "torch": torch_label(profile).replace("+", "_"),
        "qpulib": qpulib_revision(profile)[:12],
        "version": __version__,
    }
    tags = []
    for template in profile.image.tags:
        try:
            tag = template.format(**values)
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(
                f"bad tag template {template!r} ({exc})",
                field="image.tags",
                hint=f"placeholders: {', '.join('{' + k + '}' for k in values)}",
            ) from None
        if not grammar.TAG.fullmatch(tag):
            raise ConfigError(f"tag {tag!r} is not a valid image tag", field="image.tags")
        tags.append(f"{profile.image.repository}:{tag}")
    return tuple(dict.fromkeys(tags))


def image_labels(profile: Profile) -> dict[str, str]:
    """OCI labels plus rpibuild's own; nothing time-dependent, so rebuilds stay cached."""
    labels = {
        "org.opencontainers.image.title": profile.image.repository,
        "org.opencontainers.image.description": profile.description,
        "org.opencontainers.image.version": torch_label(profile),
        "io.rpibuild.version": __version__,
        "io.rpibuild.profile": profile.name,
        "io.rpibuild.platform": profile.platform,
        "io.rpibuild.torch.source": profile.torch.source,
        "io.rpibuild.torch.version": torch_label(profile),
        "io.rpibuild.qpulib.commit": qpulib_revision(profile),
        "io.rpibuild.qpulib.mode": profile.qpulib.mode if profile.qpulib.enabled else "none",
        "io.rpibuild.extension": "torch-qpu" if profile.extension.enabled else "none",
    }
    labels.update(profile.image.labels)
    return labels
