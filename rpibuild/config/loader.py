"""Load a profile: YAML with line numbers, ``extends:``, ``--set`` overrides, ``${ENV}``.

Every value keeps the file and line it came from, so a validation error can point at the
exact place to fix, even when the value was inherited from a parent profile.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from rpibuild import resources
from rpibuild.config.model import Profile
from rpibuild.errors import ConfigError

KeyPath = tuple[str | int, ...]
DEFAULT_PROFILE = "pi3b-arm64"
QPULIB_SRC_ENV = "RPIBUILD_QPULIB_SRC"
PROFILE_SUFFIXES = (".yaml", ".yml")
# Fields holding host paths: a relative one is resolved against the file that sets it.
PATH_FIELDS: tuple[KeyPath, ...] = (
    ("torch", "wheel"),
    ("qpulib", "path"),
    ("network", "ca_bundle"),
    ("base", "bootstrap", "keyring"),
    ("extension", "path"),
    ("registry", "ca_cert"),
)
_ENV_REF = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True)
class Origin:
    """Where a value was written: a file and line, or a command-line override."""

    file: str
    line: int | None = None

    @property
    def directory(self) -> Path:
        path = Path(self.file)
        return path.parent if path.is_file() else Path.cwd()


@dataclass(frozen=True)
class LoadedProfile:
    """A validated profile plus where each of its values came from."""

    profile: Profile
    path: Path
    chain: tuple[Path, ...]  # the file and its ancestors, child first
    origins: Mapping[KeyPath, Origin]
    data: Mapping[str, Any]  # the merged, interpolated document before validation


# ---------------------------------------------------------------- finding profiles


def available_profiles(directory: Path | None = None) -> list[str]:
    """Profile names in ``configs/``; files starting with ``_`` are parents only."""
    directory = directory or resources.configs_dir()
    names = {p.stem for p in directory.glob("*") if p.suffix in PROFILE_SUFFIXES}
    return sorted(n for n in names if not n.startswith("_"))


def resolve_profile(name_or_path: str | os.PathLike[str], relative_to: Path | None = None) -> Path:
    """A profile name from ``configs/`` or a path to a YAML file."""
    text = os.fspath(name_or_path)
    candidate = Path(text)
    if not candidate.is_absolute() and relative_to is not None:
        candidate = relative_to / candidate
    if candidate.suffix in PROFILE_SUFFIXES or os.sep in text:
        if candidate.is_file():
            return candidate.resolve()
        raise ConfigError(f"profile file not found: {text}", file=text)
    for suffix in PROFILE_SUFFIXES:
        path = resources.configs_dir() / f"{text}{suffix}"
        if path.is_file():
            return path.resolve()
    known = available_profiles()
    close = difflib.get_close_matches(text, known, n=1)
    hint = f"did you mean '{close[0]}'?" if close else None
    raise ConfigError(
        f"no profile named {text!r} (known: {', '.join(known) or 'none'})",
        hint=hint or "give a profile name from configs/ or a path to a YAML file",
    )


# ---------------------------------------------------------------- YAML with lines


def _read_yaml(path: Path) -> tuple[dict[str, Any], dict[KeyPath, Origin]]:
    """Parse one file; return its mapping and the origin of every key and item."""
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except OSError as exc:
        raise ConfigError(f"cannot read profile: {exc.strerror}", file=file) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(f"invalid YAML: {problem}", file=file, line=line) from None
    if node is None:
        return {}, {(): Origin(file, 1)}
    if not isinstance(node, yaml.MappingNode):
        raise ConfigError("a profile must be a mapping of fields", file=file, line=node.start_mark.line + 1)
    origins: dict[KeyPath, Origin] = {(): Origin(file, node.start_mark.line + 1)}
    _walk(node, (), file, origins)
    data = yaml.SafeLoader(text).get_single_data()
    return data, origins


def _walk(node: yaml.Node, path: KeyPath, file: str, origins: dict[KeyPath, Origin]) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            line = key_node.start_mark.line + 1
            if key in seen:
                field = ".".join(str(p) for p in (*path, key))
                raise ConfigError("duplicate key", file=file, line=line, field=field)
            seen.add(key)
            origins[(*path, key)] = Origin(file, line)
            _walk(value_node, (*path, key), file, origins)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            origins[(*path, index)] = Origin(file, item.start_mark.line + 1)
            _walk(item, (*path, index), file, origins)


# ---------------------------------------------------------------- merging


def _merge(
    base: dict[str, Any],
    base_origins: dict[KeyPath, Origin],
    over: dict[str, Any],
    over_origins: dict[KeyPath, Origin],
) -> tuple[dict[str, Any], dict[KeyPath, Origin]]:
    """Deep-merge ``over`` onto ``base``: mappings merge, everything else replaces."""

    def merge(a: dict[str, Any], b: dict[str, Any], path: KeyPath) -> dict[str, Any]:
        result = dict(a)
        for key, value in b.items():
            here = (*path, key)
            if isinstance(value, dict) and isinstance(result.get(key), dict):
                result[key] = merge(result[key], value, here)
            else:
                result[key] = value
                for stale in [p for p in origins if p[: len(here)] == here and p != here]:
                    del origins[stale]
        return result

    origins = dict(base_origins)
    merged = merge(base, over, ())
    origins.update({k: v for k, v in over_origins.items() if k != ()})
    origins.setdefault((), over_origins.get((), Origin("<profile>")))
    return merged, origins


def _load_chain(
    path: Path, seen: tuple[Path, ...] = ()
) -> tuple[dict[str, Any], dict[KeyPath, Origin], tuple[Path, ...]]:
    if path in seen:
        cycle = " -> ".join(str(p) for p in (*seen, path))
        raise ConfigError(f"profiles extend each other in a cycle: {cycle}", file=str(path))
    data, origins = _read_yaml(path)
    parent_ref = data.pop("extends", None)
    origin = origins.pop(("extends",), None)
    if parent_ref is None:
        return data, origins, (path,)
    if not isinstance(parent_ref, str):
        raise ConfigError(
            "must be a profile name or a path",
            file=str(path),
            line=origin.line if origin else None,
            field="extends",
        )
    try:
        parent_path = resolve_profile(parent_ref, relative_to=path.parent)
    except ConfigError as exc:
        raise ConfigError(
            exc.message, file=str(path), line=origin.line if origin else None, field="extends"
        ) from None
    parent, parent_origins, chain = _load_chain(parent_path, (*seen, path))
    merged, merged_origins = _merge(parent, parent_origins, data, origins)
    merged_origins[()] = origins[()]
    return merged, merged_origins, (path, *chain)


# ---------------------------------------------------------------- overrides


def parse_override(text: str) -> tuple[KeyPath, Any]:
    """``a.b=c`` -> (("a", "b"), c); the value is read as YAML (``true``, ``3``, ``[x]``)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip() or any(not part for part in key.strip().split(".")):
        raise ConfigError(
            f"--set expects FIELD.PATH=VALUE, got {text!r}",
            file="--set",
            hint="e.g. --set torch.version=2.5.1",
        )
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    # A scalar YAML would change ("000123" -> 123, "1.10" -> 1.1) stays the string typed.
    if isinstance(value, bool | int | float) and str(value).lower() != raw.strip().lower():
        value = raw.strip()
    return tuple(key.strip().split(".")), value


