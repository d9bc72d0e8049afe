"""The published JSON Schema of profile files: equal to `rpibuild config schema`, valid
JSON Schema, accepting every shipped profile and everything the loader accepts, refusing
the hostile profiles it can describe (control characters, unknown fields, wrong types)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from rpibuild.cli import cli
from rpibuild.config.schema import profile_schema
from rpibuild.resources import configs_dir
from tests.unit.test_hostile_input import CORPUS, Case

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "docs" / "profile.schema.json"


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_the_file_is_what_the_command_prints() -> None:
    printed = CliRunner().invoke(cli, ["config", "schema"])
    assert printed.exit_code == 0
    assert printed.output == SCHEMA_FILE.read_text(encoding="utf-8"), (
        "docs/profile.schema.json is stale: rpibuild config schema > docs/profile.schema.json"
    )
    assert json.loads(printed.output) == profile_schema()


@pytest.mark.parametrize("path", sorted(configs_dir().glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_profile_is_valid(path: Path, validator: jsonschema.Draft202012Validator) -> None:
    errors = [e.message for e in validator.iter_errors(yaml.safe_load(path.read_text(encoding="utf-8")))]
    assert errors == []


def _profile_files(case: Case) -> list[tuple[str, Any]]:
    """The YAML mappings a corpus case writes (those plain YAML can read)."""
    found = []
    for name, content in case.files.items():
        if not name.endswith(".yaml") or isinstance(content, bytes):
            continue
        try:
            data = yaml.safe_load(content)
        except Exception:  # PyYAML fails in many ways on the corpus's malformed files
            continue
        if isinstance(data, dict):
            found.append((name, data))
    return found


def test_what_the_loader_accepts_the_schema_accepts(validator: jsonschema.Draft202012Validator) -> None:
    accepted = [(c.id, data) for c in CORPUS if c.exit == 0 for _, data in _profile_files(c)]
    assert len(accepted) >= 5
    for case_id, data in accepted:
        assert [e.message for e in validator.iter_errors(data)] == [], case_id


def test_hostile_profiles_the_schema_can_describe_are_refused(
    validator: jsonschema.Draft202012Validator,
) -> None:
    refused = {c.id for c in CORPUS if c.exit == 2 for _, d in _profile_files(c) if not validator.is_valid(d)}
    control = {c.id for c in CORPUS if c.id.startswith("ctl-") and _profile_files(c)}
    assert control and control <= refused, sorted(control - refused)
    assert len(refused) >= 40
    for data in (
        {"torch": {"verison": "2.9"}},  # an unknown field
        {"torch": {"max_jobs": "many"}},  # a wrong type
        {"torch": {"source": "conda"}},  # not one of the sources
        {"image": {"tags": "latest"}},  # a list expected
        {"extends": "pi3b-arm64", "name": "a\u202eb"},  # a bidi override
    ):
        assert not validator.is_valid(data), data
    assert validator.is_valid({"verify": {"emulator": "${RPIBUILD_EMULATOR:-false}"}})
