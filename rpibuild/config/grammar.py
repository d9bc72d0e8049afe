"""What each kind of profile value may look like, checked when the profile is loaded.

Values end up in a Dockerfile, a shell line, an apt sources file or a tool's command line.
Quoting protects a shell word but not a Dockerfile (a newline starts a new instruction) nor
a program's text, so every value must first be what it claims to be: a Debian suite, a
package name, an image reference, a CPU model, a URL with a known scheme. Each check raises
``ValueError`` with a message that never repeats the value (it may be a secret).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from string import Formatter
from urllib.parse import unquote, urlsplit

from rpibuild.text import forbidden_character

_SUITE = re.compile(r"[a-z][a-z0-9.\-]{0,63}")
_COMPONENT = re.compile(r"[a-z][a-z0-9\-]{0,63}")
_PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.\-]{0,127}(:[a-z0-9]+)?(=[A-Za-z0-9.+~:\-]{1,128})?")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
# An image tag (the OCI distribution spec's grammar): the one definition rpibuild uses.
TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_CPU = re.compile(r"[a-z0-9][a-z0-9_.+\-]{0,63}")
_LABEL_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/\-]{0,254}")
_REPOSITORY_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_PART = r"(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9\-]*[A-Za-z0-9])"
_HOST = rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{{1,5}})?"
_REFERENCE = re.compile(
    rf"(?:{_HOST}/)?{_REPOSITORY_PART}(?:/{_REPOSITORY_PART})*"
    rf"(?::{TAG.pattern})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[\-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?"
)
_REGISTRY = re.compile(rf"(?:https?://)?{_HOST}/?")
_NAMESPACE = re.compile(rf"{_REPOSITORY_PART}(?:/{_REPOSITORY_PART})*")
# PEP 440, as pip reads it (normalised forms and the usual spellings).
_VERSION = re.compile(
    r"v?(?:[0-9]+!)?[0-9]+(?:\.[0-9]+)*"
    r"(?:[\-_.]?(?:a|b|c|rc|alpha|beta|pre|preview)[\-_.]?[0-9]*)?"
    r"(?:[\-_.]?(?:post|rev|r)[\-_.]?[0-9]*)?"
    r"(?:[\-_.]?dev[\-_.]?[0-9]*)?"
    r"(?:\+[a-z0-9]+(?:[\-_.][a-z0-9]+)*)?",
    re.IGNORECASE,
)
_GIT_REF = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._/+\-]{0,199}")
_WHEEL_FILE = re.compile(r"[A-Za-z0-9_.+!\-]+\.whl")
_URL_CHARS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
_NO_PROXY_ITEM = re.compile(r"[A-Za-z0-9.*:_\[\]/\-]+")


def check_text(text: str) -> str:
    """Any value: one line of printable text (no newline, NUL, U+2028, bidi control...)."""
    bad = forbidden_character(text)
    if bad:
        raise ValueError(f"contains a control or line-break character ({bad}): a value is one line of text")
    return text


def _full(pattern: re.Pattern[str], value: str, what: str) -> str:
    check_text(value)
    if not pattern.fullmatch(value):
        raise ValueError(f"is not {what}")
    return value


def profile_name(value: str) -> str:
    return _full(_NAME, value, "a profile name (letters, digits, '.', '_', '-'; at most 64)")


def debian_suite(value: str) -> str:
    return _full(_SUITE, value, "a Debian suite name such as 'bookworm'")


def debian_component(value: str) -> str:
    return _full(_COMPONENT, value, "a Debian archive component such as 'main'")


def debian_package(value: str) -> str:
    return _full(_PACKAGE, value, "a Debian package name (name[:arch][=version])")


def sha256(value: str) -> str:
    return _full(_SHA256, value, "64 lowercase hex digits (a sha256)")


def image_reference(value: str) -> str:
    return _full(
        _REFERENCE, value, "an image reference such as 'debian:bookworm' or 'host:5000/repo@sha256:...'"
    )


def image_tag(value: str) -> str:
    return _full(TAG, value, "an image tag (letters, digits, '_', '.', '-'; at most 128)")


def env_name(value: str) -> str:
    return _full(_ENV_NAME, value, "the NAME of an environment variable")


def cpu_model(value: str) -> str:
    return _full(_CPU, value, "a QEMU CPU model name such as 'cortex-a53'")


def label_key(value: str) -> str:
    return _full(_LABEL_KEY, value, "a label key such as 'org.example.owner'")


def version(value: str) -> str:
    return _full(_VERSION, value, "a version such as '2.5.1' (PEP 440)")


def git_ref(value: str) -> str:
    """A branch or tag for ``git clone --branch``: git's ref rules, and never an option."""
    _full(_GIT_REF, value, "a git branch or tag name")
    parts = value.split("/")
    if (
        ".." in value
        or any(not p or p.startswith(".") or p.endswith(".lock") for p in parts)
        or value[-1] == "."
    ):
        raise ValueError("is not a git branch or tag name")
    return value


# distcc's host list entry for a TCP helper: HOST[:PORT][/LIMIT] (no ssh, pump or options).
_DISTCC_HOST = re.compile(rf"{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*(?::[0-9]{{1,5}})?(?:/[0-9]{{1,3}})?")


def distcc_host(value: str) -> str:
    """A distcc helper: ``HOST[:PORT][/LIMIT]`` (name or IPv4; port 1-65535; limit 1-256 jobs)."""
    _full(_DISTCC_HOST, value, "a distcc helper HOST[:PORT][/LIMIT] such as '192.168.1.20:3632/8'")
    rest = value.split(":", 1)[1] if ":" in value else ""
    port, _, limit = rest.partition("/") if rest else ("", "", value.partition("/")[2])
    if port and not 1 <= int(port) <= 65535:
        raise ValueError("has a port outside 1-65535")
    if limit and not 1 <= int(limit) <= 256:
        raise ValueError("has a job limit outside 1-256")
    return value


