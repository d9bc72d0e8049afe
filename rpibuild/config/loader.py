"""Load a profile: YAML with line numbers, ``extends:``, ``--set`` overrides, ``${ENV}``.

Every value keeps the file and line it came from, so a validation error can point at the
exact place to fix, even when the value was inherited from a parent profile. YAML is read
with limits (size, nesting, aliases, ``extends`` depth) and only plain data tags, so no
input can hang the loader, exhaust memory or end in a traceback.
"""

from __future__ import annotations

import difflib
import os
import re
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from rpibuild import redact, resources
from rpibuild.config.model import FieldProblem, Profile
from rpibuild.errors import ConfigError
from rpibuild.text import forbidden_character

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
# Fields whose values are secrets: an error about them never repeats the value.
SECRET_FIELDS: tuple[KeyPath, ...] = (("registry", "password"), ("registry", "password_env"))
# Limits that keep a hostile or careless file from hanging the loader (profiles are ~1 KB).
MAX_BYTES = 32 * 1024
MAX_DEPTH = 32
MAX_NODES = 20_000
MAX_ALIASES = 100
MAX_EXTENDS = 16
_PLAIN_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null", "seq", "map", "merge")
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

    def error(self, field: KeyPath, message: str, hint: str | None = None) -> ConfigError:
        """A ConfigError at the file and line that set ``field`` (or its nearest parent)."""
        origin = _origin_for(field, self.origins)
        return ConfigError(message, file=origin.file, line=origin.line, field=_dotted(field), hint=hint)


# ---------------------------------------------------------------- finding profiles


def available_profiles(directory: Path | None = None, parents: bool = False) -> list[str]:
    """Profile names in ``configs/``; files starting with ``_`` are parents only (``parents``)."""
    directory = directory or resources.configs_dir()
    names = {p.stem for p in directory.glob("*") if p.suffix in PROFILE_SUFFIXES}
    return sorted(n for n in names if parents or not n.startswith("_"))


def resolve_profile(
    name_or_path: str | os.PathLike[str], relative_to: Path | None = None, parents: bool = False
) -> Path:
    """A profile name from ``configs/`` or a path to a YAML file (``parents``: ``_`` files too)."""
    text = os.fspath(name_or_path)
    if not text.strip():
        raise ConfigError(
            "the profile name is empty", field="--profile", hint="give a name from configs/ or a path"
        )
    if forbidden_character(text):
        raise ConfigError(
            f"the profile name {redact.printable(text)} holds a control character", field="--profile"
        )
    candidate = Path(text)
    if not candidate.is_absolute() and relative_to is not None:
        candidate = relative_to / candidate
    if candidate.suffix in PROFILE_SUFFIXES or os.sep in text:
        if candidate.is_file():
            return candidate.resolve()
        siblings = [p.name for p in candidate.parent.glob("*") if p.suffix in PROFILE_SUFFIXES]
        close = difflib.get_close_matches(candidate.name, siblings, n=1)
        raise ConfigError(
            f"profile file not found: {text}",
            file=text,
            hint=f"did you mean '{close[0]}'?" if close else None,
        )
    for suffix in PROFILE_SUFFIXES:
        path = resources.configs_dir() / f"{text}{suffix}"
        if path.is_file():
            if text.startswith("_") and not parents:
                raise ConfigError(
                    f"{text!r} holds settings other profiles extend (parents only): it is not a build target",
                    field="--profile",
                    hint=f"give one of: {', '.join(available_profiles())}, or a file that extends {text}",
                )
            return path.resolve()
    known = available_profiles(parents=parents)
    close = difflib.get_close_matches(text, known, n=1)
    hint = f"did you mean '{close[0]}'?" if close else None
    raise ConfigError(
        f"no profile named {text!r} (known: {', '.join(known) or 'none'})",
        hint=hint or "give a profile name from configs/ or a path to a YAML file",
    )


# ---------------------------------------------------------------- YAML with lines


