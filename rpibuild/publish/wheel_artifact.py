"""The compiled torch wheel as an OCI artifact in the profile's registry, named by its build key.

Why: the armv7 compile takes hours, and every host or CI runner without rpibuild's cache would
compile the very wheel another host already has, although its key (rpibuild.torch_routes.debian)
names exactly what went into it. With ``torch.wheel_store: registry`` the wheel, its runtime
package list and its build record are pushed as one artifact to the repository beside the
profile's image (``<namespace>/torch-wheel``), tagged with the key, and a host whose build has
that key pulls it instead of compiling.

The artifact is an OCI image manifest: its config is the build record (JSON: key, Debian
version, platform, the wheel's name, size and sha256, the package list's sha256), its two
layers the wheel and the package list, its annotations the key and the wheel's sha256 (what
``oras manifest fetch`` shows). Pushes and reads go through the oras library with docker's
stored credentials and rpibuild's trust settings (registry.insecure, registry.ca_cert), as the
SBOM's do. A pull trusts nothing it has not hashed: the manifest against the registry's
digest, every blob against its descriptor, the wheel's and the list's descriptors against the
record; any mismatch is a DigestMismatch (exit 6) and nothing is kept. (The record is as
trustworthy as the registry's access control: whoever may push may replace the whole artifact.)
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rpibuild.build.sources import file_sha256
from rpibuild.publish import oci
from rpibuild.publish.errors import DEFAULT_RETRIES, DigestMismatch, classify, with_retries
from rpibuild.publish.target import Target, docker_config_dir, remote_repository, target_for
from rpibuild.torch_routes.debian import RUNTIME_PACKAGES

if TYPE_CHECKING:
    from rpibuild.config.model import Profile

REPOSITORY = "torch-wheel"  # beside the image: image.repository's last part replaced
RECORD_TYPE = "application/vnd.rpibuild.torch-wheel.record.v1+json"
WHEEL_TYPE = "application/vnd.rpibuild.torch-wheel.wheel.v1+zip"
PACKAGES_TYPE = "application/vnd.rpibuild.torch-wheel.packages.v1+text"
KEY_ANNOTATION = "io.rpibuild.torch.key"
SHA256_ANNOTATION = "io.rpibuild.torch.wheel.sha256"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
# A registry's answer sizes what is written to disk: nothing bigger than this is fetched
# (the armv7 wheel is 56 MB).
MAX_WHEEL_BYTES = 4 << 30
MAX_SMALL_BYTES = 1 << 20
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_WHEEL_NAME = re.compile(r"torch-[A-Za-z0-9_.+!-]+\.whl")


@dataclass(frozen=True)
class WheelLocation:
    """Where the wheel of one build key lives in the registry."""

    target: Target
    repository: str  # without the host: ``team/torch-wheel``
    key: str

    @property
    def reference(self) -> str:
        return f"{self.target.host}/{self.repository}:{self.key}"


@dataclass(frozen=True)
class RemoteWheel:
    """The artifact found at a location: its manifest's digest and the checked build record."""

    location: WheelLocation
    digest: str
    record: dict[str, Any]
    wheel: dict[str, Any]  # the wheel layer's descriptor
    packages: dict[str, Any]  # the package list layer's descriptor

    @property
    def sha256(self) -> str:
        return str(self.record["wheel"]["sha256"])

    @property
    def wheel_name(self) -> str:
        return str(self.record["wheel"]["name"])


def location(profile: Profile, key: str) -> WheelLocation:
    """The profile's registry (URL, namespace and trust as for pushes) and the wheel's repository
    beside the image's: ``rpibuild/pi3b-armv7`` -> ``rpibuild/torch-wheel`` (``team/torch-wheel``
    with registry.namespace ``team``)."""
    target = target_for(profile)
    parent = profile.image.repository.strip("/").rpartition("/")[0]
    name = f"{parent}/{REPOSITORY}" if parent else REPOSITORY
    return WheelLocation(target, remote_repository(target, name).removeprefix(target.host + "/"), key)


def record_of(key: str, version: str | None, platform: str, wheel: Path, packages: Path) -> dict[str, Any]:
    """The build record pushed as the artifact's config: what the wheel is and what made it."""
    from rpibuild import __version__

    return {
        "key": key,
        "package": "pytorch (Debian source)",
        "version": version,
        "platform": platform,
        "wheel": {"name": wheel.name, "size": wheel.stat().st_size, "sha256": file_sha256(wheel)},
        "runtime_packages": {"sha256": file_sha256(packages)},
        "rpibuild": __version__,
    }


# ---------------------------------------------------------------- look up


def find(where: WheelLocation, *, retries: int = DEFAULT_RETRIES) -> RemoteWheel | None:
    """The artifact of ``where.key``, its record checked, or None when the registry has none
    (the repository or the tag unknown: that host compiles). Any other failure is raised."""
    return with_retries(lambda: _find(where), retries=retries)


