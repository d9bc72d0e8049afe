"""Content keys: a key is the hash of everything that goes into the thing it names.

A stored artifact (the torch wheel compiled for hours) is reused whenever its key matches, so
a key that misses an input silently reuses a stale artifact. Keys are therefore not built
from hand-kept lists of files: they hash the *rendered* Dockerfile stages that produce the
artifact (every ancestor through ``FROM`` and ``COPY --from``, comments left out) and every
context file those stages ``COPY``, found by reading the stages themselves. A ``COPY`` whose
source the context does not hold is an error here, not a silent gap in the key.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

# How a build context folder is copied (rpibuild.planning.render's copytree ignore): the key hashes
# exactly what reaches the context, so build leftovers in a source folder change nothing.
CONTEXT_IGNORE = (
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    "*.pyc",
    "*.so",
    ".pytest_cache",
    ".hypothesis",
)

_FROM = re.compile(r"FROM\s+(?:--platform=\S+\s+)?(?P<parent>\S+)(?:\s+AS\s+(?P<name>\S+))?", re.IGNORECASE)
_FROM_REF = re.compile(r"--from=(\S+)")
_MOUNT_FROM = re.compile(r"--mount=[^\s]*\bfrom=([^,\s]+)")


def instructions(dockerfile: str) -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments and blanks dropped
    (a reworded comment changes nothing that is built)."""
    out: list[str] = []
    pending = ""
    for line in dockerfile.splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        out.append(pending + line.strip())
        pending = ""
    if pending:
        out.append(pending.strip())
    return out


def stages(dockerfile: str) -> dict[str, list[str]]:
    """Each named stage's instructions, its ``FROM`` line first, in file order."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for instruction in instructions(dockerfile):
        match = _FROM.fullmatch(instruction)
        if match:
            current = found.setdefault(match["name"] or f"#{len(found)}", [])
        if current is not None:
            current.append(instruction)
    return found


def stage_chain(dockerfile: str, stage: str) -> dict[str, list[str]]:
    """``stage`` and every stage it is built from (``FROM``, ``COPY --from``, mounts ``from=``)."""
    every = stages(dockerfile)
    if stage not in every:
        raise KeyError(f"the Dockerfile has no stage {stage!r} (it has {', '.join(every)})")
    chain: dict[str, list[str]] = {}
    todo = [stage]
    while todo:
        name = todo.pop()
        if name in chain or name not in every:
            continue  # an image outside the Dockerfile: its reference is in the text
        chain[name] = every[name]
        for instruction in every[name]:
            match = _FROM.fullmatch(instruction)
            if match:
                todo.append(match["parent"])
            todo += _FROM_REF.findall(instruction) + _MOUNT_FROM.findall(instruction)
    return {name: chain[name] for name in every if name in chain}


def copied_sources(instructions_: Iterable[str]) -> list[str]:
    """The context paths that ``COPY``/``ADD`` instructions (not ``--from``) read."""
    out: list[str] = []
    for instruction in instructions_:
        words = instruction.split()
        if words[0].upper() not in ("COPY", "ADD") or any(w.startswith("--from=") for w in words):
            continue
        operands = [w for w in words[1:] if not w.startswith("--")]
        out += operands[:-1]  # the last operand is the destination
    return out


def context_inputs(
    sources: Iterable[str], files: Mapping[str, Path], dirs: Mapping[str, Path]
) -> dict[str, Path]:
    """Host files behind each copied context path (``files``: context path -> host file,
    ``dirs``: context folder -> host folder, as ``rpibuild.planning.render.Rendered`` lists them)."""
    found: dict[str, Path] = {}
    for source in sources:
        source = source.strip("/")
        hits = {
            name: path
            for name, path in files.items()
            if fnmatch.fnmatch(name, source) or name.startswith(source + "/")
        }
        for name, folder in dirs.items():
            if name == source or name.startswith(source + "/") or fnmatch.fnmatch(name, source):
                hits.update(_tree(name, folder))
            elif source.startswith(name + "/"):
                below = source.removeprefix(name + "/")
                hits.update({n: p for n, p in _tree(name, folder).items() if _under(n, f"{name}/{below}")})
        if not hits:
            raise KeyError(f"COPY {source}: the build context has no such file or folder")
        found.update(hits)
    return found


def _under(name: str, pattern: str) -> bool:
    return name == pattern or name.startswith(pattern + "/") or fnmatch.fnmatch(name, pattern)


def _tree(name: str, folder: Path) -> dict[str, Path]:
    """Every file that copying ``folder`` to ``name`` puts in the context."""
    out: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not _ignored(d))
        for filename in sorted(filenames):
            if not _ignored(filename):
                path = Path(dirpath, filename)
                out[f"{name}/{path.relative_to(folder).as_posix()}"] = path
    return out


def _ignored(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in CONTEXT_IGNORE)


def content_key(
    values: Mapping[str, object], texts: Mapping[str, list[str]], inputs: Mapping[str, Path]
) -> str:
    """The hash of profile values, stage instructions and the bytes (and executable bit) of
    every input file: the one way rpibuild names a stored artifact."""
    payload = {
        "values": values,
        "stages": texts,
        "files": {
            name: ("x" if os.access(path, os.X_OK) else "f") + hashlib.sha256(path.read_bytes()).hexdigest()
            for name, path in sorted(inputs.items())
        },
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
