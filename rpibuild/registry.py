"""Registries: login, push with retries and digest checks, multi-platform manifest lists.

The engine does the pushing (docker-py), but a push can answer 200 and still fail inside its
stream, and it never tells us what the registry finally stored. So after each push we read the
manifest back over the registry's own HTTP API (``/v2/``) and check its digest, its config
digest (= the local image id) and its platform against the local image. The engine (Docker
20.10) cannot create manifest lists, so ``push_manifest_list`` PUTs one itself.

Credentials live where docker keeps them (``$DOCKER_CONFIG/config.json`` or its credential
helper), never in rpibuild's files or logs; no message built here contains a password.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from rpibuild.config import grammar
from rpibuild.config.model import Profile
from rpibuild.errors import ConfigError, EngineError, ImageMissing, RegistryError
from rpibuild.host import ca
from rpibuild.planning.naming import image_tags

if TYPE_CHECKING:
    import requests

    from rpibuild.engine import Engine

# Media types of what Docker 20.10 pushes and of the lists we PUT (OCI forms accepted on read).
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
SINGLE_ACCEPT = (DOCKER_MANIFEST, OCI_MANIFEST)
LIST_ACCEPT = (DOCKER_MANIFEST_LIST, OCI_INDEX)
DEFAULT_RETRIES = 3
HTTP_TIMEOUT = 30
PROBE_LIMIT = 64 << 20
_NAME_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")


# ---------------------------------------------------------------- errors


class RegistryUnreachable(RegistryError):
    """No connection (refused, timed out, name not resolved, reset mid-transfer): worth a retry."""


class RegistryTLSError(RegistryError):
    """The TLS handshake failed: unknown CA, wrong host name, or HTTP/HTTPS mismatch."""


class RegistryAuthError(RegistryError):
    """The registry refused the credentials (HTTP 401), or none are stored."""


class RegistryNotFound(RegistryError):
    """The repository or namespace does not exist, or the account may not push to it."""


class RegistryStorageFull(RegistryError):
    """The registry's storage is full or over its quota."""


class RegistryServerError(RegistryError):
    """The registry answered 5xx or broke off: often transient, so it is retried."""


class DigestMismatch(RegistryError):
    """What the registry stored differs from the local image."""


TRANSIENT = (RegistryUnreachable, RegistryServerError)

_TLS_NEEDLES = (
    "x509",
    "certificate",
    "ssl",
    "tls:",
    "tls handshake",
    "wrong version number",
    "server gave http response to https client",
    "http request to an https server",
)
_STORAGE_NEEDLES = (
    "no space left",
    "insufficient storage",
    "disk quota",
    "quota exceeded",
    "507 ",
    "enospc",
    # distribution's filesystem driver reports a failed write as a Go PathError in JSON,
    # errno only: 28 is ENOSPC, 122 EDQUOT.
    '"err": 28}',
    '"err": 122}',
)
_AUTH_NEEDLES = (
    "unauthorized",
    "authentication required",
    "incorrect username or password",
    "401 unauthorized",
    "status: 401",
    "no basic auth credentials",
)
_NOT_FOUND_NEEDLES = (
    "name_unknown",
    "name unknown",
    "repository name not known",
    "repository does not exist",
    "namespace",
    "denied",
    "forbidden",
    "status: 403",
)
_UNREACHABLE_NEEDLES = (
    "connection refused",
    "no such host",
    "name or service not known",
    "temporary failure in name resolution",
    "i/o timeout",
    "timed out",
    "timeout",
    "connection reset",
    "broken pipe",
    "eof",
    "network is unreachable",
    "no route to host",
    "max retries exceeded",
)
_SERVER_NEEDLES = (
    "500 internal server error",
    "502 bad gateway",
    "503 service unavailable",
    "504 gateway",
    "received unexpected http status: 5",
    "status: 5",
)


