"""Make text safe to show: credentials in URLs masked, control characters made visible.

Profile values, error messages and build logs are printed to terminals and written to log
files; a proxy or index URL may carry ``user:token@``, and a hostile value may carry a
newline or a terminal escape. Everything that prints user-provided text goes through here.
"""

from __future__ import annotations

import re
from typing import Any

from rpibuild.config.grammar import forbidden_character

MASK = "***"
# scheme://userinfo@ : the userinfo (user, password or token) is what gets masked.
_CREDENTIALS = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)[^/\s?#@'\"]*(?:@[^/\s?#@'\"]*)*@")


def mask_urls(text: str) -> str:
    """``https://user:token@host/x`` -> ``https://***@host/x``, anywhere in the text."""
    return _CREDENTIALS.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)


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