def registry_host(value: str) -> str:
    return _full(_REGISTRY, value, "a registry host[:port] such as 'registry.example:5000'")


_REPOSITORY = re.compile(rf"(?:{_HOST}/)?{_REPOSITORY_PART}(?:/{_REPOSITORY_PART})*")


def repository(value: str) -> str:
    """An image repository without tag or digest, optionally on a registry host[:port]
    (``rpibuild/pi3b``, ``localhost:5000/team/pi``, ``registry.example/team/pi``)."""
    check_text(value)
    # docker's rule: a first part with '.' or ':' is a registry host (which may have capitals);
    # anything else is part of the repository path, which is lowercase.
    first, _, rest = value.partition("/")
    if not _REPOSITORY.fullmatch(value) or (
        rest and first != first.lower() and "." not in first and ":" not in first
    ):
        raise ValueError(
            "is not a lowercase image repository such as 'rpibuild/pi3b' "
            "(a registry host[:port]/ may come first: 'localhost:5000/team/pi')"
        )
    return value


def namespace(value: str) -> str:
    return _full(_NAMESPACE, value, "a registry namespace such as 'team' (lowercase)")


def url(value: str, schemes: Iterable[str], plain: bool = False, credentials: bool = True) -> str:
    """A URL parsed with its scheme; it must name a host (``file:`` excepted).

    ``plain``: no query or fragment either (a mirror is a host and a path).
    ``credentials=False``: no ``user:password@`` either, for a URL that would land on a
    command line, in a Dockerfile or in a file of an image layer (nothing could hide it there).
    """
    from rpibuild.redact import remember_credentials  # redact imports this module

    allowed = tuple(schemes)
    remember_credentials(value)
    _full(_URL_CHARS, value, "a URL")
    parts = urlsplit(value)
    if plain and ("?" in value or "#" in value):
        raise ValueError("is not a mirror URL: no '?' or '#' (a mirror is scheme://host/path)")
    if parts.scheme.lower() not in allowed:
        raise ValueError(f"is not a URL with a scheme of {', '.join(a + '://' for a in allowed)}")
    try:
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError:
        raise ValueError("is not a URL: its port is not a number from 0 to 65535") from None
    if parts.scheme.lower() != "file" and not parts.hostname:
        raise ValueError("is not a URL: it names no host")
    if not credentials and "@" in parts.netloc:
        raise ValueError(
            "carries credentials (user:password@), which this setting would put on a command line "
            "or into an image layer: give a URL without them (pip index URLs and "
            "RPIBUILD_SOURCE_MIRROR do take credentials)"
        )
    return value


def wheel_name(value: str) -> str:
    """The file name of a wheel path or URL, percent-decoded (indexes write ``+`` as ``%2B``).

    The decoded name is what lands in the Dockerfile, so it is the one held to the rules.
    """
    if "://" in value:
        url(value, ("http", "https"))
        name = unquote(urlsplit(value).path.rsplit("/", 1)[-1])
    else:
        name = value.replace("\\", "/").rsplit("/", 1)[-1]
    if not _WHEEL_FILE.fullmatch(name):
        raise ValueError(
            "does not end in a wheel file name such as 'torch-2.5.1-cp311-cp311-linux_aarch64.whl'"
        )
    return name


def wheel(value: str) -> str:
    """A wheel given by http(s) URL or path; its file name follows the wheel naming rules."""
    check_text(value)
    if "://" in value:  # fetched by a RUN line of the Dockerfile: no credentials in it
        url(value, ("http", "https"), credentials=False)
    wheel_name(value)
    return value


def host_path(value: str) -> str:
    """A file or folder on this host (copied or mounted into a build), not a URL."""
    check_text(value)
    if "://" in value:
        raise ValueError("is a URL: give a path on this host")
    return value


def no_proxy(value: str) -> str:
    """Hosts, domains, addresses or CIDRs separated by commas."""
    check_text(value)
    items = [item.strip() for item in value.split(",")]
    if not all(_NO_PROXY_ITEM.fullmatch(item) for item in items if item) or not any(items):
        raise ValueError("is not a comma-separated list of hosts, domains or addresses")
    return value


def url_template(value: str, placeholders: Iterable[str], schemes: Iterable[str]) -> str:
    """A URL with ``{name}`` placeholders: only known names, no format specs."""
    check_text(value)
    known = set(placeholders)
    try:
        fields = [(name, spec, conv) for _, name, spec, conv in Formatter().parse(value) if name is not None]
    except ValueError:
        raise ValueError("has an unbalanced '{' or '}' (write '{{' or '}}' for a brace)") from None
    for name, spec, conv in fields:
        if name not in known or spec or conv:
            raise ValueError(
                f"uses an unknown placeholder (known: {', '.join('{' + k + '}' for k in sorted(known))})"
            )
    url(value.format(**{k: "0" for k in known}), schemes)
    return value


def tag_template(value: str, placeholders: Iterable[str]) -> str:
    """An image tag with ``{name}`` placeholders; the rest must be tag characters."""
    check_text(value)
    known = set(placeholders)
    try:
        fields = [(name, spec, conv) for _, name, spec, conv in Formatter().parse(value) if name is not None]
    except ValueError:
        raise ValueError("has an unbalanced '{' or '}'") from None
    for name, spec, conv in fields:
        if name not in known or spec or conv:
            raise ValueError(
                f"uses an unknown placeholder (known: {', '.join('{' + k + '}' for k in sorted(known))})"
            )
    _full(TAG, value.format(**{k: "x" for k in known}), "an image tag template such as '{profile}-dev'")
    return value
