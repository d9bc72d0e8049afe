"""Registry failures a user can act on, and the one place tool messages are turned into them.

docker, buildx and the engine report registry failures as text (they have no error codes
we could read), so the classification is by the phrases those tools use. It is pure (string
and status code in, error out), so every branch is unit-tested; the order matters: a TLS
failure also says "connection", a full disk also says "500".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from rpibuild.errors import RegistryError

T = TypeVar("T")
DEFAULT_RETRIES = 3


class RegistryUnreachable(RegistryError):
    """No connection (refused, timed out, name not resolved, reset mid-transfer): worth a retry."""


class RegistryTLSError(RegistryError):
    """The TLS handshake failed: unknown CA, wrong host name, or HTTP/HTTPS mismatch."""


class RegistryAuthError(RegistryError):
    """The registry refused the credentials (HTTP 401), or none are stored."""


class RegistryNotFound(RegistryError):
    """The repository, tag or namespace does not exist, or the account may not push to it."""


class RegistryStorageFull(RegistryError):
    """The registry's storage is full or over its quota."""


class RegistryServerError(RegistryError):
    """The registry answered 5xx or broke off: often transient, so it is retried."""


class DigestMismatch(RegistryError):
    """What the registry stored differs from the local image."""


TRANSIENT = (RegistryUnreachable, RegistryServerError)

_TLS = ("x509", "certificate", "ssl", "tls:", "tls handshake", "wrong version number",
        "server gave http response to https client", "http request to an https server")  # fmt: skip
# distribution's filesystem driver reports a failed write as a Go PathError, errno only:
# 28 is ENOSPC, 122 EDQUOT.
_STORAGE = ("no space left", "insufficient storage", "disk quota", "quota exceeded", "507 ", "enospc",
            '"err": 28}', '"err": 122}')  # fmt: skip
_NO_LOGIN = ("no basic auth credentials", "cannot perform an interactive login")
_AUTH = ("unauthorized", "authentication required", "incorrect username or password", "status: 401",
         "401 unauthorized", "authorization failed")  # fmt: skip
_NOT_FOUND = ("name_unknown", "name unknown", "repository name not known", "repository does not exist",
              "namespace", "denied", "forbidden", "status: 403")  # fmt: skip
_UNREACHABLE = ("connection refused", "no such host", "name or service not known", "i/o timeout",
                "temporary failure in name resolution", "timed out", "timeout", "connection reset",
                "broken pipe", "eof", "network is unreachable", "no route to host")  # fmt: skip
_SERVER = ("500 internal server error", "502 bad gateway", "503 service unavailable", "504 gateway",
           "unexpected http status: 5", "status: 5")  # fmt: skip


def login_hint(host: str) -> str:
    return f"rpibuild login {host} -u USER --password-stdin"


def classify(message: str, host: str = "the registry", status: int | None = None) -> RegistryError:
    """Turn a tool's failure text (and an HTTP status, where one is known) into a RegistryError."""
    text = message.lower()
    short = _first_line(message)
    if status == 507 or any(n in text for n in _STORAGE):
        return RegistryStorageFull(
            f"{host} has no space left: {short}",
            hint="free space or raise the quota on the registry side, then push again",
        )
    if any(n in text for n in _TLS):
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
    if any(n in text for n in _NO_LOGIN):
        return RegistryAuthError(
            f"{host} needs a login and none is stored (or the stored one is refused)", hint=login_hint(host)
        )
    if status == 401 or any(n in text for n in _AUTH):
        return RegistryAuthError(
            f"{host} refused the credentials: {short}",
            hint=f"check the user name and password, then `{login_hint(host)}`",
        )
    if "manifest_unknown" in text or "blob_unknown" in text or text.rstrip().endswith("not found"):
        return RegistryNotFound(
            f"{host}: not found: {short}", hint="check the repository and tag (was it pushed?)"
        )
    if status in (403, 404) or any(n in text for n in _NOT_FOUND):
        return RegistryNotFound(
            f"{host}: the repository or namespace is missing or not yours: {short}",
            hint="create the namespace/repository in the registry (or its console), or fix "
            "registry.namespace / image.repository",
        )
    if any(n in text for n in _UNREACHABLE):
        return RegistryUnreachable(
            f"cannot reach {host}: {short}",
            hint="check registry.url (host:port), that the registry is running, and proxies",
        )
    if (status is not None and status >= 500) or any(n in text for n in _SERVER):
        return RegistryServerError(
            f"{host} failed: {short}",
            hint="the registry answered with a server error; if it persists, read its logs "
            "(a full disk often shows as HTTP 500)",
        )
    return RegistryError(f"{host}: {short}")


def _first_line(message: str) -> str:
    """The tool's message without docker's "ERROR:"/"Error response from daemon:" prefixes."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.lower().startswith(("error", "failed"))]
    line = (errors or lines or ["no detail"])[-1]
    for prefix in ("ERROR: ", "Error response from daemon: ", "Error: "):
        line = line.removeprefix(prefix)
    return line


def engine_side(error: RegistryError, insecure: bool, host: str) -> RegistryError:
    """Point a TLS failure the engine hit (while rpibuild's own check passed) at the engine's config.

    rpibuild and the engine trust separately: registry.insecure / registry.ca_cert cover
    rpibuild's checks, the engine needs insecure-registries or /etc/docker/certs.d.
    """
    if isinstance(error, RegistryTLSError):
        if insecure:
            error.hint = (
                f'the engine must allow plain HTTP too: add "{host}" to "insecure-registries" in '
                "/etc/docker/daemon.json and restart dockerd (127.0.0.0/8 is allowed by default)"
            )
        else:
            error.hint = (
                f"the engine does not trust {host}'s certificate: copy its CA to "
                f"/etc/docker/certs.d/{host}/ca.crt (read on every push, no restart needed)"
            )
    return error


def backoff_delays(retries: int, base: float = 2.0, factor: float = 2.0, cap: float = 30.0) -> list[float]:
    """Seconds to wait before each retry: exponential, capped (no jitter: one client)."""
    return [min(cap, base * factor**attempt) for attempt in range(max(0, retries))]


def with_retries(
    action: Callable[[], T],
    *,
    retries: int,
    base: float = 2.0,
    on_retry: Callable[[int, float, RegistryError], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
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