def _refuse_error(response: Any, where: WheelLocation, what: str, *, detail: str = "") -> None:
    """An HTTP error answer as the registry failure it is (cause and fix, rpibuild.publish.errors)."""
    if response.status_code >= 400:
        message = f"{what}: HTTP {response.status_code}" + (f" {detail}" if detail else "")
        raise classify(message, where.target.host, response.status_code)


def _find(where: WheelLocation) -> RemoteWheel | None:
    session = oci.Session(where.target, where.repository)
    response = session.send(
        "GET", f"/v2/{where.repository}/manifests/{where.key}", accept=", ".join(oci.MANIFEST_TYPES)
    )
    if response.status_code == 404:
        return None
    _refuse_error(response, where, f"GET {where.reference}", detail=oci.error_codes(response))
    body = response.content
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    said = response.headers.get("Docker-Content-Digest")
    if said and said != digest:
        raise _tampered(where, f"the registry says its manifest is {said}, its bytes hash to {digest}")
    manifest = _json_object(body, where, "its manifest")
    config = _descriptor(manifest.get("config"), where, "its config", MAX_SMALL_BYTES)
    if config["mediaType"] != RECORD_TYPE:
        raise _tampered(where, f"it is not a torch wheel artifact (config type {config['mediaType']!r})")
    record = _json_object(_blob(session, where, config), where, "its build record")
    _check_record(record, where)
    layers = [_descriptor(layer, where, "a layer", MAX_WHEEL_BYTES) for layer in manifest.get("layers") or []]
    wheel = _only(layers, WHEEL_TYPE, where)
    packages = _only(layers, PACKAGES_TYPE, where)
    expected = "sha256:" + str(record["wheel"]["sha256"])
    if wheel["digest"] != expected or wheel["size"] != record["wheel"]["size"]:
        raise _tampered(where, f"its wheel layer is {wheel['digest']}, the build record says {expected}")
    if packages["digest"] != "sha256:" + str(record["runtime_packages"]["sha256"]):
        raise _tampered(where, "its package list layer is not the one the build record names")
    if packages["size"] > MAX_SMALL_BYTES:
        raise _tampered(where, f"its package list is {packages['size']} bytes")
    return RemoteWheel(where, digest, record, wheel, packages)


# ---------------------------------------------------------------- pull


def pull(remote: RemoteWheel, into: Path, *, retries: int = DEFAULT_RETRIES) -> Path:
    """Download the wheel and its package list into the folder ``into`` (as a compile exports
    them, for rpibuild.torch_routes.debian.store), every byte checked against its digest."""
    where = remote.location
    session = oci.Session(where.target, where.repository)
    into.mkdir(parents=True, exist_ok=True)
    for descriptor, name in ((remote.wheel, remote.wheel_name), (remote.packages, RUNTIME_PACKAGES)):
        with_retries(partial(_download, session, where, descriptor, into / name), retries=retries)
    return into


def _download(session: oci.Session, where: WheelLocation, descriptor: Mapping[str, Any], path: Path) -> None:
    """Stream one blob to ``path``, hashing as it goes; a byte more than its descriptor says, or
    another sha256, is tampering (the partial file is the caller's temporary folder's)."""
    import requests

    digest, size = str(descriptor["digest"]), int(descriptor["size"])
    response = session.send("GET", f"/v2/{where.repository}/blobs/{digest}", stream=True)
    with response:
        _refuse_error(response, where, f"GET blob {digest} of {where.reference}")
        hashed, count = hashlib.sha256(), 0
        try:
            with path.open("wb") as out:
                for chunk in response.iter_content(chunk_size=1 << 20):
                    count += len(chunk)
                    if count > size:
                        raise _tampered(where, f"blob {digest} is longer than its {size} bytes")
                    hashed.update(chunk)
                    out.write(chunk)
        except requests.exceptions.RequestException as exc:
            raise classify(f"reading blob {digest}: {type(exc).__name__}: {exc}", where.target.host) from None
    got = "sha256:" + hashed.hexdigest()
    if got != digest or count != size:
        kind = descriptor.get("mediaType")
        raise _tampered(where, f"blob {digest} ({kind}) hashes to {got} ({count} bytes)")


# ---------------------------------------------------------------- push


