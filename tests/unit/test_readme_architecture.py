"""The README's architecture section names every folder and module of the package, and no
module that is gone: a newcomer finds any behaviour from it, so it has to stay true."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _architecture_block() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Architecture") :]
    return section[section.index("```") + 3 : section.index("```", section.index("```") + 3)]


def test_every_module_and_folder_of_the_package_is_in_the_architecture_section() -> None:
    block = _architecture_block()
    package = REPO / "rpibuild"
    missing = []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package)
        if relative.parts[0] == "_resources" or path.name in ("__init__.py", "__main__.py"):
            continue
        if path.parent != package and f"{path.parent.name}/" not in block:
            missing.append(f"{path.parent.name}/")
        # A module is named by its file name, except inside cli/ (one module per command) and
        # torch_routes/ (one per route, listed by route name).
        if path.parent.name in ("cli", "torch_routes"):
            continue
        if not re.search(rf"(?<![\w/]){re.escape(path.name)}", block):
            missing.append(str(relative))
    assert sorted(set(missing)) == []


def test_no_module_the_section_names_is_gone() -> None:
    block = _architecture_block()
    named = set(re.findall(r"(?<![\w/.-])([a-z_]+\.py)\b", block))
    present = {p.name for p in (REPO / "rpibuild").rglob("*.py")} | {p.name for p in REPO.glob("*/*.py")}
    present |= {p.name for p in (REPO / "images").rglob("*.py")} | {
        p.name for p in (REPO / "scripts").rglob("*")
    }
    present |= {p.name for p in (REPO / "tests").rglob("*.py")}
    assert sorted(named - present) == []
