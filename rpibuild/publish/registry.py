"""Login, push with retries and verification, multi-platform tags, and doctor's check.

The engine pushes (docker-py's ``APIClient.push``, with the credentials docker stored). A
push can answer 200 and still fail inside its stream, and never says what the registry
finally stored, so each pushed reference is read back twice, by two tools: the engine's
``inspect_distribution`` (digest and platform, through the engine's trust settings) and the
oras library (the manifest's bytes, with rpibuild's trust settings: their sha256 must be that
digest, their config digest the local image id). Multi-platform tags are made by
``buildx imagetools create`` from the per-platform manifests pushed first.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rpibuild.config.model import Profile
from rpibuild.errors import ConfigError, EngineError, ImageMissing, RegistryError
from rpibuild.planning.naming import image_tags
from rpibuild.publish import diagnose, oci, tools, transport
from rpibuild.publish.errors import (
    DEFAULT_RETRIES,
    DigestMismatch,
    RegistryServerError,
    RegistryUnreachable,
    classify,
    engine_side,
    with_retries,
)
from rpibuild.publish.target import Target, manifest_target, push_plan, split_reference

if TYPE_CHECKING:
    from rpibuild.engine import Engine

DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
LIST_TYPES = (DOCKER_MANIFEST_LIST, OCI_INDEX)


@dataclass(frozen=True)
class PushedImage:
    """One pushed reference as the registry stored it."""

    reference: str
    digest: str
    platforms: tuple[str, ...] = field(default=())
    sbom: str | None = None  # the digest of the SBOM artifact attached to it

    @property
    def platform_name(self) -> str:
        return ", ".join(self.platforms)

    def as_dict(self) -> dict[str, object]:
        platform: object = self.platforms[0] if len(self.platforms) == 1 else list(self.platforms)
        data: dict[str, object] = {"reference": self.reference, "digest": self.digest, "platform": platform}
        if self.sbom:
            data["sbom"] = self.sbom
        return data


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- login


def login(target: Target, username: str, password: str) -> str:
    """Check rpibuild's side (reachable, TLS as configured), then ``docker login`` stores it.

    Returns where docker keeps the secret (config.json or ``docker-credential-NAME``).
    """
    transport.check(target)
    try:
        return tools.login(target.host, username, password)
    except RegistryError as exc:
        raise engine_side(exc, target.insecure, target.host) from None


# ---------------------------------------------------------------- push


def push_one(
    engine: Engine,
    local: str,
    remote: str,
    target: Target,
    *,
    retries: int = DEFAULT_RETRIES,
    retry_base: float = 2.0,
    on_progress: Callable[[str], None] | None = None,
) -> PushedImage:
    """Tag ``local`` as ``remote``, push with retries, verify, and always drop the temporary tag."""
    image = engine.image(local)
    if image is None:
        raise ImageMissing(
            f"{local} does not exist locally", hint="build it first: rpibuild build -p PROFILE"
        )
    repository, tag = split_reference(remote)
    name = repository.removeprefix(target.host + "/")

    def diagnosed(error: RegistryError) -> RegistryError:
        """The engine hides the registry's reason for a 5xx; ask the registry directly."""
        if isinstance(error, RegistryServerError):
            return diagnose.upload_failure(target, name, image.size) or error
        return error

    def attempt() -> str | None:
        transport.check(target)
        watch = _EngineRetryWatch(target, name, image.size, on_progress)
        try:
            digest, _ = engine.push(repository, tag, on_progress=watch)
        except RegistryError as exc:
            if type(exc) is not RegistryError:
                raise  # already classified: the watch stopped the engine's own retries
            raise diagnosed(
                engine_side(classify(exc.message, target.host), target.insecure, target.host)
            ) from None
        return digest

    def on_retry(number: int, delay: float, exc: RegistryError) -> None:
        if on_progress:
            on_progress(f"{exc.message}; retry {number}/{retries} in {delay:.0f}s")

    with _temporary_tag(engine, image.id, remote):
        digest = with_retries(attempt, retries=retries, base=retry_base, on_retry=on_retry)
        return with_retries(
            lambda: verify_pushed(engine, image.id, remote, digest, target),
            retries=retries,
            base=retry_base,
        )


