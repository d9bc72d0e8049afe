"""Is the registry there, and does its TLS match what the profile says? (No HTTP spoken.)

rpibuild and the engine trust registries separately: the engine through its
insecure-registries and /etc/docker/certs.d, rpibuild through registry.insecure and
registry.ca_cert. This is rpibuild's side: a TCP connect, then for a TLS registry a
handshake against the profile's CA (else the host's bundle). It catches the plain-HTTP-vs-TLS
and unknown-CA mistakes with hints naming the profile field, before the engine's messages
(which would name the engine's config) come into play; and it is the cheap "is it back?"
check while a push waits on a registry that went away.
"""

from __future__ import annotations

import os
import socket
import ssl
from pathlib import Path

from rpibuild.host import ca as host_facts
from rpibuild.publish.errors import RegistryUnreachable, classify
from rpibuild.publish.target import Target

CONNECT_TIMEOUT = 10.0


def trust_file(target: Target) -> str | None:
    """The CA file rpibuild trusts for ``target``: the profile's, else the host's bundle."""
    if target.ca_cert:
        return target.ca_cert
    for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        if os.environ.get(name) and Path(os.environ[name]).is_file():
            return os.environ[name]
    found = host_facts.ca_bundle()
    return str(found) if found else None


def check(target: Target, timeout: float = CONNECT_TIMEOUT) -> None:
    """Raise RegistryUnreachable or RegistryTLSError (with the fix) unless the registry answers."""
    name, port = target.address
    try:
        with socket.create_connection((name, port), timeout=timeout) as sock:
            if target.insecure:
                return
            context = ssl.create_default_context(cafile=trust_file(target))
            with context.wrap_socket(sock, server_hostname=name):
                return
    except ssl.SSLError as exc:
        raise classify(f"TLS: {_ssl_reason(exc)}", target.host) from None
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        error = classify(reason, target.host)
        if not isinstance(error, RegistryUnreachable):
            error = RegistryUnreachable(f"cannot reach {target.host}: {reason}", hint=error.hint)
        raise error from None


def reachable(target: Target, timeout: float = 3.0) -> bool:
    """Does anything accept connections at the registry's address right now?"""
    try:
        with socket.create_connection(target.address, timeout=timeout):
            return True
    except OSError:
        return False


def _ssl_reason(exc: ssl.SSLError) -> str:
    """``certificate verify failed: unable to get local issuer certificate`` and the like."""
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return f"certificate verify failed: {exc.verify_message}"
    return str(exc.reason or exc).replace("_", " ").lower()
