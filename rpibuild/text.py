"""What any text rpibuild takes or shows may hold: one line of printable characters.

A leaf module (standard library only) so that both the profile grammar and the redaction of
everything printed use one definition without importing each other's packages.
"""

from __future__ import annotations

import unicodedata

# Unicode categories no value may hold: controls (newline, NUL, ESC...), format characters
# (bidi overrides, zero-width joiners), surrogates, private use, line and paragraph separators.
FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Zl", "Zp"})


def forbidden_character(text: str) -> str | None:
    """The first character no value may hold, as ``U+000A``; None when the text is clean."""
    for char in text:
        if unicodedata.category(char) in FORBIDDEN_CATEGORIES:
            return f"U+{ord(char):04X}"
    return None
