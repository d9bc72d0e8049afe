"""The JSON Schema of a profile file, for editors (YAML language servers) and tools.

Generated from the pydantic models (``Profile.model_json_schema``), so it cannot drift from
what the loader accepts, then adjusted to what a profile *file* is:

- ``extends`` names a parent, and a file may leave any field to its parents: no field is
  required in a file (the merged profile is checked by the loader, which says what is missing);
- every string is one line without control or bidi characters (the loader's first check);
- a non-string field may hold a ``${VAR}`` reference, which the loader fills in before it
  validates the value.

The schema says less than the loader (a URL's grammar, a CPU that fits the platform, files
that exist are checked at load time); it never refuses what the loader accepts.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from rpibuild.config.model import Profile

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
# One line of printable text: no C0/C1 controls, line or paragraph separators, bidi or
# other format characters that forbidden_character refuses most often.
ONE_LINE = (
    "^[^\\u0000-\\u001f\\u007f-\\u009f\\u2028\\u2029\\u200b-\\u200f\\u202a-\\u202e\\u2060-\\u206f\\ufeff]*$"
)
ENV_REFERENCE = {"type": "string", "pattern": "\\$\\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\\}"}


def profile_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a profile YAML file."""
    schema = copy.deepcopy(Profile.model_json_schema())
    _adjust(schema)
    schema["properties"] = {
        "extends": {
            "type": "string",
            "pattern": ONE_LINE,
            "description": "the parent profile: a name in configs/ or a path relative to this file",
        },
        **schema["properties"],
    }
    return {
        "$schema": SCHEMA_DIALECT,
        "title": "rpibuild profile",
        **{key: value for key, value in schema.items() if key != "title"},
    }


def schema_text() -> str:
    """The schema as the file in docs/ holds it (and `rpibuild config schema` prints it)."""
    return json.dumps(profile_schema(), indent=2, sort_keys=False) + "\n"


def _adjust(node: Any) -> None:
    """Walk the schema: drop ``required``, pin strings to one line, let ``${VAR}`` stand in
    for a number or a boolean."""
    if isinstance(node, list):
        for item in node:
            _adjust(item)
        return
    if not isinstance(node, dict):
        return
    node.pop("required", None)
    kind = node.get("type")
    if kind == "string" and "pattern" not in node and "enum" not in node and "const" not in node:
        node["pattern"] = ONE_LINE
    for value in node.values():
        _adjust(value)
    if kind in ("boolean", "integer", "number"):
        typed = {key: node.pop(key) for key in list(node) if key not in ("default", "description", "title")}
        node["anyOf"] = [typed, dict(ENV_REFERENCE)]
