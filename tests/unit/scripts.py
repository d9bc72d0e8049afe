"""Load a stand-alone script (images/, benchmarks/) as a module, for its unit tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def load_script(relative: str, name: str) -> ModuleType:
    """Import ROOT/relative under ``name`` (registered in sys.modules: dataclasses need it)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / relative)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def image_side(folder: Path) -> Path:
    """The scripts as an image has them in /opt/rpibuild: images/verify's beside rpibuild's ELF
    reader (copied in by the render as rpibuild/elf.py), so they import it as they do there."""
    import shutil

    from rpibuild.export import elf

    folder.mkdir(parents=True, exist_ok=True)
    for script in (ROOT / "images" / "verify").glob("*.py"):
        shutil.copy2(script, folder / script.name)
    shutil.copy2(elf.__file__, folder / "elf.py")
    return folder
