"""The few registry reads rpibuild needs that no docker or buildx command gives it, via oras.

The engine and buildx trust registries their own way (certs.d, insecure-registries; buildx
on the docker driver only the system CAs, and plain HTTP for loopback). Reading a manifest's
exact bytes as the profile's registry settings say (registry.ca_cert, registry.insecure),
and sending the upload probe of ``diagnose``, go through the oras library's auth (Basic or
token, with the credentials docker stored: config.json or its credential helper).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from rpibuild.publish.errors import DigestMismatch, RegistryUnreachable, classify
from rpibuild.publish.target import Target, docker_config_dir
from rpibuild.publish.transport import trust_file

if TYPE_CHECKING:
    import requests

TIMEOUT = 60
MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
)


class Session:
    """Requests authenticated by oras's auth backend (Basic or token, from docker's store)."""

    def __init__(self, target: Target, repository: str) -> None:
        self.target, self.repository = target, repository
        self.verify: str | bool = trust_file(target) or True
        self.headers: dict[str, str] = {}
        self.registry: Any = None

    def send(
        self,
        method: str,
        path: str,
        *,
        data: Any = None,
        content_type: str | None = None,
        accept: str | None = None,
        stream: bool = False,
    ) -> requests.Response:
        """One request to the registry, answering its authentication challenge through oras;
        ``stream``: the body is read by the caller (a blob too big to hold in memory)."""
        url = self.target.base_url + path
        headers = dict(self.headers)
        if content_type:
            headers["Content-Type"] = content_type
        if accept:
            headers["Accept"] = accept
        response = self._request(method, url, headers, data, stream)
        if response.status_code != 401:
            return response
        if self.registry is None:
            # First challenge: let oras answer it with the scheme the registry asked for.
            scheme = response.headers.get("WWW-Authenticate", "").split(" ", 1)[0].lower()
            self.registry = self._oras("basic" if scheme == "basic" else "token")
        try:
            # A later challenge asks for a wider scope (push after pull): a new token then.
            authed, changed = self.registry.auth.authenticate_request(
                response, headers, refresh=bool(self.headers)
            )
        except (AttributeError, ValueError):  # no credentials stored for this registry
            return response
        if not changed:
            return response
        self.headers = {k: v for k, v in authed.items() if k == "Authorization"}
        response.close()  # a streamed 401 would hold its connection
        return self._request(method, url, {**headers, **self.headers}, data, stream)

    def _request(
        self, method: str, url: str, headers: dict[str, str], data: Any, stream: bool = False
    ) -> requests.Response:
        """One request; a connection or TLS failure becomes the RegistryError that says so."""
        import requests

        session = self.registry.session if self.registry is not None else requests.Session()
        try:
            response: requests.Response = session.request(
                method, url, headers=headers, data=data, timeout=TIMEOUT, verify=self.verify, stream=stream
            )
        except requests.exceptions.SSLError as exc:
            raise classify(f"TLS: {type(exc).__name__}: {exc}", self.target.host) from None
        except requests.exceptions.RequestException as exc:
            raise RegistryUnreachable(
                f"cannot reach {self.target.host}: {type(exc).__name__}",
                hint="check registry.url (host:port), that the registry is running, and proxies",
            ) from None
        return response

    def client(self) -> Any:
        """An ``oras.provider.Registry`` for this registry, its auth set up as the registry asks."""
        if self.registry is None:
            self.send("GET", "/v2/")
        if self.registry is None:  # the registry asked for no credentials
            self.registry = self._oras("token")
        return self.registry

    def _oras(self, backend: str) -> Any:
        import oras.provider

        registry = oras.provider.Registry(
            self.target.host, insecure=self.target.insecure, tls_verify=self.verify, auth_backend=backend
        )
        container = registry.get_container(f"{self.target.host}/{self.repository}:probe")
        registry.auth.load_configs(container, configs=[str(docker_config_dir() / "config.json")])
        return registry


def manifest(target: Target, repository: str, reference: str) -> bytes:
    """The manifest (or list) at ``repository:reference`` exactly as the registry serves it.

    ``repository`` is the name without the host (``team/app``); the bytes are checked
    against the registry's Docker-Content-Digest header.
    """
    response = Session(target, repository).send(
        "GET", f"/v2/{repository}/manifests/{reference}", accept=", ".join(MANIFEST_TYPES)
    )
    if response.status_code >= 400:
        codes = error_codes(response)
        raise classify(f"GET manifest {repository}:{reference}: HTTP {response.status_code} {codes}",
                       target.host, response.status_code)  # fmt: skip
    body = response.content
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    header = response.headers.get("Docker-Content-Digest")
    if header and header != digest:
        raise DigestMismatch(
            f"{repository}:{reference}: registry says {header}, the content hashes to {digest}"
        )
    return body


def error_codes(response: requests.Response) -> str:
    """The registry's error codes and messages (``{"errors": [{"code", "message"}]}``)."""
    try:
        errors = response.json().get("errors") or []
    except ValueError:
        return response.reason or ""
    return "; ".join(f"{e.get('code', '')}: {e.get('message', '')}" for e in errors) or response.reason
