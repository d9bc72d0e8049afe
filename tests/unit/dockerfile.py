"""A small Dockerfile reader for tests: the instruction sequence, as the engine would see it.

It follows the engine's rules where they matter for injection: one instruction per line,
``\\`` at the end of a line continues it (comment and blank lines inside a continuation are
skipped), heredocs (``<<EOF`` ... ``EOF``) belong to their instruction. It is deliberately
strict: any Unicode line break (``str.splitlines``) counts as one, so a value that a looser
reader would let through still changes the sequence here. Heredocs are read as BuildKit
reads them: only in RUN, COPY and ADD, only as a whole unquoted word.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

# As BuildKit reads them: a word of RUN, COPY or ADD (quotes kept) that is <<[-]NAME.
_HEREDOC = re.compile(r"[0-9]*<<-?([\"']?)([A-Za-z_][A-Za-z0-9_]*)\1")
_HEREDOC_KEYWORDS = ("RUN", "COPY", "ADD")
_WORD_COUNTED = ("ENV", "LABEL", "ARG", "FROM", "COPY")


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str
    heredocs: tuple[str, ...] = ()

    def signature(self) -> tuple[str, int]:
        """Keyword and how many parts it has: words (ENV, LABEL...) or shell tokens (RUN)."""
        if self.keyword in _WORD_COUNTED:
            return self.keyword, len(docker_words(self.arguments))
        if self.keyword == "RUN":
            return self.keyword, len(shell_tokens(self.arguments))
        return self.keyword, 1


def instructions(text: str) -> list[Instruction]:
    lines = text.splitlines()
    result: list[Instruction] = []
    index = 0
    while index < len(lines):
        line = lines[index].strip()
        index += 1
        if not line or line.startswith("#"):
            continue
        parts = [line]
        while parts[-1].endswith("\\") and index < len(lines):
            parts[-1] = parts[-1][:-1]
            following = lines[index].strip()
            index += 1
            if not following or following.startswith("#"):
                parts.append("\\")  # keep continuing
                continue
            parts.append(following)
        joined = " ".join(p for p in parts if p != "\\")
        keyword, _, arguments = joined.partition(" ")
        docs = []
        words = _raw_words(arguments) if keyword.upper() in _HEREDOC_KEYWORDS else []
        for match in filter(None, map(_HEREDOC.fullmatch, words)):
            body = []
            while index < len(lines) and lines[index].strip() != match.group(2):
                body.append(lines[index])
                index += 1
            index += 1
            docs.append("\n".join(body))
        result.append(Instruction(keyword.upper(), arguments.strip(), tuple(docs)))
    return result


def _raw_words(text: str) -> list[str]:
    """Words with their quotes kept (an unbalanced quote: the rest is one word)."""
    lexer = shlex.shlex(text, posix=False)
    lexer.whitespace_split = True
    lexer.commenters = ""
    try:
        return list(lexer)
    except ValueError:
        return text.split()


def docker_words(text: str) -> list[str]:
    """Words as the engine splits ENV/LABEL arguments: quotes group, ``\\`` escapes."""
    words: list[str] = []
    current: list[str] = []
    in_word = False
    i = 0
    while i < len(text):
        char = text[i]
        if char.isspace():
            if in_word:
                words.append("".join(current))
                current, in_word = [], False
            i += 1
            continue
        in_word = True
        if char == "\\" and i + 1 < len(text):
            current.append(text[i + 1])
            i += 2
        elif char == "'":
            end = text.index("'", i + 1)  # an unclosed quote raises: the test fails
            current.append(text[i + 1 : end])
            i = end + 1
        elif char == '"':
            i += 1
            while text[i] != '"':  # an unclosed quote raises IndexError
                if text[i] == "\\" and text[i + 1] in '"\\$':
                    i += 1
                current.append(text[i])
                i += 1
            i += 1
        else:
            current.append(char)
            i += 1
    if in_word:
        words.append("".join(current))
    return words


def shell_tokens(text: str) -> list[str]:
    """A RUN line's shell tokens, operators (``;``, ``&&``, ``|``, ``$(``...) as their own."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    return list(lexer)