def _apply_override(
    data: dict[str, Any], origins: dict[KeyPath, Origin], path: KeyPath, value: Any, text: str
) -> None:
    node = data
    for depth, key in enumerate(path[:-1]):
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            field = ".".join(map(str, path[: depth + 1]))
            raise ConfigError(
                f"cannot set {'.'.join(map(str, path))}: {field} is not a mapping", file="--set"
            )
        node = child
    node[path[-1]] = value
    for stale in [p for p in origins if p[: len(path)] == path]:
        del origins[stale]
    origins[path] = Origin(f"--set {text}")


# ---------------------------------------------------------------- ${ENV}


def _interpolate(
    value: Any,
    path: KeyPath,
    origins: Mapping[KeyPath, Origin],
    env: Mapping[str, str],
    from_env: set[KeyPath],
) -> Any:
    """Replace ``${NAME}`` / ``${NAME:-default}``; ``$$`` is a literal ``$``.

    Paths of values that came from the environment go into ``from_env``: a relative path
    given that way is relative to the working directory, not to the profile file.
    """
    if isinstance(value, dict):
        return {k: _interpolate(v, (*path, k), origins, env, from_env) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, (*path, i), origins, env, from_env) for i, v in enumerate(value)]
    if not isinstance(value, str) or "$" not in value:
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        if name in env:
            from_env.add(path)
            return env[name]
        if default is not None:
            return default
        origin = _origin_for(path, origins)
        raise ConfigError(
            f"environment variable {name} is not set",
            file=origin.file,
            line=origin.line,
            field=_dotted(path),
            hint=f"export {name}=... or write ${{{name}:-default}}",
        )

    return _ENV_REF.sub(substitute, value)


