"""Make text safe to show: credentials in URLs masked, control characters made visible.

Profile values, error messages and build logs are printed to terminals and written to log
files; a proxy or index URL may carry ``user:token@``, and a hostile value may carry a
newline or a terminal escape. Everything that prints user-provided text goes through here.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote, urlsplit

from rpibuild.text import forbidden_character

MASK = "***"
# scheme://userinfo@ : the userinfo (user, password or token) is what gets masked.
_CREDENTIALS = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)[^/\s?#@'\"]*(?:@[^/\s?#@'\"]*)*@")


# Passwords seen in URLs this process handles: masked even where a library quotes them without
# their URL (``InvalidURL: nonnumeric port: 'TOKEN@host'``). Short ones are not remembered:
# masking every "ab" in a log would hide more than it protects.
_REMEMBERED: set[str] = set()
_SHORTEST_REMEMBERED = 4
# A user name alone is remembered only when it looks like a token (GitHub's are 40 characters).
_SHORTEST_TOKEN = 16


def remember_credentials(url: str) -> None:
    """Note the password (and any raw userinfo) of ``url`` so every later message masks it."""
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    userinfo = url.split("://", 1)[-1].split("/", 1)[0].rpartition("@")[0] if "://" in url else ""
    user, colon, raw_password = userinfo.partition(":")
    found = [password, unquote(password) if password else None, raw_password]
    if not colon and len(user) >= _SHORTEST_TOKEN:  # https://TOKEN@host: the token is the user
        found += [user, unquote(user)]
    for secret in found:
        if secret and len(secret) >= _SHORTEST_REMEMBERED:
            _REMEMBERED.add(secret)


def mask_urls(text: str) -> str:
    """``https://user:token@host/x`` -> ``https://***@host/x``, anywhere in the text; any
    remembered password (``remember_credentials``) is masked wherever it appears."""
    text = _CREDENTIALS.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)
    for secret in sorted(_REMEMBERED, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def printable(text: str) -> str:
    """One line, no credentials: control and line-break characters shown as ``\\uXXXX``."""
    text = mask_urls(text)
    if forbidden_character(text) is None:
        return text
    return "".join(f"\\u{ord(c):04x}" if forbidden_character(c) else c for c in text)


def mask_data(value: Any) -> Any:
    """A copy of JSON-like data with every string's URL credentials masked."""
    if isinstance(value, str):
        return mask_urls(value)
    if isinstance(value, dict):
        return {key: mask_data(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [mask_data(item) for item in value]
    return value