class _EngineRetryWatch:
    """Passes progress on; when the engine starts retrying an upload, checks why.

    The engine retries a failed layer upload by itself (5 tries over ~50 s) and only then
    reports a bare "connection refused" or "HTTP 500". When the registry is gone, or the
    probe names a full disk, this raises from the progress callback, which closes the push
    stream so the engine cancels; rpibuild's own retries (--retries) take over from there.
    """

    def __init__(
        self, target: Target, name: str, size: int, on_progress: Callable[[str], None] | None
    ) -> None:
        self.target, self.name, self.size, self.on_progress = target, name, size, on_progress
        self.checked = -1e9
        self.probed = False

    def __call__(self, line: str) -> None:
        if self.on_progress:
            self.on_progress(line)
        if "Retrying in" not in line or time.monotonic() - self.checked < 4:
            return
        self.checked = time.monotonic()
        if not transport.reachable(self.target):
            raise RegistryUnreachable(
                f"cannot reach {self.target.host}: it stopped answering during the push",
                hint="check that the registry is running",
            )
        if not self.probed:
            self.probed = True
            diagnosis = diagnose.upload_failure(self.target, self.name, self.size)
            if diagnosis is not None:
                raise diagnosis


def verify_pushed(
    engine: Engine, image_id: str, remote: str, digest: str | None, target: Target
) -> PushedImage:
    """Read ``remote`` back (through the engine and through oras) and compare it with the local image."""
    repository, tag = split_reference(remote)
    distribution = engine.distribution(remote)
    served = str(distribution.get("Descriptor", {}).get("digest", ""))
    if digest and served != digest:
        raise DigestMismatch(
            f"{remote}: the push reported {digest} but the registry serves {served}",
            hint="someone else pushed the same tag meanwhile, or the registry is inconsistent",
        )
    raw = oci.manifest(target, repository.removeprefix(target.host + "/"), tag)
    if sha256_digest(raw) != served:
        raise DigestMismatch(f"{remote}: the engine read {served}, the registry serves {sha256_digest(raw)}")
    local_digests = [
        d.split("@", 1)[1] for d in engine.repo_digests(image_id) if d.startswith(repository + "@")
    ]
    if local_digests and served not in local_digests:
        raise DigestMismatch(f"{remote}: the engine recorded {local_digests}, the registry serves {served}")
    config_digest = (json.loads(raw).get("config") or {}).get("digest")
    if config_digest != image_id:
        raise DigestMismatch(f"{remote}: the registry's image config is {config_digest}, local is {image_id}")
    platforms = tuple(_platform(p) for p in distribution.get("Platforms") or ())
    local = engine.image(image_id)
    if local is not None and platforms != (local.platform,):
        raise DigestMismatch(f"{remote}: the registry has {', '.join(platforms)}, local is {local.platform}")
    return PushedImage(remote, served, platforms)


def _platform(entry: dict[str, str]) -> str:
    return "/".join(x for x in (entry.get("os"), entry.get("architecture"), entry.get("variant")) if x)


@contextlib.contextmanager
def _temporary_tag(engine: Engine, image_id: str, reference: str) -> Iterator[None]:
    """Tag for the push and untag after, success or not; a tag the user had is put back."""
    before = engine.image(reference)
    if before is not None and before.id == image_id:
        yield
        return
    engine.tag(image_id, reference)
    try:
        yield
    finally:
        if before is not None:
            engine.tag(before.id, reference)
        else:
            with contextlib.suppress(EngineError):
                engine.untag(reference)


