"""After a build: push what was built, docker-shaped (``build --push``, ``-t/--tag``).

Runs only once every profile's build (verify included) has passed, so a failed verify
pushes nothing. Without ``--tag`` the profile's own tags go to its registry (as ``rpibuild
push`` does); with ``--tag REF`` exactly REF is pushed, and several built profiles become
one multi-platform tag per REF.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
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
    sbom: bool = True,
    torch_wheel_sha256: Sequence[str | None] = (),
    on_progress: Callable[[str], None] | None = None,
) -> list[PushedImage]:
    """Push each (profile, local image) built; returns every reference pushed, lists first.

    With ``sbom`` each pushed image gets its SBOM attached (``attach_sboms``).
    """
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
        pushed = push_pairs(
            engine, push_plan(first, target), target, retries=retries, on_progress=on_progress
        )
        return (
            attach_sboms(engine, target, [(first, built[0][1], pushed)], torch_wheel_sha256)
            if sbom
            else pushed
        )
    result: list[PushedImage] = []
    for reference in tags:
        target = target_of(first, reference)
        if len(built) == 1:
            repository, tag = manifest_target(reference, target)
            pushed = push_pairs(
                engine,
                [(built[0][1], f"{repository}:{tag}")],
                target,
                retries=retries,
                on_progress=on_progress,
            )
            result += (
                attach_sboms(engine, target, [(first, built[0][1], pushed)], torch_wheel_sha256)
                if sbom
                else pushed
            )
            continue
        images = [(image, profile.target.slug) for profile, image in built]
        listed, members = push_multi_platform(
            engine, images, reference, target, retries=retries, on_progress=on_progress
        )
        if sbom:
            groups = [
                (profile, image, [member]) for (profile, image), member in zip(built, members, strict=True)
            ]
            members = attach_sboms(engine, target, groups, torch_wheel_sha256)
        result += [listed, *members]
    return result


def attach_sboms(
    engine: Engine,
    target: Target,
    groups: Sequence[tuple[Profile, str, Sequence[PushedImage]]],
    torch_wheel_sha256: Sequence[str | None] = (),
) -> list[PushedImage]:
    """Make each local image's SBOM once and attach it to every digest it was pushed as."""
    from rpibuild.publish import attach, sbom

    out: list[PushedImage] = []
    attached: dict[str, str] = {}
    for number, (profile, image, pushed) in enumerate(groups):
        wheel_sha = torch_wheel_sha256[number] if number < len(torch_wheel_sha256) else None
        document: dict[str, object] | None = None
        for item in pushed:
            if item.digest not in attached:
                document = document or sbom.make(engine, profile, image, torch_wheel_sha256=wheel_sha)
                repository = item.reference.rpartition(":")[0].removeprefix(target.host + "/")
                attached[item.digest] = attach.attach_sbom(target, repository, item.digest, document)
            out.append(replace(item, sbom=attached[item.digest]))
    return out