def classify(message: str, host: str = "the registry", status: int | None = None) -> RegistryError:
    """Turn an engine or HTTP failure into the RegistryError subclass a user can act on.

    Pure (string and status code in, error out) so every branch is unit-tested; the order
    matters: a TLS failure also says "connection", a full disk also says "500".
    """
    text = message.lower()
    short = message.strip().splitlines()[0] if message.strip() else "no detail"
    if status == 507 or any(n in text for n in _STORAGE_NEEDLES):
        return RegistryStorageFull(
            f"{host} has no space left: {short}",
            hint="free space or raise the quota on the registry side, then push again",
        )
    if any(n in text for n in _TLS_NEEDLES):
        if "wrong version number" in text or "http response to https client" in text:
            hint = (
                f"{host} speaks plain HTTP: if that is intended, set registry.insecure: true "
                "(or pass --insecure); otherwise check the port"
            )
        elif "http request to an https server" in text:
            hint = f"{host} speaks HTTPS: drop registry.insecure / --insecure"
        else:
            hint = (
                f"if {host} uses a private CA, set registry.ca_cert to its PEM file (for the engine "
                f"too: copy it to /etc/docker/certs.d/{host}/ca.crt); a registry without TLS needs "
                "registry.insecure: true (or --insecure) and the engine's insecure-registries"
            )
        return RegistryTLSError(f"TLS with {host} failed: {short}", hint=hint)
    if status == 401 or any(n in text for n in _AUTH_NEEDLES):
        return RegistryAuthError(
            f"{host} refused the credentials: {short}",
            hint=f"check the user name and password, then `rpibuild login {host} -u USER --password-stdin`",
        )
    if "manifest_unknown" in text or "blob_unknown" in text:
        return RegistryNotFound(
            f"{host}: not found: {short}", hint="check the repository and tag (was it pushed?)"
        )
    if status in (403, 404) or any(n in text for n in _NOT_FOUND_NEEDLES):
        return RegistryNotFound(
            f"{host}: the repository or namespace is missing or not yours: {short}",
            hint="create the namespace/repository in the registry (or its console), or fix "
            "registry.namespace / image.repository",
        )
    if any(n in text for n in _UNREACHABLE_NEEDLES):
        return RegistryUnreachable(
            f"cannot reach {host}: {short}",
            hint="check registry.url (host:port), that the registry is running, and proxies",
        )
    if (status is not None and status >= 500) or any(n in text for n in _SERVER_NEEDLES):
        return RegistryServerError(
            f"{host} failed: {short}",
            hint="the registry answered with a server error; if it persists, read its logs "
            "(a full disk often shows as HTTP 500)",
        )
    return RegistryError(f"{host}: {short}")


def engine_side(error: RegistryError, target: Target) -> RegistryError:
    """Point a TLS failure the engine hit (while rpibuild's own probe passed) at the engine's config.

    rpibuild and the engine trust separately: registry.insecure / registry.ca_cert cover
    rpibuild's requests, the engine needs insecure-registries or /etc/docker/certs.d.
    """
    if isinstance(error, RegistryTLSError):
        if target.insecure:
            error.hint = (
                f'the engine must allow plain HTTP too: add "{target.host}" to "insecure-registries" in '
                "/etc/docker/daemon.json and restart dockerd (127.0.0.0/8 is allowed by default)"
            )
        else:
            error.hint = (
                f"the engine does not trust {target.host}'s certificate: copy its CA to "
                f"/etc/docker/certs.d/{target.host}/ca.crt (read on every push, no restart needed)"
            )
    return error


def backoff_delays(retries: int, base: float = 2.0, factor: float = 2.0, cap: float = 30.0) -> list[float]:
    """Seconds to wait before each retry: exponential, capped (no jitter: one client)."""
    return [min(cap, base * factor**attempt) for attempt in range(max(0, retries))]