def push_pairs(
    engine: Engine,
    pairs: list[tuple[str, str]],
    target: Target,
    *,
    retries: int = DEFAULT_RETRIES,
    retry_base: float = 2.0,
    on_progress: Callable[[str], None] | None = None,
) -> list[PushedImage]:
    """Push each (local, remote) pair in order, each verified."""
    transport.check(target)
    return [
        push_one(
            engine, local, remote, target, retries=retries, retry_base=retry_base, on_progress=on_progress
        )
        for local, remote in pairs
    ]


def push_profile(
    engine: Engine,
    profile: Profile,
    target: Target,
    *,
    retries: int = DEFAULT_RETRIES,
    retry_base: float = 2.0,
    on_progress: Callable[[str], None] | None = None,
) -> list[PushedImage]:
    """Push every tag of the profile's image to ``target``, each verified."""
    return push_pairs(
        engine,
        push_plan(profile, target),
        target,
        retries=retries,
        retry_base=retry_base,
        on_progress=on_progress,
    )


def push_multi_platform(
    engine: Engine,
    images: list[tuple[str, str]],
    name_tag: str,
    target: Target,
    *,
    retries: int = DEFAULT_RETRIES,
    retry_base: float = 2.0,
    on_progress: Callable[[str], None] | None = None,
) -> tuple[PushedImage, list[PushedImage]]:
    """Push each (local image, platform slug) as ``NAME:TAG-<slug>``, then a list at ``NAME:TAG``.

    A list may name only manifests already in its repository, hence the per-platform tags
    first; ``buildx imagetools create`` then writes the list, and it is read back and checked
    entry by entry against what was pushed.
    """
    repository, tag = manifest_target(name_tag, target)
    slugs = [slug for _, slug in images]
    if len(set(slugs)) != len(slugs):
        raise ConfigError(f"two images for the same platform: {', '.join(slugs)}", field="--manifest")
    pairs = [(local, f"{repository}:{tag}-{slug}") for local, slug in images]
    members = push_pairs(
        engine, pairs, target, retries=retries, retry_base=retry_base, on_progress=on_progress
    )
    reference = f"{repository}:{tag}"
    sources = [f"{repository}@{m.digest}" for m in members]
    with_retries(lambda: tools.create_list(reference, sources, target.host), retries=retries, base=retry_base)
    name = repository.removeprefix(target.host + "/")
    raw = with_retries(lambda: oci.manifest(target, name, tag), retries=retries, base=retry_base)
    body = json.loads(raw)
    listed = {str(m.get("digest")) for m in body.get("manifests") or ()}
    if body.get("mediaType") not in LIST_TYPES or listed != {m.digest for m in members}:
        raise DigestMismatch(f"{reference}: the registry's list names {sorted(listed)}, pushed {sources}")
    platforms = tuple(p for m in members for p in m.platforms)
    return PushedImage(reference, sha256_digest(raw), platforms), members


def push_manifest_list(
    engine: Engine,
    profiles: list[Profile],
    name_tag: str,
    target: Target,
    *,
    retries: int = DEFAULT_RETRIES,
    retry_base: float = 2.0,
    on_progress: Callable[[str], None] | None = None,
) -> tuple[PushedImage, list[PushedImage]]:
    """One multi-platform tag from each profile's (first-tagged) image."""
    images = [(image_tags(p)[0], p.target.slug) for p in profiles]
    return push_multi_platform(
        engine, images, name_tag, target, retries=retries, retry_base=retry_base, on_progress=on_progress
    )


# ---------------------------------------------------------------- doctor


def check_registry(profile: Profile) -> tuple[bool, str, str | None]:
    """(ok, detail, fix) for doctor: reachable, and docker's stored login is accepted."""
    from rpibuild.publish.target import target_for

    try:
        target = target_for(profile)
        transport.check(target)
        tools.login_stored(target.host)
        return True, f"{target.base_url}: credentials accepted", None
    except (RegistryError, ConfigError) as exc:
        return False, exc.message, exc.hint
