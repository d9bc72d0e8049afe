"""Checks of a loaded profile against the host: the files it names, and its image tags.

The schema checks what a value looks like; these check what it points at (a wheel that must
exist, a CA bundle that must be PEM, tag templates filled in with the profile's own values).
``config validate``, ``render`` and ``build`` run them all, before anything slow, so a profile
that validates also renders, and every error names the file, line and field that set it.
"""

from __future__ import annotations

from pathlib import Path

from rpibuild.config.loader import KeyPath, LoadedProfile
from rpibuild.errors import ConfigError
from rpibuild.planning.naming import image_tags
from rpibuild.torch_routes import route_of

PEM_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"
_PEM_PEEK = 1024 * 1024


def _fail(loaded: LoadedProfile, field: KeyPath, message: str, hint: str | None = None) -> None:
    raise loaded.error(field, message, hint)


def _file(loaded: LoadedProfile, field: KeyPath, value: str | None, what: str) -> Path | None:
    if not value or "://" in value:
        return None
    path = Path(value)
    if not path.is_file():
        _fail(loaded, field, f"{what} {value} does not exist or is not a file")
    return path


def check_ca_bundle(loaded: LoadedProfile) -> None:
    """network.ca_bundle: 'host', or a readable PEM file with at least one certificate."""
    value = loaded.profile.network.ca_bundle
    if not value or value == "host":
        return
    path = _file(loaded, ("network", "ca_bundle"), value, "CA bundle")
    if path is None:  # a URL, which the schema already refuses
        return
    try:
        with path.open("rb") as handle:
            head = handle.read(_PEM_PEEK)
    except OSError as exc:
        _fail(loaded, ("network", "ca_bundle"), f"cannot read CA bundle {value}: {exc.strerror}")
    if PEM_CERTIFICATE not in head:
        _fail(
            loaded,
            ("network", "ca_bundle"),
            f"CA bundle {value} is not a PEM file (no '-----BEGIN CERTIFICATE-----')",
            hint="convert a DER certificate with: openssl x509 -inform der -in CERT -out CERT.pem",
        )


def check_files(loaded: LoadedProfile) -> None:
    """Every host file or folder the profile names exists (wheel, keyring, trees, CA files)."""
    profile = loaded.profile
    check_ca_bundle(loaded)
    for field, value in route_of(profile.torch.source).host_files(profile.torch):
        _file(loaded, field, value, f"torch {field[-1]}")
    if profile.base.bootstrap is not None:
        _file(loaded, ("base", "bootstrap", "keyring"), profile.base.bootstrap.keyring, "keyring")
    _file(loaded, ("registry", "ca_cert"), profile.registry.ca_cert, "registry CA certificate")
    if profile.extension.enabled and profile.extension.path and not Path(profile.extension.path).is_dir():
        _fail(loaded, ("extension", "path"), f"extension folder {profile.extension.path} does not exist")
    if profile.qpulib.enabled and profile.qpulib.path and not Path(profile.qpulib.path, "Lib").is_dir():
        _fail(
            loaded,
            ("qpulib", "path"),
            f"{profile.qpulib.path} is not a QPULib source tree (no Lib/ folder)",
            hint="point RPIBUILD_QPULIB_SRC or qpulib.path at a checkout of mn416/QPULib",
        )


def check_tags(loaded: LoadedProfile) -> None:
    """The tag templates filled in with this profile's values are valid tags."""
    try:
        image_tags(loaded.profile)
    except ConfigError as exc:
        _fail(loaded, ("image", "tags"), exc.reason, hint=exc.hint)


def check_buildable(loaded: LoadedProfile) -> None:
    """Everything ``render`` and ``build`` would reject, found now, with file and line."""
    check_files(loaded)
    check_tags(loaded)
