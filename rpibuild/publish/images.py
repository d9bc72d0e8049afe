"""The images rpibuild built on this engine: listed from their labels, removed by tag.

An image is rpibuild's when it carries the ``io.rpibuild.profile`` label (every runtime
image does, see ``naming.image_labels``); nothing else is listed or removed here, so other
images on a shared engine are never touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rpibuild.errors import ImageMissing

if TYPE_CHECKING:
    from rpibuild.engine import Engine, ImageInfo

PROFILE_LABEL = "io.rpibuild.profile"


@dataclass(frozen=True)
class BuiltImage:
    """One image as ``image ls`` shows it."""

    id: str
    profile: str
    platform: str
    tags: tuple[str, ...]
    size: int
    torch: str
    qpulib: str

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "profile": self.profile,
            "platform": self.platform,
            "tags": list(self.tags),
            "size": self.size,
            "torch": self.torch,
            "qpulib": self.qpulib,
        }


def built_image(info: ImageInfo) -> BuiltImage:
    labels = info.labels
    return BuiltImage(
        id=info.id,
        profile=labels.get(PROFILE_LABEL, ""),
        platform=info.platform,
        tags=tuple(sorted(info.tags)),
        size=info.size,
        torch=labels.get("io.rpibuild.torch.version", ""),
        qpulib=labels.get("io.rpibuild.qpulib.commit", ""),
    )


def list_built(engine: Engine, profile: str | None = None) -> list[BuiltImage]:
    """rpibuild's tagged images (of one profile if given), by profile then first tag."""
    label = f"{PROFILE_LABEL}={profile}" if profile else PROFILE_LABEL
    rows = [built_image(info) for info in engine.list_images(label)]
    return sorted(rows, key=lambda r: (r.profile, r.tags[:1]))


def remove_tags(engine: Engine, references: list[str]) -> list[str]:
    """Remove each tag, after checking it names an image rpibuild built; returns the tags removed.

    Every reference is checked before any is removed, so a typo removes nothing. The image
    goes when its last tag does (never one a container still uses: the engine refuses).
    """
    checked: list[str] = []
    for reference in references:
        info = engine.image(reference)
        if info is None or reference not in info.tags:
            raise ImageMissing(f"no image is tagged {reference}", hint="rpibuild image ls shows what is here")
        if PROFILE_LABEL not in info.labels:
            raise ImageMissing(
                f"{reference} was not built by rpibuild (no {PROFILE_LABEL} label): left alone",
                hint="remove it with docker rmi if you mean to",
            )
        checked.append(reference)
    for reference in checked:
        engine.untag(reference)
    return checked


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1000
    raise AssertionError("unreachable")
