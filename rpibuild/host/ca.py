"""Facts of this host that builds and registry calls read: its CA bundle.

One list of where distributions keep the system's CA bundle, used both for
``network.ca_bundle: host`` (copied into the build stages) and for what rpibuild's own
registry calls trust (the host's bundle, not certifi's).
"""

from __future__ import annotations

from pathlib import Path

# Debian/Ubuntu, then Fedora/RHEL.
HOST_CA_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")


def ca_bundle() -> Path | None:
    """The host's CA bundle, if it has one where distributions keep it."""
    return next((Path(p) for p in HOST_CA_BUNDLES if Path(p).is_file()), None)