def with_retries(
    action: Callable[[], Any],
    *,
    retries: int,
    base: float = 2.0,
    on_retry: Callable[[int, float, RegistryError], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Any:
    """Run ``action``; on a transient RegistryError wait and try again, up to ``retries`` times."""
    delays = backoff_delays(retries, base)
    for attempt in range(len(delays) + 1):
        try:
            return action()
        except TRANSIENT as exc:
            if attempt == len(delays):
                if retries:
                    exc.message += f" (after {retries} retries)"
                raise
            if on_retry:
                on_retry(attempt + 1, delays[attempt], exc)
            sleep(delays[attempt])
    raise AssertionError("unreachable")


# ---------------------------------------------------------------- references


@dataclass(frozen=True)
class Target:
    """Where to push: host[:port], scheme, namespace, and how to trust it."""

    host: str
    namespace: str | None = None
    insecure: bool = False
    ca_cert: str | None = None

    @property
    def base_url(self) -> str:
        return f"{'http' if self.insecure else 'https'}://{self.host}"

    def verify(self) -> str | bool:
        """What requests should trust: the profile's CA, else the host's bundle (not certifi's)."""
        if self.ca_cert:
            return self.ca_cert
        for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
            if os.environ.get(name) and Path(os.environ[name]).is_file():
                return os.environ[name]
        found = ca.ca_bundle()
        return str(found) if found else True


def parse_host(url: str) -> tuple[str | None, str]:
    """``https://reg.example:5000/`` -> ("https", "reg.example:5000"); a bare host keeps scheme None."""
    text = url.strip()
    if "://" in text:
        parts = urlsplit(text)
        if parts.path.strip("/"):
            raise ConfigError(f"{url!r}: give only host[:port], no path", field="registry.url")
        return parts.scheme.lower(), parts.netloc
    host = text.rstrip("/")
    if not host or "/" in host:
        raise ConfigError(f"{url!r} is not a registry host[:port]", field="registry.url")
    return None, host


def target_for(
    profile: Profile | None,
    *,
    url: str | None = None,
    namespace: str | None = None,
    insecure: bool | None = None,
    ca_cert: str | None = None,
) -> Target:
    """The registry of a profile, with command-line flags taking precedence."""
    section = profile.registry if profile else None
    raw = url or (section.url if section else None)
    if not raw:
        raise ConfigError(
            "no registry given",
            field="registry.url",
            hint="set registry.url in the profile or pass --registry",
        )
    scheme, host = parse_host(raw)
    plain = insecure if insecure is not None else bool(section and section.insecure)
    if scheme == "http" and not plain:
        raise ConfigError(
            f"{raw} is plain HTTP but the registry is not marked insecure",
            field="registry.url",
            hint="set registry.insecure: true (or pass --insecure) to allow a registry without TLS",
        )
    return Target(
        host=host,
        namespace=namespace if namespace is not None else (section.namespace if section else None),
        insecure=plain,
        ca_cert=ca_cert or (section.ca_cert if section else None),
    )


def remote_repository(target: Target, repository: str) -> str:
    """``rpibuild/pi3b`` in namespace ``team`` -> ``HOST/team/pi3b``.

    A namespace replaces the repository's own first part (docker's convention: the part
    before the last slash is the namespace), so cloud registries that allow exactly
    ``namespace/repository`` get that shape; without one the repository is used whole.
    """
    name = repository.strip("/")
    if target.namespace:
        namespace = target.namespace.strip("/")
        for part in namespace.split("/"):
            if not _NAME_COMPONENT.fullmatch(part):
                raise ConfigError(f"{namespace!r} is not a valid namespace", field="registry.namespace")
        name = f"{namespace}/{name.rsplit('/', 1)[-1]}"
    return f"{target.host}/{name}"


def split_reference(reference: str) -> tuple[str, str]:
    """``host:5000/ns/repo:tag`` -> (``host:5000/ns/repo``, ``tag``); the tag is required."""
    repository, sep, tag = reference.rpartition(":")
    if not sep or "/" in tag or not repository:
        raise ConfigError(f"{reference!r} has no tag", hint="write NAME:TAG")
    if not grammar.TAG.fullmatch(tag):
        raise ConfigError(f"{tag!r} is not a valid tag")
    return repository, tag


def push_plan(profile: Profile, target: Target) -> list[tuple[str, str]]:
    """(local reference, remote reference) for every tag of the profile's image."""
    plan = []
    for local in image_tags(profile):
        repository, tag = split_reference(local)
        plan.append((local, f"{remote_repository(target, repository)}:{tag}"))
    return plan


def path_name(repository: str, host: str) -> str:
    """The repository as the /v2/ API names it (without the host)."""
    return repository.removeprefix(host + "/")


# ---------------------------------------------------------------- manifest lists


@dataclass(frozen=True)
class PushedImage:
    """One pushed reference as the registry stored it."""

    reference: str
    digest: str
    size: int
    platform: dict[str, str]
    media_type: str = DOCKER_MANIFEST

    @property
    def platform_name(self) -> str:
        p = self.platform
        return "/".join(x for x in (p.get("os"), p.get("architecture"), p.get("variant")) if x)

    def as_dict(self) -> dict[str, object]:
        return {"reference": self.reference, "digest": self.digest, "platform": self.platform_name}


def manifest_list(images: Iterable[PushedImage]) -> dict[str, Any]:
    """A Docker manifest list (schema 2) naming each platform's manifest by digest and size."""
    entries = []
    seen: set[str] = set()
    for image in images:
        if image.platform_name in seen:
            raise RegistryError(f"two images for platform {image.platform_name} in one manifest list")
        seen.add(image.platform_name)
        entries.append(
            {
                "mediaType": image.media_type,
                "size": image.size,
                "digest": image.digest,
                "platform": {k: v for k, v in image.platform.items() if v},
            }
        )
    if not entries:
        raise RegistryError("a manifest list needs at least one image")
    return {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST_LIST, "manifests": entries}


def canonical_json(data: dict[str, Any]) -> bytes:
    return json.dumps(data, indent=3).encode()


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- credentials


def docker_config_dir() -> Path:
    return Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")


def load_credentials(host: str) -> tuple[str, str] | None:
    """(username, secret) docker would use for ``host``: config.json auths or a credential helper."""
    import docker.auth
    import docker.errors

    try:
        config = docker.auth.load_config(config_path=str(docker_config_dir() / "config.json"))
        found = config.resolve_authconfig(host)
    except (docker.errors.DockerException, OSError, ValueError):
        return None
    if not found:
        return None
    # docker-py spells the keys in lower case for config.json entries and in docker's own
    # case (Username/Password/IdentityToken) for credential-helper answers.
    lower = {str(k).lower(): v for k, v in found.items()}
    secret = lower.get("password") or lower.get("identitytoken")
    if not secret:
        return None
    return str(lower.get("username") or ""), str(secret)


def store_credentials(host: str, username: str, password: str) -> str:
    """Save credentials as ``docker login`` does; returns where (the helper or the file).

    A configured ``credHelpers[host]`` or ``credsStore`` wins (the secret goes to the helper,
    never the file); otherwise ``auths[host].auth`` in config.json, written 0600 and atomically.
    """
    directory = docker_config_dir()
    path = directory / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError) as exc:
        raise RegistryError(f"cannot read {path}: {exc}", hint="fix or move the docker config file") from None
    helper = (config.get("credHelpers") or {}).get(host) or config.get("credsStore")
    if helper:
        import docker.credentials

        try:
            docker.credentials.Store(helper).store(server=host, username=username, secret=password)
        except docker.credentials.StoreError as exc:
            raise RegistryError(
                f"docker-credential-{helper} could not store the credentials: {exc}",
                hint=f"check that docker-credential-{helper} works, or remove credsStore from {path}",
            ) from None
        # docker also leaves an empty entry so `docker` knows it is logged in.
        config.setdefault("auths", {}).setdefault(host, {})
        _write_private(path, config)
        return f"docker-credential-{helper}"
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    config.setdefault("auths", {})[host] = {"auth": token}
    _write_private(path, config)
    return str(path)


def _write_private(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=".config.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            json.dump(data, stream, indent="\t")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def profile_password(profile: Profile | None, environ: dict[str, str] | None = None) -> str | None:
    """The password from registry.password_env (an env var's name) or registry.password (${ENV})."""
    if profile is None:
        return None
    env = os.environ if environ is None else environ
    section = profile.registry
    if section.password_env:
        value = env.get(section.password_env)
        if value:
            return value
    if section.password is not None:
        return section.password.get_secret_value() or None
    return None


# ---------------------------------------------------------------- the /v2/ API


class RegistryClient:
    """A minimal client for the distribution API: ping, manifests, blobs; Basic or Bearer auth."""

    def __init__(self, target: Target, credentials: tuple[str, str] | None) -> None:
        import requests

        self.target = target
        self.credentials = credentials
        self.session = requests.Session()
        # Passed on every call: requests lets REQUESTS_CA_BUNDLE override a session's verify.
        self.verify = target.verify()
        self.session.trust_env = True
        self._tokens: dict[str, str] = {}
        self._basic = False

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self, method: str, path: str, *, scope: str | None = None, **kwargs: Any
    ) -> requests.Response:
        """One request, authenticated on the registry's 401 challenge; errors classified."""
        import requests

        url = self.target.base_url + path
        headers = dict(kwargs.pop("headers", {}) or {})
        # Once the registry asked for Basic auth, send it up front: a streamed body (the
        # upload probe) can be sent only once, so it must not meet a 401 challenge.
        auth = self.credentials if self._basic else None
        try:
            if scope in self._tokens:
                headers["Authorization"] = f"Bearer {self._tokens[scope]}"
            response = self.session.request(
                method, url, headers=headers, auth=auth, timeout=HTTP_TIMEOUT, verify=self.verify, **kwargs
            )
            if response.status_code == 401 and auth is None:
                challenge = response.headers.get("WWW-Authenticate", "")
                if challenge.lower().startswith("basic") and self.credentials:
                    self._basic = True
                    response = self.session.request(
                        method,
                        url,
                        headers=headers,
                        auth=self.credentials,
                        timeout=HTTP_TIMEOUT,
                        verify=self.verify,
                        **kwargs,
                    )
                elif challenge.lower().startswith("bearer"):
                    token = self._token(challenge, scope)
                    if token:
                        headers["Authorization"] = f"Bearer {token}"
                        response = self.session.request(
                            method, url, headers=headers, timeout=HTTP_TIMEOUT, verify=self.verify, **kwargs
                        )
        except requests.exceptions.SSLError as exc:
            raise classify(f"TLS: {_requests_reason(exc)}", self.target.host) from None
        except requests.exceptions.RequestException as exc:
            error = classify(_requests_reason(exc), self.target.host)
            if type(error) is RegistryError:
                error = RegistryUnreachable(
                    f"cannot reach {self.target.host}: {_requests_reason(exc)}", hint=error.hint
                )
            raise error from None
        return response

    def _token(self, challenge: str, scope: str | None) -> str | None:
        """Fetch a Bearer token from the realm the registry named (the token-auth flow)."""
        import requests

        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        realm = params.pop("realm", None)
        if not realm:
            return None
        if scope:
            params["scope"] = scope
        try:
            answer = self.session.get(
                realm, params=params, auth=self.credentials, timeout=HTTP_TIMEOUT, verify=self.verify
            )
        except requests.exceptions.RequestException as exc:
            raise classify(_requests_reason(exc), self.target.host) from None
        if answer.status_code != 200:
            raise classify(f"token endpoint said {answer.status_code}", self.target.host, answer.status_code)
        data = answer.json()
        token = data.get("token") or data.get("access_token")
        if token and scope:
            self._tokens[scope] = token
        return str(token) if token else None

    def check(self, response: requests.Response, what: str) -> requests.Response:
        if response.status_code < 400:
            return response
        detail = _registry_errors(response)
        raise classify(
            f"{what}: HTTP {response.status_code} {detail}", self.target.host, response.status_code
        )

    def ping(self) -> str:
        """GET /v2/: says whether the registry is there, speaks the API, and takes our credentials."""
        response = self.request("GET", "/v2/")
        if response.status_code == 401:
            raise RegistryAuthError(
                f"{self.target.host} refused the credentials"
                if self.credentials
                else f"{self.target.host} needs a login and none is stored",
                hint=f"rpibuild login {self.target.host} -u USER --password-stdin",
            )
        self.check(response, "GET /v2/")
        if self.target.insecure and response.url.startswith("https://"):
            return "reachable (redirected to HTTPS)"
        return "credentials accepted" if self.credentials else "reachable, no login needed"

    def get_manifest(self, name: str, reference: str, accept: Iterable[str]) -> tuple[bytes, str, str]:
        """(body, media type, digest) of a manifest; the digest is recomputed, not trusted."""
        response = self.check(
            self.request(
                "GET",
                f"/v2/{name}/manifests/{reference}",
                scope=f"repository:{name}:pull",
                headers={"Accept": ", ".join(accept)},
            ),
            f"GET manifest {name}:{reference}",
        )
        body = response.content
        digest = sha256_digest(body)
        header = response.headers.get("Docker-Content-Digest")
        if header and header != digest:
            raise DigestMismatch(
                f"{name}:{reference}: registry says {header}, the content hashes to {digest}"
            )
        media = response.headers.get("Content-Type", "").split(";")[0]
        media = json.loads(body).get("mediaType") or media
        return body, media, digest

    def get_blob(self, name: str, digest: str) -> bytes:
        response = self.check(
            self.request("GET", f"/v2/{name}/blobs/{digest}", scope=f"repository:{name}:pull"),
            f"GET blob {digest[:19]}",
        )
        if sha256_digest(response.content) != digest:
            raise DigestMismatch(f"blob {digest} of {name} does not hash to its digest")
        return response.content

    def put_manifest(self, name: str, tag: str, body: bytes, media_type: str) -> str:
        response = self.check(
            self.request(
                "PUT",
                f"/v2/{name}/manifests/{tag}",
                scope=f"repository:{name}:pull,push",
                headers={"Content-Type": media_type},
                data=body,
            ),
            f"PUT manifest {name}:{tag}",
        )
        digest = sha256_digest(body)
        header = response.headers.get("Docker-Content-Digest")
        if header and header != digest:
            raise DigestMismatch(f"{name}:{tag}: registry stored {header}, we sent {digest}")
        return digest

    def probe_upload(self, name: str, size: int = 1 << 20) -> RegistryError | None:
        """Write ``size`` bytes into a new upload session, then cancel it: why did uploads fail?

        The engine reports a registry's 500 as just "received unexpected HTTP status: 500",
        while the registry's answer body says why (e.g. "no space left on device"). This
        probe gets that body; cancelling the session deletes what it wrote.
        """
        started = self.request("POST", f"/v2/{name}/blobs/uploads/", scope=f"repository:{name}:pull,push")
        if started.status_code >= 400:
            status = started.status_code
            return classify(
                f"upload: HTTP {status} {_registry_errors(started, detail=True)}", self.target.host, status
            )
        location = started.headers.get("Location", "")
        if location.startswith("/"):
            location = self.target.base_url + location
        if not location.startswith(self.target.base_url):
            return None  # an upload redirected elsewhere (a CDN): nothing to learn here
        path = location[len(self.target.base_url) :]
        scope = f"repository:{name}:pull,push"
        try:
            wrote = self.request(
                "PATCH",
                path,
                scope=scope,
                headers={"Content-Type": "application/octet-stream"},
                data=_zeros(size),
            )
            if wrote.status_code >= 400:
                detail = _registry_errors(wrote, detail=True)
                return classify(
                    f"upload: HTTP {wrote.status_code} {detail}", self.target.host, wrote.status_code
                )
            return None
        finally:
            with contextlib.suppress(RegistryError):
                self.request("DELETE", path, scope=scope)


def _zeros(size: int, block: int = 1 << 20) -> Iterator[bytes]:
    """A body of ``size`` zero bytes, streamed (chunked) so a big probe costs no memory."""
    while size > 0:
        yield b"\0" * min(block, size)
        size -= block


# The innermost cause inside requests' "HTTPSConnectionPool(...): Max retries exceeded with
# url: ... (Caused by SSLError(SSLError(1, '[SSL: ...] ...')))" wrapping.
_CAUSES = (
    re.compile(r"certificate verify failed:[^'\"()]*"),
    re.compile(r"\[SSL[^\]]*\][^'\"()]*"),
    re.compile(r"\[Errno -?\d+\][^'\"()]*"),
    re.compile(r"(?:Connection aborted|Connection reset|Read timed out|Remote end closed)[^'\"()]*"),
)


def _requests_reason(exc: Exception) -> str:
    """The socket or TLS error a requests exception wraps, without the pool boilerplate."""
    text = str(exc).replace("\n", " ").strip()
    for pattern in _CAUSES:
        if match := pattern.search(text):
            return match.group(0).strip(" .,:")
    return text or type(exc).__name__


def _registry_errors(response: requests.Response, *, detail: bool = False) -> str:
    """The registry's own error codes and messages (``{"errors": [{"code", "message", "detail"}]}``).

    ``detail`` adds the free-text detail, which may name server paths: only for diagnosis.
    """
    try:
        errors = response.json().get("errors") or []
        parts = []
        for e in errors:
            text = f"{e.get('code', '')}: {e.get('message', '')}"
            if detail and e.get("detail"):
                extra = e["detail"]
                text += f" ({extra if isinstance(extra, str) else json.dumps(extra)})"
            parts.append(text)
        return "; ".join(parts) or response.reason
    except ValueError:
        return (response.text or response.reason or "")[:200]


# ---------------------------------------------------------------- login


def login(engine: Engine, target: Target, username: str, password: str) -> str:
    """Check the credentials (our own /v2/ probe, then the engine's), then store them as docker does.

    The probe gives distinct TLS/unreachable/auth errors and honours registry.insecure;
    the engine's login proves the engine itself can authenticate for the push.
    """
    if not username or not password:
        raise RegistryAuthError("a user name and a password are needed", hint="-u USER --password-stdin")
    with RegistryClient(target, (username, password)) as client:
        client.ping()
    try:
        engine.login(target.host, username, password)
    except RegistryError as exc:
        raise engine_side(classify(exc.message, target.host), target) from None
    return store_credentials(target.host, username, password)


# ---------------------------------------------------------------- push


def push_one(
    engine: Engine,
    local: str,
    remote: str,
    target: Target,
    client: RegistryClient,
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
    auth = None
    if client.credentials:
        auth = {"username": client.credentials[0], "password": client.credentials[1]}
    with _temporary_tag(engine, image.id, remote):
        repository, tag = split_reference(remote)
        name = path_name(repository, target.host)
        # Probe as much as the image holds (at most PROBE_LIMIT): a disk too full for the
        # layer is full for the probe too; the probe's upload is cancelled after.
        probe_size = min(image.size, PROBE_LIMIT)

        def diagnose(error: RegistryError) -> RegistryError:
            """The engine hides the registry's reason for a 5xx; ask the registry directly."""
            if isinstance(error, RegistryServerError):
                diagnosis = client.probe_upload(name, probe_size)
                if diagnosis is not None and not isinstance(diagnosis, RegistryServerError):
                    return diagnosis
            return error

        def attempt() -> tuple[str | None, int | None]:
            client.ping()
            watch = _EngineRetryWatch(client, name, probe_size, on_progress)
            try:
                return engine.push(repository, tag, auth_config=auth, on_progress=watch)
            except RegistryError as exc:
                if type(exc) is not RegistryError:
                    raise  # already classified: the watch stopped the engine's own retries
                raise diagnose(engine_side(classify(exc.message, target.host), target)) from None

        def on_retry(number: int, delay: float, exc: RegistryError) -> None:
            if on_progress:
                on_progress(f"{exc.message}; retry {number}/{retries} in {delay:.0f}s")

        digest, _ = with_retries(attempt, retries=retries, base=retry_base, on_retry=on_retry)
        pushed: PushedImage = with_retries(
            lambda: verify_pushed(engine, client, image.id, remote, digest),
            retries=retries,
            base=retry_base,
        )
        return pushed


class _EngineRetryWatch:
    """Passes progress on; when the engine starts retrying an upload, asks the registry why.

    The engine retries a failed layer upload by itself (5 tries over ~50 s) and only then
    reports a bare "connection refused" or "HTTP 500". When the registry is down, or its
    probe names a full disk, this raises from the progress callback, which closes the push
    stream so the engine cancels; rpibuild's own retries (--retries) take over from there.
    """

    def __init__(
        self, client: RegistryClient, name: str, probe_size: int, on_progress: Callable[[str], None] | None
    ) -> None:
        self.client, self.name, self.probe_size, self.on_progress = client, name, probe_size, on_progress
        self.checked = -1e9
        self.probed = False

    def __call__(self, line: str) -> None:
        if self.on_progress:
            self.on_progress(line)
        if "Retrying in" not in line or time.monotonic() - self.checked < 4:
            return
        self.checked = time.monotonic()
        self.client.ping()  # raises when the registry is gone or refuses us now
        if not self.probed:
            self.probed = True
            diagnosis = self.client.probe_upload(self.name, self.probe_size)
            if diagnosis is not None and not isinstance(diagnosis, RegistryServerError):
                raise diagnosis


def verify_pushed(
    engine: Engine, client: RegistryClient, image_id: str, remote: str, digest: str | None
) -> PushedImage:
    """Read the manifest back and compare digest, config digest and platform with the local image."""
    repository, tag = split_reference(remote)
    name = path_name(repository, client.target.host)
    body, media, served = client.get_manifest(name, tag, SINGLE_ACCEPT)
    if digest and served != digest:
        raise DigestMismatch(
            f"{remote}: the push reported {digest} but the registry serves {served}",
            hint="someone else pushed the same tag meanwhile, or the registry is inconsistent",
        )
    local_digests = [
        d.split("@", 1)[1] for d in engine.repo_digests(image_id) if d.startswith(repository + "@")
    ]
    if local_digests and served not in local_digests:
        raise DigestMismatch(f"{remote}: the engine recorded {local_digests}, the registry serves {served}")
    manifest = json.loads(body)
    config_digest = (manifest.get("config") or {}).get("digest")
    if config_digest != image_id:
        raise DigestMismatch(f"{remote}: the registry's image config is {config_digest}, local is {image_id}")
    config = json.loads(client.get_blob(name, config_digest))
    platform = {
        "os": config.get("os", ""),
        "architecture": config.get("architecture", ""),
        **({"variant": config["variant"]} if config.get("variant") else {}),
    }
    local = engine.image(image_id)
    if local is not None:
        remote_platform = "/".join(platform.values())
        if remote_platform != local.platform:
            raise DigestMismatch(f"{remote}: the registry has {remote_platform}, local is {local.platform}")
    # The list entry needs the size of exactly these bytes (the digest is of them too).
    return PushedImage(remote, served, len(body), platform, media)


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
    with RegistryClient(target, load_credentials(target.host)) as client:
        client.ping()
        pairs = push_plan(profile, target)
        return _push_all(engine, pairs, target, client, retries, retry_base, on_progress)


def _push_all(
    engine: Engine,
    pairs: list[tuple[str, str]],
    target: Target,
    client: RegistryClient,
    retries: int,
    retry_base: float,
    on_progress: Callable[[str], None] | None,
) -> list[PushedImage]:
    """Push each (local, remote) pair in order through one registry client."""
    return [
        push_one(
            engine,
            local,
            remote,
            target,
            client,
            retries=retries,
            retry_base=retry_base,
            on_progress=on_progress,
        )
        for local, remote in pairs
    ]


def manifest_target(name_tag: str, target: Target) -> tuple[str, str]:
    """``--manifest NAME:TAG`` -> (remote repository, tag); a bare NAME gets host and namespace."""
    name, tag = split_reference(name_tag)
    if name.startswith(target.host + "/"):
        return name, tag
    return remote_repository(target, name), tag


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
    """Push each profile's image as ``NAME:TAG-<platform>``, then PUT a manifest list at ``NAME:TAG``.

    The registry accepts a list only when every manifest it names is already in the same
    repository, hence the per-platform tags first.
    """
    repository, tag = manifest_target(name_tag, target)
    name = path_name(repository, target.host)
    credentials = load_credentials(target.host)
    platforms = [p.target.slug for p in profiles]
    if len(set(platforms)) != len(platforms):
        raise ConfigError(f"two profiles for the same platform: {', '.join(platforms)}", field="--manifest")
    pairs = [(image_tags(p)[0], f"{repository}:{tag}-{p.target.slug}") for p in profiles]
    with RegistryClient(target, credentials) as client:
        client.ping()
        members = _push_all(engine, pairs, target, client, retries, retry_base, on_progress)
        body = canonical_json(manifest_list(members))

        def put() -> str:
            return client.put_manifest(name, tag, body, DOCKER_MANIFEST_LIST)

        digest = with_retries(put, retries=retries, base=retry_base)
        _, media, served = client.get_manifest(name, tag, LIST_ACCEPT)
        if served != digest or media not in LIST_ACCEPT:
            raise DigestMismatch(f"{repository}:{tag}: stored {served} ({media}), sent {digest}")
    listed = PushedImage(f"{repository}:{tag}", digest, len(body), {}, DOCKER_MANIFEST_LIST)
    return listed, members


# ---------------------------------------------------------------- doctor


def check_registry(profile: Profile) -> tuple[bool, str, str | None]:
    """(ok, detail, fix) for doctor: reachable, and the stored credentials are accepted."""
    try:
        target = target_for(profile)
        with RegistryClient(target, load_credentials(target.host)) as client:
            return True, f"{target.base_url}: {client.ping()}", None
    except (RegistryError, ConfigError) as exc:
        return False, exc.message, exc.hint
