"""``rpibuild image ls / rm`` over the fake engine: only labelled images, every tag checked first."""

from __future__ import annotations

import pytest

from rpibuild.errors import ImageMissing
from rpibuild.publish.images import human_size, list_built, remove_tags
from tests.unit.fake_engine import FakeEngine

LABELS = {
    "io.rpibuild.profile": "pi3b-arm64",
    "io.rpibuild.torch.version": "2.9.1",
    "io.rpibuild.qpulib.commit": "c2658a55f2b2",
}


def engine() -> FakeEngine:
    fake = FakeEngine()
    ours = fake.add_image("rpibuild/pi3b-arm64:pi3b-arm64", "linux/arm64", labels=LABELS)
    fake.tag(ours.id, "rpibuild/pi3b-arm64:pi3b-arm64")
    other = fake.add_image("debian:trixie", "linux/arm64")
    fake.tag(other.id, "debian:trixie")
    armv7 = fake.add_image(
        "x/armv7:t", "linux/arm/v7", labels={**LABELS, "io.rpibuild.profile": "pi3b-armv7"}
    )
    fake.tag(armv7.id, "x/armv7:t")
    return fake


def test_ls_lists_only_labelled_images_with_versions_from_the_labels() -> None:
    rows = list_built(engine())
    assert [(r.profile, r.platform, r.torch, r.qpulib) for r in rows] == [
        ("pi3b-arm64", "linux/arm64", "2.9.1", "c2658a55f2b2"),
        ("pi3b-armv7", "linux/arm/v7", "2.9.1", "c2658a55f2b2"),
    ]
    assert [r.profile for r in list_built(engine(), "pi3b-armv7")] == ["pi3b-armv7"]


def test_rm_refuses_a_foreign_image_and_then_removes_nothing() -> None:
    fake = engine()
    with pytest.raises(ImageMissing, match="not built by rpibuild"):
        remove_tags(fake, ["rpibuild/pi3b-arm64:pi3b-arm64", "debian:trixie"])
    assert not any(call.startswith("untag") for call in fake.calls)
    with pytest.raises(ImageMissing, match="no image is tagged"):
        remove_tags(fake, ["nothing:here"])
    assert remove_tags(fake, ["rpibuild/pi3b-arm64:pi3b-arm64"]) == ["rpibuild/pi3b-arm64:pi3b-arm64"]
    assert "rpibuild/pi3b-arm64:pi3b-arm64" not in fake.tags


def test_human_size() -> None:
    assert [human_size(n) for n in (999, 1500, 801_234_567, 3 * 10**12)] == [
        "999B",
        "1.5kB",
        "801.2MB",
        "3000.0GB",
    ]
