"""Why did an upload fail? The engine says only "HTTP 500"; the registry's answer says why.

When the engine's push fails with a server error, a probe starts an upload session of its
own, writes as many bytes as the image holds (capped), and cancels the session (which
deletes what it wrote). A disk too full for the layer is too full for the probe, and the
registry's error body names the cause (distribution: ``"Err": 28``, ENOSPC). Authentication
is the oras library's (``oci.Session``), with the credentials docker stored; rpibuild only
sends the three requests of the upload protocol.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING

from rpibuild.errors import RegistryError
from rpibuild.publish.errors import RegistryServerError, classify
from rpibuild.publish.oci import Session
from rpibuild.publish.target import Target

if TYPE_CHECKING:
    import requests

PROBE_LIMIT = 64 << 20
TIMEOUT = 60


def upload_failure(target: Target, repository: str, size: int) -> RegistryError | None:
    """The classified reason an upload of ``size`` bytes to ``repository`` fails, or None.

    ``repository`` is the name without the host (``team/app``). Only a reason more specific
    than a server error is returned: a plain 500 tells the user nothing new.
    """
    try:
        error = _probe(target, repository, min(size, PROBE_LIMIT))
    except RegistryError:
        return None  # the registry is gone or broke off: the push's own error says so
    if error is None or isinstance(error, RegistryServerError):
        return None
    return error


def _probe(target: Target, repository: str, size: int) -> RegistryError | None:
    session = Session(target, repository)
    started = session.send("POST", f"/v2/{repository}/blobs/uploads/")
    if started.status_code >= 400:
        return _error(target, started)
    location = started.headers.get("Location", "")
    base = target.base_url
    if location.startswith("/"):
        location = base + location
    if not location.startswith(base):
        return None  # an upload redirected elsewhere (a CDN): nothing to learn here
    path = location[len(base) :]
    try:
        wrote = session.send("PATCH", path, data=_zeros(size), content_type="application/octet-stream")
        return _error(target, wrote) if wrote.status_code >= 400 else None
    finally:
        with contextlib.suppress(Exception):
            session.send("DELETE", path)


def _error(target: Target, response: requests.Response) -> RegistryError:
    return classify(
        f"upload: HTTP {response.status_code} {_details(response)}", target.host, response.status_code
    )


def _details(response: requests.Response) -> str:
    """The registry's own error codes, messages and details (``{"errors": [...]}``)."""
    try:
        errors = response.json().get("errors") or []
    except ValueError:
        return (response.text or response.reason or "")[:200]
    parts = []
    for e in errors:
        text = f"{e.get('code', '')}: {e.get('message', '')}"
        if e.get("detail"):
            extra = e["detail"]
            text += f" ({extra if isinstance(extra, str) else json.dumps(extra)})"
        parts.append(text)
    return "; ".join(parts) or response.reason


def _zeros(size: int, block: int = 1 << 20) -> Iterator[bytes]:
    """A body of ``size`` zero bytes, streamed (chunked) so a big probe costs no memory."""
    while size > 0:
        yield b"\0" * min(block, size)
        size -= block
