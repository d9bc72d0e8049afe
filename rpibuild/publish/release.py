"""After a build: push what was built, docker-shaped (``build --push``, ``-t/--tag``).

Runs only once every profile's build (verify included) has passed, so a failed verify
pushes nothing. Without ``--tag`` the profile's own tags go to its registry (as ``rpibuild
push`` does); with ``--tag REF`` exactly REF is pushed, and several built profiles become
one multi-platform tag per REF.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from rpibuild.config import grammar
from rpibuild.config.model import Profile
from rpibuild.errors import ConfigError
from rpibuild.publish.errors import DEFAULT_RETRIES
from rpibuild.publish.registry import PushedImage, push_multi_platform, push_pairs
from rpibuild.publish.target import Target, manifest_target, push_plan, target_for

if TYPE_CHECKING:
    from rpibuild.engine import Engine


def check_tag(reference: str) -> str:
    """``[REGISTRY/]NAME:TAG``, each part as the profile grammar has it (a ValueError says why)."""
    grammar.image_reference(reference)
    name, sep, tag = reference.rpartition(":")
    if not sep or "/" in tag or "@" in reference or not name:
        raise ValueError("is not [REGISTRY/]NAME:TAG")
    if not grammar.TAG.fullmatch(tag):
        raise ValueError(f"has {tag!r}, which is not a valid image tag")
    return reference


def registry_of(reference: str) -> str | None:
    """The registry a reference names (docker's rule: a first part with '.' or ':', or localhost)."""
    first, sep, _ = reference.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return None


def target_of(profile: Profile, reference: str) -> Target:
    """Where ``reference`` goes: its own registry (with the profile's trust settings), else the profile's."""
    return target_for(profile, url=registry_of(reference))


def publish_built(
    engine: Engine,
    built: Sequence[tuple[Profile, str]],
    tags: Sequence[str],
    *,
    retries: int = DEFAULT_RETRIES,
    on_progress: Callable[[str], None] | None = None,
) -> list[PushedImage]:
    """Push each (profile, local image) built; returns every reference pushed, lists first."""
    if not built:
        return []
    first = built[0][0]
    if not tags:
        if len(built) > 1:
            raise ConfigError(
                "several profiles make one multi-platform tag: name it with --tag REGISTRY/NAME:TAG",
                field="--tag",
            )
        target = target_for(first)
        return push_pairs(engine, push_plan(first, target), target, retries=retries, on_progress=on_progress)
    pushed: list[PushedImage] = []
    for reference in tags:
        target = target_of(first, reference)
        if len(built) == 1:
            repository, tag = manifest_target(reference, target)
            pushed += push_pairs(
                engine,
                [(built[0][1], f"{repository}:{tag}")],
                target,
                retries=retries,
                on_progress=on_progress,
            )
            continue
        images = [(image, profile.target.slug) for profile, image in built]
        listed, members = push_multi_platform(
            engine, images, reference, target, retries=retries, on_progress=on_progress
        )
        pushed += [listed, *members]
    return pushed
