"""Attach the SBOM to a pushed image as an OCI artifact that refers to it (``subject``).

The artifact (one CycloneDX layer, artifactType ``application/vnd.cyclonedx+json``) is pushed
by the oras library under the tag ``sha256-<hex>.sbom``. A registry with the OCI 1.1
referrers API indexes it by its subject by itself; for one without (distribution 2.8, Debian's
docker-registry), the referrers tag schema's index at ``sha256-<hex>`` is updated too, which
is where ``oras discover`` looks on such a registry.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from rpibuild.errors import RegistryError
from rpibuild.publish import oci
from rpibuild.publish.errors import classify
from rpibuild.publish.sbom import MEDIA_TYPE
from rpibuild.publish.target import Target, docker_config_dir

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def sbom_tag(digest: str) -> str:
    return digest.replace(":", "-") + ".sbom"


def referrers_tag(digest: str) -> str:
    """The referrers tag schema's tag for ``digest`` (OCI distribution spec 1.1)."""
    return digest.replace(":", "-")


def attach_sbom(target: Target, repository: str, subject_digest: str, document: dict[str, object]) -> str:
    """Push ``document`` as an artifact referring to ``repository@subject_digest``; its digest.

    ``repository`` is the name without the host (``team/app``).
    """
    import oras.oci

    subject_raw = oci.manifest(target, repository, subject_digest)
    subject = oras.oci.Subject(
        mediaType=str(json.loads(subject_raw).get("mediaType") or OCI_MANIFEST),
        digest=subject_digest,
        size=len(subject_raw),
    )
    session = oci.Session(target, repository)
    registry = session.client()
    with tempfile.TemporaryDirectory(prefix="rpibuild-sbom-") as folder:
        path = Path(folder) / "sbom.cdx.json"
        path.write_text(json.dumps(document, indent=1), encoding="utf-8")
        config = Path(folder) / "config.json"
        config.write_text("{}", encoding="utf-8")
        try:
            response = registry.push(
                target=f"{target.host}/{repository}:{sbom_tag(subject_digest)}",
                files=[f"{path}:{MEDIA_TYPE}"],
                manifest_config=f"{config}:{MEDIA_TYPE}",
                manifest_annotations={"org.opencontainers.image.title": "SBOM (CycloneDX)"},
                subject=subject,
                config_path=str(docker_config_dir() / "config.json"),
                disable_path_validation=True,
                quiet=True,
            )
        except (ValueError, OSError) as exc:
            raise classify(f"attaching the SBOM failed: {exc}", target.host) from None
    digest = str(response.headers.get("Docker-Content-Digest") or "")
    if not digest:
        raise RegistryError(f"{target.host}: the registry gave no digest for the SBOM of {subject_digest}")
    if not _has_referrers_api(session, repository, subject_digest):
        _add_to_referrers_index(session, target, repository, subject_digest, digest)
    return digest


def _has_referrers_api(session: oci.Session, repository: str, digest: str) -> bool:
    response = session.send("GET", f"/v2/{repository}/referrers/{digest}", accept=OCI_INDEX)
    return response.status_code == 200 and "json" in response.headers.get("Content-Type", "")


def _add_to_referrers_index(
    session: oci.Session, target: Target, repository: str, subject_digest: str, artifact_digest: str
) -> None:
    """The tag-schema fallback: the index at ``sha256-<hex>`` lists every referrer."""
    artifact = oci.manifest(target, repository, artifact_digest)
    entry = {
        "mediaType": OCI_MANIFEST,
        "digest": artifact_digest,
        "size": len(artifact),
        "artifactType": MEDIA_TYPE,
        "annotations": json.loads(artifact).get("annotations") or {},
    }
    tag = referrers_tag(subject_digest)
    index: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    existing = session.send("GET", f"/v2/{repository}/manifests/{tag}", accept=OCI_INDEX)
    if existing.status_code == 200:
        index = existing.json()
    index["manifests"] = [m for m in index.get("manifests", []) if m.get("digest") != artifact_digest]
    index["manifests"].append(entry)
    body = json.dumps(index, indent=1).encode()
    put = session.send("PUT", f"/v2/{repository}/manifests/{tag}", data=body, content_type=OCI_INDEX)
    if put.status_code >= 400:
        raise classify(f"PUT referrers index {tag}: HTTP {put.status_code}", target.host, put.status_code)


def referrers(target: Target, repository: str, subject_digest: str) -> list[dict[str, Any]]:
    """The descriptors of what refers to ``subject_digest`` (referrers API, else the tag schema)."""
    session = oci.Session(target, repository)
    response = session.send("GET", f"/v2/{repository}/referrers/{subject_digest}", accept=OCI_INDEX)
    if not (response.status_code == 200 and "json" in response.headers.get("Content-Type", "")):
        response = session.send(
            "GET", f"/v2/{repository}/manifests/{referrers_tag(subject_digest)}", accept=OCI_INDEX
        )
        if response.status_code == 404:
            return []
    if response.status_code >= 400:
        raise classify(
            f"referrers of {subject_digest}: HTTP {response.status_code}", target.host, response.status_code
        )
    return list(response.json().get("manifests") or [])


def fetch_sbom(target: Target, repository: str, subject_digest: str) -> dict[str, object] | None:
    """The SBOM last attached to ``subject_digest``, read back from the registry (None if none)."""
    for descriptor in reversed(referrers(target, repository, subject_digest)):  # the newest first
        if descriptor.get("artifactType") != MEDIA_TYPE:
            continue
        manifest = json.loads(oci.manifest(target, repository, str(descriptor["digest"])))
        for layer in manifest.get("layers") or []:
            if layer.get("mediaType") == MEDIA_TYPE:
                blob = oci.Session(target, repository).send(
                    "GET", f"/v2/{repository}/blobs/{layer['digest']}"
                )
                if blob.status_code >= 400:
                    raise classify(f"GET blob: HTTP {blob.status_code}", target.host, blob.status_code)
                data: dict[str, object] = json.loads(blob.content)
                return data
    return None