def push(
    where: WheelLocation,
    record: dict[str, Any],
    wheel: Path,
    packages: Path,
    *,
    retries: int = DEFAULT_RETRIES,
) -> RemoteWheel:
    """Push the artifact under the key's tag (oras), then read it back: it must be what was sent."""
    registry = oci.Session(where.target, where.repository).client()
    annotations = {
        KEY_ANNOTATION: where.key,
        SHA256_ANNOTATION: str(record["wheel"]["sha256"]),
        "org.opencontainers.image.title": f"torch wheel {record['wheel']['name']}",
        "org.opencontainers.image.version": str(record.get("version") or ""),
    }
    with tempfile.TemporaryDirectory(prefix="rpibuild-wheel-record-") as folder:
        config = Path(folder) / "record.json"
        config.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n", encoding="utf-8")

        def attempt() -> None:
            """One push; oras raises ValueError or requests' errors, classified here so that
            a transient one (unreachable, 5xx) is retried."""
            try:
                registry.push(
                    target=where.reference,
                    files=[f"{wheel}:{WHEEL_TYPE}", f"{packages}:{PACKAGES_TYPE}"],
                    manifest_config=f"{config}:{RECORD_TYPE}",
                    manifest_annotations=annotations,
                    config_path=str(docker_config_dir() / "config.json"),
                    disable_path_validation=True,
                    quiet=True,
                )
            except (ValueError, OSError) as exc:
                message = f"pushing the torch wheel to {where.reference} failed: {exc}"
                raise classify(message, where.target.host) from None

        with_retries(attempt, retries=retries)
    pushed = find(where, retries=retries)
    if pushed is None or pushed.sha256 != record["wheel"]["sha256"]:
        raise DigestMismatch(f"{where.reference}: read back after the push, it is not the wheel pushed")
    return pushed


# ---------------------------------------------------------------- checks


def _tampered(where: WheelLocation, detail: str) -> DigestMismatch:
    return DigestMismatch(
        f"{where.reference} is not a wheel rpibuild pushed, or was changed since: {detail}; "
        "nothing was stored",
        hint=f"delete the tag {where.key} of {where.target.host}/{where.repository} in the registry "
        "(a host that has the wheel, or compiles it, pushes it again), or build here without the "
        "registry: --set torch.wheel_store=local (compiles)",
    )


def _json_object(raw: bytes, where: WheelLocation, what: str) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise _tampered(where, f"{what} is not a JSON object")
    return data


def _descriptor(value: object, where: WheelLocation, what: str, limit: int) -> dict[str, Any]:
    """A descriptor whose fields have the shapes the spec gives them, within ``limit`` bytes."""
    if not isinstance(value, dict):
        raise _tampered(where, f"{what} has no descriptor")
    digest, size, media = value.get("digest"), value.get("size"), value.get("mediaType")
    if not (isinstance(digest, str) and _DIGEST.fullmatch(digest)):
        raise _tampered(where, f"{what} has no sha256 digest")
    if not (isinstance(size, int) and not isinstance(size, bool) and 0 <= size <= limit):
        raise _tampered(where, f"{what} has a size of {size!r} (at most {limit} bytes are fetched)")
    if not isinstance(media, str):
        raise _tampered(where, f"{what} has no media type")
    return value


def _only(layers: list[dict[str, Any]], media_type: str, where: WheelLocation) -> dict[str, Any]:
    found = [layer for layer in layers if layer["mediaType"] == media_type]
    if len(found) != 1:
        raise _tampered(where, f"it has {len(found)} layers of type {media_type}, not one")
    return found[0]


def _check_record(record: dict[str, Any], where: WheelLocation) -> None:
    """The record is for this key, and names a wheel file rpibuild would write (the name
    becomes a file name here: no path, nothing but a wheel's characters)."""
    wheel, packages = record.get("wheel"), record.get("runtime_packages")
    if record.get("key") != where.key:
        raise _tampered(where, f"its build record is for key {str(record.get('key'))[:64]!r}")
    if not (isinstance(wheel, dict) and isinstance(packages, dict)):
        raise _tampered(where, "its build record names no wheel or package list")
    name, sha, size = wheel.get("name"), wheel.get("sha256"), wheel.get("size")
    if not (isinstance(name, str) and _WHEEL_NAME.fullmatch(name)):
        raise _tampered(where, "its build record names no torch wheel file")
    for value in (sha, packages.get("sha256")):
        if not (isinstance(value, str) and _DIGEST.fullmatch("sha256:" + value)):
            raise _tampered(where, "its build record has no sha256 of the wheel or of the package list")
    if not (isinstance(size, int) and 0 < size <= MAX_WHEEL_BYTES):
        raise _tampered(where, "its build record gives no size of the wheel")


def _blob(session: oci.Session, where: WheelLocation, descriptor: Mapping[str, Any]) -> bytes:
    """A small blob (the record), checked against its digest."""
    digest = str(descriptor["digest"])
    response = session.send("GET", f"/v2/{where.repository}/blobs/{digest}")
    _refuse_error(response, where, f"GET blob {digest} of {where.reference}")
    body = response.content
    if "sha256:" + hashlib.sha256(body).hexdigest() != digest:
        raise _tampered(where, f"its build record does not hash to {digest}")
    return body