# ---------------------------------------------------------------- validation errors


def _dotted(path: Iterable[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _origin_for(path: KeyPath, origins: Mapping[KeyPath, Origin]) -> Origin:
    for cut in range(len(path), -1, -1):
        if path[:cut] in origins:
            return origins[path[:cut]]
    return Origin("<profile>")


def _fields_at(path: KeyPath) -> list[str]:
    """The field names a model accepts at ``path`` (for 'did you mean')."""
    model: type[BaseModel] | None = Profile
    for part in path:
        if model is None or isinstance(part, int):
            return []
        info = model.model_fields.get(str(part))
        annotation = info.annotation if info else None
        candidates = getattr(annotation, "__args__", (annotation,))
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
    return list(model.model_fields) if model else []


def _config_error(
    exc: ValidationError, origins: Mapping[KeyPath, Origin], data: Mapping[str, Any]
) -> ConfigError:
    problems = []
    for error in exc.errors():
        loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and "[" in p))
        origin = _origin_for(loc, origins)
        message = error["msg"].removeprefix("Value error, ")
        hint = None
        if error["type"] == "extra_forbidden":
            message = "unknown field"
            close = difflib.get_close_matches(str(loc[-1]), _fields_at(loc[:-1]), n=1)
            hint = f"did you mean '{close[0]}'?" if close else None
        elif error["type"] == "missing":
            message = "required field is missing"
        elif "input" in error and not isinstance(error["input"], dict | list):
            message += f" (got {error['input']!r})"
        problems.append((origin, loc, message, hint))
    origin, loc, message, hint = problems[0]
    if len(problems) > 1:
        rest = "; ".join(f"{_dotted(loc_) or '<top>'} (line {o.line}): {m}" for o, loc_, m, _ in problems[1:])
        hint = (hint + "; " if hint else "") + f"also: {rest}"
    return ConfigError(message, file=origin.file, line=origin.line, field=_dotted(loc) or None, hint=hint)


# ---------------------------------------------------------------- entry point


def _resolve_paths(data: dict[str, Any], origins: Mapping[KeyPath, Origin], from_env: set[KeyPath]) -> None:
    for field in PATH_FIELDS:
        node: Any = data
        for key in field[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            continue
        value = node.get(field[-1])
        if not isinstance(value, str) or not value or "://" in value or value == "host":
            continue
        path = Path(value).expanduser()
        if not path.is_absolute():
            base = Path.cwd() if field in from_env else _origin_for(field, origins).directory
            path = base / path
        node[field[-1]] = str(path)


def load_profile(
    name_or_path: str | os.PathLike[str] | None = None,
    overrides: Iterable[str] = (),
    env: Mapping[str, str] | None = None,
) -> LoadedProfile:
    """Load, merge, override, interpolate and validate one profile."""
    env = os.environ if env is None else env
    path = resolve_profile(name_or_path or DEFAULT_PROFILE)
    data, origins, chain = _load_chain(path)
    data.setdefault("name", path.stem)
    for text in overrides:
        key_path, value = parse_override(text)
        _apply_override(data, origins, key_path, value, text)
    from_env: set[KeyPath] = set()
    data = _interpolate(data, (), origins, env, from_env)
    qpulib = data.get("qpulib")
    if (
        env.get(QPULIB_SRC_ENV)
        and (qpulib is None or isinstance(qpulib, dict))
        and not (qpulib or {}).get("path")
    ):
        data["qpulib"] = {**(qpulib or {}), "path": env[QPULIB_SRC_ENV]}
        origins = {**origins, ("qpulib", "path"): Origin(f"${QPULIB_SRC_ENV}")}
        from_env.add(("qpulib", "path"))
    _resolve_paths(data, origins, from_env)
    try:
        profile = Profile.model_validate(data)
    except ValidationError as exc:
        raise _config_error(exc, origins, data) from None
    return LoadedProfile(profile, path, chain, origins, data)
