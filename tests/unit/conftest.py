"""Unit tests never bootstrap for real (tests/integration/test_base.py does): a base the fake
engine lacks is "bootstrapped" into it, and the references are recorded."""

from __future__ import annotations

import pytest

from rpibuild.build import base as base_module
from rpibuild.config.model import Profile
from tests.unit.fake_engine import FakeEngine


@pytest.fixture(autouse=True)
def bootstraps(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    made: list[str] = []

    def fake_bootstrap(prof: Profile, engine: object, reference: str, **_: object) -> str:
        if not isinstance(engine, FakeEngine):
            raise AssertionError("a unit test reached a real bootstrap")
        made.append(reference)
        return engine.add_image(reference, prof.platform).id

    monkeypatch.setattr(base_module, "bootstrap_base", fake_bootstrap)
    return made