class _LimitedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with a nesting limit and an alias limit (the composer recurses)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

    def fetch_flow_collection_start(self, token_class: type) -> None:
        """Stop ``[[[[...`` in the scanner: it looks ahead (slowly) before the composer sees depth."""
        if self.flow_level >= MAX_DEPTH:
            mark = self.get_mark()
            raise yaml.scanner.ScannerError(None, None, f"nested deeper than {MAX_DEPTH} levels", mark)
        super().fetch_flow_collection_start(token_class)

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise yaml.composer.ComposerError(None, None, f"more than {MAX_ALIASES} aliases", mark)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels", mark)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def parse_yaml(text: str, file: str) -> tuple[Any, dict[KeyPath, Origin]]:
    """Parse YAML text within the limits; return its data and the origin of every key and item."""
    loader: _LimitedLoader | None = None
    try:
        loader = _LimitedLoader(text)  # the reader already refuses some characters (NUL...)
        node = loader.get_single_node()
        if node is None:
            return None, {(): Origin(file, 1)}
        origins: dict[KeyPath, Origin] = {(): Origin(file, node.start_mark.line + 1)}
        _walk(node, (), file, origins, [0])
        try:
            data = loader.construct_document(node)
        except (ValueError, LookupError, TypeError, ArithmeticError, AttributeError):
            # PyYAML's constructors raise plain errors for a value its tag cannot hold (!!int x).
            line = _unconstructible_line(node)
            raise ConfigError("invalid YAML: a value does not fit its tag", file=file, line=line) from None
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        raise ConfigError(
            f"invalid YAML: character U+{exc.character:04X} is not allowed", file=file, line=line
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(f"invalid YAML: {redact.printable(problem)}", file=file, line=line) from None
    finally:
        if loader is not None:
            loader.dispose()
    return data, origins


def _unconstructible_line(root: yaml.Node) -> int | None:
    """The line of the first scalar that a fresh constructor cannot build."""
    stack, seen = [root], set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            try:
                yaml.SafeLoader("").construct_object(node)
            except (ValueError, LookupError, TypeError, ArithmeticError, AttributeError, yaml.YAMLError):
                return node.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(reversed(node.value))
        elif isinstance(node, yaml.MappingNode):
            stack.extend(n for pair in reversed(node.value) for n in reversed(pair))
    return None


def _walk(
    node: yaml.Node,
    path: KeyPath,
    file: str,
    origins: dict[KeyPath, Origin],
    count: list[int],
) -> None:
    """Record origins; reject what is not plain data, and aliases expanding beyond the limits."""
    line = node.start_mark.line + 1
    count[0] += 1
    if count[0] > MAX_NODES or len(path) > MAX_DEPTH:
        what = f"more than {MAX_NODES} values" if count[0] > MAX_NODES else f"deeper than {MAX_DEPTH} levels"
        raise ConfigError(
            f"the profile expands to {what} (aliases?)", file=file, line=line, field=_dotted(path) or None
        )
    if node.tag not in _PLAIN_TAGS:
        raise ConfigError(
            f"tag {redact.printable(node.tag)} is not allowed: a profile holds plain YAML data",
            file=file,
            line=line,
            field=_dotted(path) or None,
        )
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if key_node.tag == "tag:yaml.org,2002:merge":
                _walk(value_node, path, file, origins, count)
                continue
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != "tag:yaml.org,2002:str":
                raise ConfigError(
                    "a key must be a plain string (quote it)",
                    file=file,
                    line=key_line,
                    field=_dotted(path) or None,
                )
            key = key_node.value
            if key in seen:
                raise ConfigError("duplicate key", file=file, line=key_line, field=_dotted((*path, key)))
            seen.add(key)
            child = (*path, key)
            origins[child] = Origin(file, key_line)
            _walk(value_node, child, file, origins, count)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = (*path, index)
            origins[child] = Origin(file, item.start_mark.line + 1)
            _walk(item, child, file, origins, count)


def _read_yaml(path: Path) -> tuple[dict[str, Any], dict[KeyPath, Origin]]:
    """Parse one file (UTF-8, at most MAX_BYTES); return its mapping and every value's origin."""
    file = str(path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read profile: {exc.strerror}", file=file) from None
    if len(raw) > MAX_BYTES:
        raise ConfigError(
            f"the file is larger than {MAX_BYTES // 1024} KiB: not a profile", file=file, line=1
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(f"not UTF-8 text (byte 0x{raw[exc.start]:02x})", file=file, line=line) from None
    data, origins = parse_yaml(text, file)
    if data is None:
        return {}, {(): Origin(file, 1)}
    if not isinstance(data, dict):
        raise ConfigError("a profile must be a mapping of fields", file=file, line=origins[()].line)
    return data, origins


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
    data, origins = _read_yaml(path)
    parent_ref = data.pop("extends", None)
    origin = origins.pop(("extends",), None)
    if parent_ref is None:
        return data, origins, (path,)
    line = origin.line if origin else None
    if not isinstance(parent_ref, str):
        raise ConfigError("must be a profile name or a path", file=str(path), line=line, field="extends")
    try:
        parent_path = resolve_profile(parent_ref, relative_to=path.parent, parents=True)
    except ConfigError as exc:
        raise ConfigError(exc.reason, file=str(path), line=line, field="extends", hint=exc.hint) from None
    if parent_path in (*seen, path):
        cycle = " -> ".join(str(p) for p in (*seen, path, parent_path))
        raise ConfigError(
            f"profiles extend each other in a cycle: {cycle}", file=str(path), line=line, field="extends"
        )
    if len(seen) + 1 >= MAX_EXTENDS:
        raise ConfigError(
            f"more than {MAX_EXTENDS} profiles extend one another", file=str(path), line=line, field="extends"
        )
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
            f"--set expects FIELD.PATH=VALUE, got {redact.printable(text)}",
            file="--set",
            hint="e.g. --set torch.version=2.5.1",
        )
    if key.count(".") >= MAX_DEPTH:
        raise ConfigError(f"the field path is deeper than {MAX_DEPTH} levels", file="--set")
    try:
        value = parse_yaml(raw, "--set")[0] if raw.strip() else ""
    except ConfigError as exc:
        if "invalid YAML" not in exc.message:
            raise ConfigError(exc.reason, file=f"--set {redact.printable(text)}") from None
        value = raw
    path = tuple(key.strip().split("."))
    # A scalar YAML would change ("000123" -> 123, "1.10" -> 1.1) stays the string typed, and
    # so does any scalar for a text field: --set torch.version=2.9 means "2.9", not a float.
    if isinstance(value, bool | int | float) and (
        str(value).lower() != raw.strip().lower() or _takes_text(path)
    ):
        value = raw.strip()
    return path, value


def _takes_text(path: KeyPath) -> bool:
    """Whether the profile field at ``path`` holds text (str, str | None, a Literal of
    strings), read from the pydantic models' declared fields. Unknown paths: False (the
    validation that follows names them)."""
    model: type[BaseModel] = Profile
    for depth, key in enumerate(path):
        field = model.model_fields.get(str(key))
        if field is None:
            return False
        kinds = _plain_types(field.annotation)
        if depth == len(path) - 1:
            return bool(kinds) and all(kind is str for kind in kinds)
        nested = [k for k in kinds if isinstance(k, type) and issubclass(k, BaseModel)]
        if len(nested) != 1:
            return False
        model = nested[0]
    return False


def _plain_types(annotation: Any) -> list[Any]:
    """The types a field's annotation allows, None left out: ``str | None`` -> [str];
    ``Literal["a", "b"]`` -> [str, str]; ``Annotated[str, ...]`` -> [str]."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _plain_types(typing.get_args(annotation)[0])
    if origin is typing.Literal:
        return [type(arg) for arg in typing.get_args(annotation)]
    if origin in (typing.Union, types.UnionType):
        return [t for arg in typing.get_args(annotation) for t in _plain_types(arg)]
    if annotation is type(None):
        return []
    return [annotation]


def _apply_override(
    data: dict[str, Any], origins: dict[KeyPath, Origin], path: KeyPath, value: Any, text: str
) -> None:
    node: dict[Any, Any] = data
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
    shown = f"{_dotted(path)}=***" if _is_secret(path) else redact.printable(text)
    origins[path] = Origin(f"--set {shown}")


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
        text = redact.printable(str(part))
        out += f"[{part}]" if isinstance(part, int) else (f".{text}" if out else text)
    return out


def _origin_for(path: KeyPath, origins: Mapping[KeyPath, Origin]) -> Origin:
    for cut in range(len(path), -1, -1):
        if path[:cut] in origins:
            return origins[path[:cut]]
    return Origin("<profile>")


def _data_at(data: Any, path: KeyPath) -> Any:
    for part in path:
        found = isinstance(data, dict) and part in data
        found = found or (isinstance(data, list) and isinstance(part, int) and part < len(data))
        if not found:
            return None
        data = data[part]
    return data


def _user_loc(raw: Iterable[str | int], data: Any) -> KeyPath:
    """pydantic's error location as the user's field path: its own markers ('[key]',
    'function-after[...]') dropped, but a user's key that holds '[' kept."""
    out: list[str | int] = []
    node = data
    for part in raw:
        here = _data_at(node, (part,)) if node is not None else None
        if here is None and isinstance(part, str) and "[" in part:
            continue
        out.append(part)
        node = here
    return tuple(out)


def _is_secret(path: KeyPath) -> bool:
    return any(path[: len(secret)] == secret for secret in SECRET_FIELDS)


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
        loc = _user_loc(error["loc"], data)
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, FieldProblem):
            loc = cause.loc
        origin = _origin_for(loc, origins)
        message = redact.printable(error["msg"].removeprefix("Value error, "))
        hint = None
        if error["type"] == "extra_forbidden" and loc:
            message = "unknown field"
            close = difflib.get_close_matches(str(loc[-1]), _fields_at(loc[:-1]), n=1)
            hint = f"did you mean '{close[0]}'?" if close else None
        elif error["type"] == "missing":
            message = "required field is missing"
            here = _data_at(data, loc[:-1])
            strays = [k for k in here if k not in _fields_at(loc[:-1])] if isinstance(here, dict) else []
            close = difflib.get_close_matches(str(loc[-1]), [str(k) for k in strays], n=1)
            if close:
                hint = f"did you mean '{loc[-1]}'? (found '{close[0]}')"
        elif _is_secret(loc):
            message += " (value not shown: it is a secret)"
        elif "input" in error and not isinstance(error["input"], dict | list):
            message += f" (got {redact.printable(repr(error['input']))})"
        problems.append((origin, loc, message, hint))
    origin, loc, message, hint = problems[0]
    if len(problems) > 1:
        # Each further problem keeps its own place and its own did-you-mean.
        rest = "; ".join(
            f"{_dotted(loc_) or '<top>'}{f' (line {o.line})' if o.line is not None else ''}: {m}"
            + (f" ({h})" if h else "")
            for o, loc_, m, h in problems[1:]
        )
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


def _check_characters(value: Any, path: KeyPath, origins: Mapping[KeyPath, Origin]) -> None:
    """Every key and string of the merged profile is one line of printable text.

    Checked before the schema so the error names the exact key, list item or map entry,
    and never repeats the value (it may come from a secret in the environment).
    """
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and forbidden_character(key):
                _raise_character((*path, key), origins, forbidden_character(key), "the key")
            _check_characters(item, (*path, key), origins)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_characters(item, (*path, index), origins)
    elif isinstance(value, str) and forbidden_character(value):
        _raise_character(path, origins, forbidden_character(value), "the value")


def _raise_character(path: KeyPath, origins: Mapping[KeyPath, Origin], char: str | None, what: str) -> None:
    origin = _origin_for(path, origins)
    raise ConfigError(
        f"{what} contains a control or line-break character ({char}): a value is one line of text",
        file=origin.file,
        line=origin.line,
        field=_dotted(path) or None,
    )


def load_profile(
    name_or_path: str | os.PathLike[str] | None = None,
    overrides: Iterable[str] = (),
    env: Mapping[str, str] | None = None,
) -> LoadedProfile:
    """Load, merge, override, interpolate and validate one profile."""
    env = os.environ if env is None else env
    path = resolve_profile(DEFAULT_PROFILE if name_or_path is None else name_or_path)
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
    _check_characters(data, (), origins)
    _resolve_paths(data, origins, from_env)
    try:
        profile = Profile.model_validate(data)
    except ValidationError as exc:
        raise _config_error(exc, origins, data) from None
    return LoadedProfile(profile, path, chain, origins, data)
