"""The corpus of hostile and careless input: bad profiles and command lines, each with the
exact exit code and the parts its message must have (file, line, field path, reason).

Every case runs the real command line (``rpibuild.cli.main``, as a user's shell would) in
this process, and also asserts what must never happen: a traceback, a secret on screen, or
output slower than a second for the inputs built to hang a parser.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rpibuild.cli import main
from rpibuild.config.model import QPULIB_UPSTREAM_COMMIT
from rpibuild.resources import configs_dir

PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
SECRET = "s3cr3tT0ken"


@dataclass
class Case:
    """One bad input. ``files`` are written to a temporary folder ({dir} in args and parts)."""

    id: str
    args: list[str]
    exit: int
    parts: list[str]
    files: dict[str, str | bytes] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    absent: list[str] = field(default_factory=list)  # must not appear in stdout or stderr


def line_of(config: str, text: str) -> int:
    """The 1-based line of a shipped profile that first holds text: messages name it."""
    lines = (configs_dir() / config).read_text(encoding="utf-8").splitlines()
    return next(number for number, line in enumerate(lines, 1) if text in line)


def nested(path: str, scalar: str, parent: str = "pi3b-arm64") -> str:
    """A profile that extends ``parent`` and sets one field; the field is on line len(path)+1."""
    lines = [f"extends: {parent}"]
    keys = path.split(".")
    for depth, key in enumerate(keys[:-1]):
        lines.append("  " * depth + f"{key}:")
    lines.append("  " * (len(keys) - 1) + f"{keys[-1]}: {scalar}")
    return "\n".join(lines) + "\n"


def q(value: str) -> str:
    """A YAML double-quoted scalar (JSON's escapes are YAML's)."""
    return json.dumps(value)


# ---------------------------------------------------------------- the corpus

# Every string field that reaches a Dockerfile, a shell line or a tool, with the --set
# values that make the template render it, and a valid value of it.
STRING_FIELDS: list[tuple[str, str, list[str]]] = [
    ("name", "my-profile", []),
    ("description", "a Pi", []),
    ("base.image", "debian:bookworm", ["base.bootstrap=null"]),
    ("base.bootstrap.suite", "bookworm", []),
    ("base.bootstrap.mirror", "http://mirror.example.invalid/debian", []),
    ("base.bootstrap.keyring", "/usr/share/keyrings/k.gpg", []),
    ("network.http_proxy", "http://proxy:3128", []),
    ("network.https_proxy", "http://proxy:3128", []),
    ("network.no_proxy", "localhost,.example.com", []),
    ("network.apt_mirror", "http://mirror.example/debian", []),
    ("network.pip_index_url", "https://idx.example/simple", []),
    ("network.pip_extra_index_url", "https://idx.example/simple", []),
    ("network.ca_bundle", "/etc/ssl/certs/ca-certificates.crt", []),
    ("torch.version", "2.5.1", []),
    ("torch.sha256", "a" * 64, []),
    ("torch.wheel", "https://w.example/torch-2.5.1-cp311-cp311-linux_aarch64.whl", ["torch.source=wheel"]),
    ("torch.git_url", "https://github.com/pytorch/pytorch.git", ["torch.source=source"]),
    ("torch.git_ref", "v2.5.1", ["torch.source=source"]),
    ("torch.build_env.CFLAGS", "-O2", ["torch.source=source", "torch.git_ref=v2.5.1"]),
    ("qpulib.url", "https://x.example/{commit}.tar.gz", []),
    ("qpulib.path", "/src/QPULib", []),
    ("extension.path", "/src/ext", []),
    ("verify.qemu_cpu", "cortex-a53", []),
    ("image.repository", "team/pi", []),
    ("image.labels.owner", "me", []),
    ("registry.url", "reg.example:5000", []),
    ("registry.namespace", "team", []),
    ("registry.username", "bob", []),
    ("registry.password_env", "REG_PASS", []),
]
# Characters that end a Dockerfile line (or a terminal's idea of one), or hide text.
BREAKS = {
    "LF": "\n",
    "CR": "\r",
    "NUL": "\x00",
    "LS": "\u2028",
    "NEL": "\u0085",
    "ESC": "\x1b",
    "RLO": "\u202e",
}


def _control_character_cases() -> Iterator[Case]:
    """Each string field with a line break (or other control) in the file, on the field's line."""
    kinds = list(BREAKS.items())
    for index, (path, valid, sets) in enumerate(STRING_FIELDS):
        # Three kinds per field, rotating, so every kind meets many fields.
        chosen = dict([kinds[index % 7], kinds[(index + 3) % 7], ("LF", "\n")])
        for name, char in chosen.items():
            hostile = f"{valid}{char}RUN touch /pwned"
            line = path.count(".") + 2
            code = f"U+{ord(char):04X}"
            yield Case(
                id=f"ctl-{name}-{path}",
                files={"bad.yaml": nested(path, q(hostile))},
                args=["config", "validate", "-p", "{dir}/bad.yaml", *(a for s in sets for a in ("--set", s))],
                exit=2,
                parts=[f"bad.yaml:{line}: {path}:", f"control or line-break character ({code})"],
                absent=["RUN touch /pwned"],
            )


def _set_and_env_cases() -> Iterator[Case]:
    """The same through --set (YAML folds a bare newline, so quoted) and through ${ENV}."""
    for path, valid, sets in STRING_FIELDS[::3]:
        set_args = [a for s in sets for a in ("--set", s)]
        yield Case(
            id=f"set-LF-{path}",
            args=["config", "validate", "--set", f"{path}={q(valid + chr(10) + 'RUN x')}", *set_args],
            exit=2,
            parts=[f"--set {path}=", f"{path}:", "(U+000A)"],
        )
        yield Case(
            id=f"env-LF-{path}",
            files={"bad.yaml": nested(path, "${HOSTILE}")},
            env={"HOSTILE": valid + "\nRUN touch /pwned"},
            args=["render", "-p", "{dir}/bad.yaml", *set_args],
            exit=2,
            parts=[f"bad.yaml:{path.count('.') + 2}: {path}:", "(U+000A)"],
            absent=["RUN touch /pwned"],
        )


# A value that is one line but not what the field holds: (field, value, sets, reason).
GRAMMAR: list[tuple[str, str, list[str], str]] = [
    ("name", "pi;rm", [], "is not a profile name"),
    ("name", "[/red]x", [], "is not a profile name"),
    ("name", "a b", [], "is not a profile name"),
    ("base.image", "debian:bookworm AS x", ["base.bootstrap=null"], "is not an image reference"),
    ("base.image", "Debian", ["base.bootstrap=null"], "is not an image reference"),
    ("base.image", "debian:-x", ["base.bootstrap=null"], "is not an image reference"),
    ("base.bootstrap.suite", "bookworm;id", [], "is not a Debian suite"),
    ("base.bootstrap.suite", "--foreign", [], "is not a Debian suite"),
    ("base.bootstrap.suite", "Bookworm", [], "is not a Debian suite"),
    ("base.bootstrap.mirror", "mirror.example.invalid/debian", [], "is not a URL with a scheme"),
    ("base.bootstrap.mirror", "ftp://mirror.example.invalid/debian", [], "is not a URL with a scheme"),
    ("network.apt_mirror", "$(touch x)#e;", [], "is not a URL"),
    ("network.apt_mirror", "http://m.example/debian#e;s#x#", [], "is not a mirror URL"),
    ("network.apt_mirror", "http://m.example/de bian", [], "is not a URL"),
    ("network.apt_mirror", "http:///debian", [], "names no host"),
    ("network.apt_mirror", "http://m.example:99999/debian", [], "port"),
    ("network.http_proxy", "proxy.example:3128", [], "is not a URL with a scheme"),
    ("network.https_proxy", "not a url", [], "is not a URL"),
    ("network.no_proxy", "localhost;id", [], "comma-separated list"),
    ("network.pip_index_url", "idx.example/simple", [], "is not a URL with a scheme"),
    ("network.pip_extra_index_url", "javascript:alert(1)", [], "is not a URL with a scheme"),
    ("torch.version", "2.5.1; id", [], "is not a version"),
    ("torch.version", "latest", [], "is not a version"),
    ("torch.sha256", "A" * 64, [], "64 lowercase hex digits"),
    ("torch.sha256", "a" * 63, [], "64 lowercase hex digits"),
    ("torch.wheel", "https://w.example/torch.tar.gz", ["torch.source=wheel"], "wheel file name"),
    ("torch.wheel", "/tmp/torch 2.whl", ["torch.source=wheel"], "wheel file name"),
    ("torch.wheel", "https://w.example/torch-%0ARUN%20x.whl", ["torch.source=wheel"], "wheel file name"),
    ("torch.wheel", "https://w.example/torch%2F..%2Fx.whl", ["torch.source=wheel"], "wheel file name"),
    ("torch.git_url", "ext::sh -c id", ["torch.source=source"], "is not a URL"),
    ("torch.git_ref", "--upload-pack=id", ["torch.source=source"], "git branch or tag"),
    ("torch.git_ref", "v1..2", ["torch.source=source"], "git branch or tag"),
    ("torch.git_ref", "v 1", ["torch.source=source"], "git branch or tag"),
    ("torch.build_env.CFLAGS", "raw:[1, 2]", ["torch.source=source", "torch.git_ref=v1"], "valid string"),
    ("qpulib.url", "https://x.example/{nope}.tar.gz", [], "unknown placeholder"),
    ("qpulib.url", "https://x.example/{commit!r}.tar.gz", [], "unknown placeholder"),
    ("qpulib.url", "https://x.example/{commit.tar.gz", [], "unbalanced"),
    ("qpulib.commit", "HEAD", [], "40-digit"),
    ("qpulib.tree_sha256", "a" * 64 + " ", [], "64 lowercase hex digits"),
    ("verify.qemu_cpu", "cortex-a53 LD_PRELOAD=/tmp/x.so", [], "is not a QEMU CPU model"),
    ("verify.qemu_cpu", "cortex-a7", [], "cortex-a7 cannot run linux/arm64 code"),
    ("verify.qemu_cpu", "arm1176", [], "cannot run linux/arm64 code"),
    ("image.repository", "Bad/Name", [], "lowercase image repository"),
    ("network.ca_bundle", "https://h.example/ca.pem", [], "is a URL: give a path on this host"),
    ("base.bootstrap.keyring", "https://h.example/k.gpg", [], "is a URL"),
    ("extension.path", "https://h.example/ext", [], "is a URL"),
    ("qpulib.path", "file:///src/QPULib", [], "is a URL"),
    ("image.labels.owner", "raw:[1]", [], "valid string"),
    ("registry.url", "bad host", [], "registry host[:port]"),
    ("registry.url", "https://reg.example/path", [], "registry host[:port]"),
    ("registry.namespace", "Team X", [], "registry namespace"),
]


def _grammar_cases() -> Iterator[Case]:
    for path, value, sets, reason in GRAMMAR:
        scalar = value.removeprefix("raw:") if value.startswith("raw:") else q(value)
        yield Case(
            id=f"grammar-{path}-{value}",
            files={"bad.yaml": nested(path, scalar)},
            args=["config", "validate", "-p", "{dir}/bad.yaml", *(a for s in sets for a in ("--set", s))],
            exit=2,
            parts=[f"bad.yaml:{path.count('.') + 2}: {path}", reason],
        )


def _list_and_key_cases() -> Iterator[Case]:
    """List items and mapping keys are located at their own index or key."""
    for path in ("apt.packages", "apt.runtime_packages", "base.bootstrap.packages"):
        for bad in ("g++; rm -rf /", "python3\n", "Python3", "-python3"):
            text = nested(path, f"[ok-pkg, {q(bad)}]")
            yield Case(
                id=f"list-{path}-{bad!r}",
                files={"bad.yaml": text},
                args=["config", "validate", "-p", "{dir}/bad.yaml"],
                exit=2,
                parts=[f"bad.yaml:{path.count('.') + 2}: {path}[1]:"],
            )
    yield Case(
        id="list-components",
        files={"bad.yaml": nested("base.bootstrap.components", "[main, 'non free']")},
        args=["config", "validate", "-p", "{dir}/bad.yaml"],
        exit=2,
        parts=["bad.yaml:4: base.bootstrap.components[1]:", "archive component"],
    )
    yield Case(
        id="list-tag-template",
        files={"bad.yaml": nested("image.tags", "['{profile}', 'a b']")},
        args=["config", "validate", "-p", "{dir}/bad.yaml"],
        exit=2,
        parts=["bad.yaml:3: image.tags[1]:", "tag template"],
    )
    for key, reason in (
        ("A B", "NAME of an environment variable"),
        ("1X", "NAME of an environment variable"),
    ):
        yield Case(
            id=f"key-build_env-{key}",
            files={"bad.yaml": "extends: pi3b-arm64\ntorch:\n  build_env:\n    " + q(key) + ": x\n"},
            args=["config", "validate", "-p", "{dir}/bad.yaml"],
            exit=2,
            parts=[f"bad.yaml:4: torch.build_env.{key}:", reason],
        )
    yield Case(
        id="key-build_env-LF",
        files={"bad.yaml": "extends: pi3b-arm64\ntorch:\n  build_env:\n    " + q("A\nRUN id") + ": x\n"},
        args=["config", "validate", "-p", "{dir}/bad.yaml"],
        exit=2,
        parts=["bad.yaml:4: torch.build_env.A\\u000aRUN id:", "the key contains a control"],
    )
    yield Case(
        id="key-label-space",
        files={"bad.yaml": "extends: pi3b-arm64\nimage:\n  labels:\n    'a b': x\n"},
        args=["config", "validate", "-p", "{dir}/bad.yaml"],
        exit=2,
        parts=["bad.yaml:4: image.labels.a b:", "label key"],
    )


def _secret_cases() -> Iterator[Case]:
    """URL credentials never shown; errors about secret fields never echo the value."""
    # Fields whose URL would land on a command line or in a layer refuse credentials at load.
    for path in ("network.apt_mirror", "base.bootstrap.mirror", "torch.git_url"):
        url = f"https://bob:{SECRET}@host.example/simple"
        for args in (["config", "show"], ["config", "show", "--json"]):
            yield Case(
                id=f"secret-refused-{' '.join(args[1:])}-{path}",
                files={"s.yaml": nested(path, q(url))},
                args=[*args, "-p", "{dir}/s.yaml"],
                exit=2,
                parts=[f"{path}:", "carries credentials"],
                absent=[SECRET, "bob:"],
            )
    for path in (
        "network.http_proxy",
        "network.https_proxy",
        "network.pip_index_url",
        "network.pip_extra_index_url",
    ):
        url = f"https://bob:{SECRET}@host.example/simple"
        for args in (["config", "show"], ["config", "show", "--json"]):
            yield Case(
                id=f"secret-{' '.join(args[1:])}-{path}",
                files={"s.yaml": nested(path, q(url))},
                args=[*args, "-p", "{dir}/s.yaml"],
                exit=0,
                parts=["https://***@host.example/simple"],
                absent=[SECRET, "bob:"],
            )
    yield Case(
        id="secret-in-bad-url-error",
        files={"s.yaml": nested("network.http_proxy", q(f"http://bob:{SECRET}@bad host:3128"))},
        args=["config", "validate", "-p", "{dir}/s.yaml"],
        exit=2,
        parts=["s.yaml:3: network.http_proxy:", "http://***@"],
        absent=[SECRET],
    )
    yield Case(
        id="secret-password-wrong-type",
        files={"s.yaml": nested("registry.password", "123456789")},
        args=["config", "validate", "-p", "{dir}/s.yaml"],
        exit=2,
        parts=["s.yaml:3: registry.password:", "value not shown"],
        absent=["123456789"],
    )
    yield Case(
        id="secret-password_env-holds-a-value",
        files={"s.yaml": nested("registry.password_env", q(f"{SECRET}!"))},
        args=["config", "validate", "-p", "{dir}/s.yaml"],
        exit=2,
        parts=["s.yaml:3: registry.password_env:", "NAME of an environment variable", "value not shown"],
        absent=[SECRET],
    )
    yield Case(
        id="secret-password-with-newline",
        files={"s.yaml": nested("registry.password", "${PW}")},
        env={"PW": f"{SECRET}\nx"},
        args=["config", "validate", "-p", "{dir}/s.yaml"],
        exit=2,
        parts=["s.yaml:3: registry.password:", "(U+000A)"],
        absent=[SECRET],
    )
    yield Case(
        id="secret-password-set-wrong-type",
        args=["config", "validate", "--set", f"registry.password=[{SECRET}]"],
        exit=2,
        parts=["--set registry.password=***: registry.password:", "value not shown"],
        absent=[SECRET],
    )
    yield Case(
        id="secret-password-show",
        files={"s.yaml": nested("registry.password", "${PW}")},
        env={"PW": SECRET},
        args=["config", "show", "--json", "-p", "{dir}/s.yaml"],
        exit=0,
        parts=['"password": "**********"'],
        absent=[SECRET],
    )


def _yaml_cases() -> Iterator[Case]:
    """Inputs built to crash or hang a YAML reader: each a located error, at once."""
    deep = "a: " + "[" * 5000 + "]" * 5000 + "\n"
    bomb = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in "bcdefghi":
        prev = chr(ord(level) - 1)
        bomb.append(f"{level}: &{level} [{', '.join(['*' + prev] * 9)}]")
    cases = [
        ("deep-nesting", deep, "bad.yaml:1:", "nested deeper than 32"),
        (
            "deep-flow-mapping",
            "a: " + "{a: " * 5000 + "}" * 5000 + "\n",
            "bad.yaml:1:",
            "nested deeper than 32",
        ),
        (
            "deep-mapping",
            "".join("  " * i + f"k{i}:\n" for i in range(60)) + "  " * 60 + "v: 1\n",
            "bad.yaml:",
            "32",
        ),
        ("alias-bomb", "\n".join(bomb) + "\n", "bad.yaml:", "expands to more than 20000 values"),
        (
            "recursive-alias",
            "extends: pi3b-arm64\nimage:\n  labels: &x {a: *x}\n",
            "bad.yaml:",
            "deeper than 32",
        ),
        (
            "complex-key",
            "extends: pi3b-arm64\n? [a, b]\n: 1\n",
            "bad.yaml:2:",
            "a key must be a plain string",
        ),
        ("mapping-key", "extends: pi3b-arm64\n{a: 1}: x\n", "bad.yaml:2:", "a key must be a plain string"),
        (
            "int-key",
            "extends: pi3b-arm64\nimage:\n  labels:\n    1: x\n",
            "bad.yaml:4: image.labels:",
            "plain string",
        ),
        ("bool-key", "extends: pi3b-arm64\nyes: 1\n", "bad.yaml:2:", "a key must be a plain string"),
        (
            "python-tag",
            "extends: pi3b-arm64\nname: !!python/object/apply:os.system [id]\n",
            "bad.yaml:2: name:",
            "tag",
        ),
        ("python-name", "name: !!python/name:os.system\n", "bad.yaml:1: name:", "is not allowed"),
        (
            "local-tag",
            "extends: pi3b-arm64\ndescription: !custom x\n",
            "bad.yaml:2: description:",
            "not allowed",
        ),
        ("binary-tag", "extends: pi3b-arm64\ndescription: !!binary aGk=\n", "bad.yaml:2:", "not allowed"),
        ("set-tag", "extends: pi3b-arm64\napt:\n  packages: !!set {a: null}\n", "bad.yaml:3:", "not allowed"),
        ("top-level-list", "- a\n- b\n", "bad.yaml:1:", "a profile must be a mapping"),
        ("top-level-scalar", "just text\n", "bad.yaml:1:", "a profile must be a mapping"),
        ("unclosed", "extends: pi3b-arm64\nname: [x\n", "bad.yaml:", "invalid YAML"),
        ("tab-indent", "extends: pi3b-arm64\nimage:\n\trepository: x\n", "bad.yaml:3:", "invalid YAML"),
        ("duplicate-key", "extends: pi3b-arm64\nname: a\nname: b\n", "bad.yaml:3: name:", "duplicate key"),
        (
            "too-many-aliases",
            "a: &a x\n" + "".join(f"k{i}: *a\n" for i in range(150)),
            "bad.yaml:",
            "aliases",
        ),
        ("raw-nul", "extends: pi3b-arm64\nname: a\x00b\n", "bad.yaml:2:", "character U+0000 is not allowed"),
        (
            "int-tag-on-text",
            "extends: pi3b-arm64\ntorch:\n  max_jobs: !!int two\n",
            "bad.yaml:3:",
            "fit its tag",
        ),
        (
            "bool-tag-on-text",
            "extends: pi3b-arm64\nverify:\n  emulator: !!bool maybe\n",
            "bad.yaml:3:",
            "its tag",
        ),
        ("key-with-bracket", "extends: pi3b-arm64\n'a[b]': 1\n", "bad.yaml:2: a[b]:", "unknown field"),
    ]
    for name, text, where, reason in cases:
        yield Case(
            id=f"yaml-{name}",
            files={"bad.yaml": text},
            args=["config", "validate", "-p", "{dir}/bad.yaml"],
            exit=2,
            parts=[where, reason],
        )
    yield Case(
        id="yaml-not-utf8",
        files={"bad.yaml": b"extends: pi3b-arm64\ndescription: caf\xe9\n"},
        args=["config", "validate", "-p", "{dir}/bad.yaml"],
        exit=2,
        parts=["bad.yaml:2:", "not UTF-8 text (byte 0xe9)"],
    )
    yield Case(
        id="yaml-utf16",
        files={"bad.yaml": "name: x\n".encode("utf-16")},
        args=["config", "validate", "-p", "{dir}/bad.yaml"],
        exit=2,
        parts=["bad.yaml:1:", "not UTF-8"],
    )
    yield Case(
        id="yaml-5MB",
        files={"bad.yaml": "extends: pi3b-arm64\n" + "# padding\n" * 500_000},
        args=["config", "validate", "-p", "{dir}/bad.yaml"],
        exit=2,
        parts=["bad.yaml:1:", "larger than 32 KiB"],
    )
    yield Case(
        id="yaml-set-alias-bomb",
        args=["config", "validate", "--set", "image.labels={" + ", ".join(bomb).replace(": ", ": ") + "}"],
        exit=2,
        parts=["--set", "expands to more than"],
    )
    chain = {f"p{i}.yaml": f"extends: p{i + 1}.yaml\n" for i in range(40)}
    chain["p40.yaml"] = "extends: pi3b-arm64\n"
    yield Case(
        id="extends-chain-40",
        files=chain,
        args=["config", "validate", "-p", "{dir}/p0.yaml"],
        exit=2,
        parts=["p15.yaml:1: extends:", "more than 16 profiles extend one another"],
    )


def _extends_and_checks_cases() -> Iterator[Case]:
    yield Case(
        id="extends-cycle-names-the-line",
        files={"a.yaml": "# a\nextends: b.yaml\n", "b.yaml": "\n\nextends: a.yaml\n"},
        args=["config", "validate", "-p", "{dir}/a.yaml"],
        exit=2,
        parts=["b.yaml:3: extends:", "cycle", "a.yaml -> ", "b.yaml -> "],
    )
    yield Case(
        id="extends-self",
        files={"a.yaml": "extends: a.yaml\n"},
        args=["config", "validate", "-p", "{dir}/a.yaml"],
        exit=2,
        parts=["a.yaml:1: extends:", "cycle"],
    )
    yield Case(
        id="extends-misspelled-parent",
        files={"a.yaml": "name: x\nextends: _comon\n"},
        args=["config", "validate", "-p", "{dir}/a.yaml"],
        exit=2,
        parts=["a.yaml:2: extends:", "no profile named '_comon'", "did you mean '_common'?"],
    )
    yield Case(
        id="extends-misspelled-profile",
        files={"a.yaml": "extends: pi3b-arm46\n"},
        args=["config", "validate", "-p", "{dir}/a.yaml"],
        exit=2,
        parts=["a.yaml:1: extends:", "did you mean 'pi3b-arm64'?"],
    )
    yield Case(
        id="extends-misspelled-path",
        files={"a.yaml": "extends: parnet.yaml\n", "parent.yaml": "extends: pi3b-arm64\n"},
        args=["config", "validate", "-p", "{dir}/a.yaml"],
        exit=2,
        parts=["a.yaml:1: extends:", "profile file not found", "did you mean 'parent.yaml'?"],
    )
    for name, value, part in (
        ("empty", '""', "the profile name is empty"),
        ("newline", q("pi3b-arm64\nx"), "holds a control character"),
        ("list", "[a, b]", "must be a profile name or a path"),
        ("device", "/dev/zero", "profile file not found"),
    ):
        yield Case(
            id=f"extends-{name}",
            files={"a.yaml": f"name: x\nextends: {value}\n"},
            args=["config", "validate", "-p", "{dir}/a.yaml"],
            exit=2,
            parts=["a.yaml:2: extends:", part],
        )
    yield Case(
        id="missing-field-did-you-mean",
        files={
            "a.yaml": "platfrom: linux/arm64\nbase:\n  image: debian\n"
            "torch:\n  source: none\nimage:\n  repository: a\n"
        },
        args=["config", "validate", "-p", "{dir}/a.yaml"],
        exit=2,
        parts=[
            "a.yaml:1: platform: required field is missing",
            "did you mean 'platform'? (found 'platfrom')",
        ],
    )
    yield Case(
        id="missing-nested-field-did-you-mean",
        files={"a.yaml": "extends: pi3b-arm64\nimage:\n  repository: null\n  repositry: x\n"},
        args=["config", "validate", "-p", "{dir}/a.yaml", "--set", "image={repositry: x}"],
        exit=2,
        parts=[
            "image.repository: required field is missing",
            "did you mean 'repository'? (found 'repositry')",
        ],
    )
    wheel_sets = ["--set", "torch.source=wheel", "--set", "torch.sha256=" + "a" * 64]
    checks = [
        (
            "missing-wheel",
            {"a.yaml": nested("torch.wheel", "missing/torch-2.5.1-cp311-cp311-linux_aarch64.whl")},
            wheel_sets,
            ["a.yaml:3: torch.wheel:", "does not exist"],
        ),
        (
            "missing-ca",
            {"a.yaml": nested("network.ca_bundle", "nowhere.pem")},
            [],
            ["a.yaml:3: network.ca_bundle:", "does not exist"],
        ),
        (
            "ca-not-pem",
            {"a.yaml": nested("network.ca_bundle", "ca.der"), "ca.der": b"0\x82\x03\x00binary"},
            [],
            ["a.yaml:3: network.ca_bundle:", "is not a PEM file"],
        ),
        (
            "ca-folder",
            {"a.yaml": nested("network.ca_bundle", "sub"), "sub/x": "x"},
            [],
            ["a.yaml:3: network.ca_bundle:", "is not a file"],
        ),
        (
            "missing-keyring",
            {"a.yaml": nested("base.bootstrap.keyring", "k.gpg")},
            [],
            ["a.yaml:4: base.bootstrap.keyring:", "keyring", "does not exist"],
        ),
        (
            "missing-extension",
            {"a.yaml": nested("extension.path", "ext")},
            [],
            ["a.yaml:3: extension.path:", "does not exist"],
        ),
        (
            "qpulib-not-a-tree",
            {"a.yaml": nested("qpulib.path", "q"), "q/README": "x"},
            [],
            ["a.yaml:3: qpulib.path:", "not a QPULib source tree", "RPIBUILD_QPULIB_SRC"],
        ),
        (
            "tag-from-git-ref",
            {"a.yaml": nested("torch.git_ref", "release/2.5")},
            ["--set", "torch.source=source", "--set", "torch.version=null"],
            [
                f"_common.yaml:{line_of('_common.yaml', 'tags:')}: image.tags:",
                "'a-torchsrc-release/2.5' is not a valid image tag",
            ],
        ),
        (
            "tag-too-long",
            {"a.yaml": nested("image.tags", "['{profile}{profile}{profile}']")},
            ["--set", "name=" + "n" * 60],
            ["a.yaml:3: image.tags:", "is not a valid image tag"],
        ),
        (
            "cpu-on-amd64",
            {"a.yaml": nested("verify.qemu_cpu", "max", parent="host-emulator")},
            [],
            ["a.yaml:3: verify.qemu_cpu:", "cannot run linux/amd64 code", "runs natively"],
        ),
        (
            "cpu-a53-on-armv7",
            {"a.yaml": nested("verify.qemu_cpu", "cortex-a53", parent="pi3b-armv7")},
            ["--set", "torch.source=none"],
            ["a.yaml:3: verify.qemu_cpu:", "cannot run linux/arm/v7 code"],
        ),
    ]
    for name, files, extra, parts in checks:
        for command in (["config", "validate"], ["render"]):
            yield Case(
                id=f"check-{name}-{command[-1]}",
                files=files,
                args=[*command, "-p", "{dir}/a.yaml", *extra],
                exit=2,
                parts=parts,
            )


def _command_line_cases() -> Iterator[Case]:
    usage = [
        ("empty-profile", ["config", "validate", "-p", ""], "is empty"),
        ("empty-profile-render", ["render", "-p", ""], "is empty"),
        ("empty-profile-push", ["push", "-p", "", "--registry", "r.example"], "is empty"),
        ("blank-profile", ["config", "show", "-p", "  "], "is empty"),
        ("push-registry-space", ["push", "--registry", "my registry"], "not a registry host"),
        ("push-registry-path", ["push", "--registry", "https://r.example/v2/x"], "not a registry host"),
        ("push-registry-newline", ["push", "--registry", "r.example\nx"], "\\u000a"),
        ("push-namespace", ["push", "--registry", "r.example", "--namespace", "Team X"], "namespace"),
        ("push-manifest", ["push", "--registry", "r.example", "--manifest", "no tag"], "--manifest"),
        ("login-registry-space", ["login", "my registry", "-u", "bob"], "not a registry host"),
        ("login-registry-markup", ["login", "[/red]", "-u", "bob"], "not a registry host"),
    ]
    for name, args, part in usage:
        yield Case(id=f"usage-{name}", args=args, exit=2, parts=["Invalid value", part])
    yield Case(
        id="profile-name-with-control",
        args=["config", "validate", "-p", "pi3b\x1b[2Jarm64"],
        exit=2,
        parts=["--profile", "\\u001b"],
        absent=["\x1b"],
    )
    yield Case(
        id="profile-path-with-markup",
        args=["config", "validate", "-p", "{dir}/[/red]x.yaml"],
        exit=2,
        parts=["[/red]x.yaml", "profile file not found"],
    )
    yield Case(
        id="profile-path-markup-ok",
        files={"[bold]/p.yaml": "extends: pi3b-arm64\n"},
        args=["config", "validate", "-p", "{dir}/[bold]/p.yaml"],
        exit=0,
        parts=["ok", "[bold]/p.yaml"],
    )
    yield Case(
        id="set-newline-name",
        args=["render", "--set", 'name="x\\nFROM scratch"'],
        exit=2,
        parts=["--set name=", "name:", "(U+000A)"],
        absent=["\nFROM scratch"],
    )
    yield Case(
        id="set-path-5000-deep",
        args=["config", "validate", "--set", ".".join(["a"] * 5000) + "=1"],
        exit=2,
        parts=["--set: the field path is deeper than 32 levels"],
    )
    yield Case(
        id="set-without-value",
        args=["render", "--set", "name"],
        exit=2,
        parts=["--set expects FIELD.PATH=VALUE"],
    )
    yield Case(
        id="render-output-under-a-file",
        files={"afile": "x"},
        args=["render", "-o", "{dir}/afile/ctx", "--set", "qpulib.enabled=false"],
        exit=2,
        parts=["--output", "cannot be created: {dir}/afile is not a folder"],
    )
    for command in ("rootfs", "artifacts"):
        yield Case(
            id=f"{command}-out-under-a-file",
            files={"afile": "x"},
            args=[command, "{dir}/afile/out"],
            exit=2,
            parts=["Invalid value for 'OUT'", "cannot be created: {dir}/afile is not a folder"],
        )
        yield Case(
            id=f"{command}-out-with-newline",
            args=[command, "{dir}/out\nx"],
            exit=2,
            parts=["Invalid value for 'OUT'", "control character"],
        )
    yield Case(
        id="render-output-proc",
        args=["render", "-o", "/proc/rpibuild-nowhere/ctx", "--set", "qpulib.enabled=false"],
        exit=2,
        parts=["--output", "cannot write the build context"],
    )
    yield Case(
        id="render-output-is-a-file",
        files={"afile": "x"},
        args=["render", "-o", "{dir}/afile", "--set", "qpulib.enabled=false"],
        exit=2,
        parts=["afile", "is a file"],
    )
    yield Case(
        id="qpulib-url-unknown-placeholder",
        args=["render", "-o", "{dir}/ctx", "--set", "qpulib.url=https://x.example/{sha}.tgz"],
        exit=2,
        parts=["qpulib.url", "unknown placeholder", "{commit}"],
    )
    yield Case(
        id="qpulib-commit-short",
        args=["render", "--set", "qpulib.commit=" + QPULIB_UPSTREAM_COMMIT[:12]],
        exit=2,
        parts=["qpulib.commit", "40-digit"],
    )


CORPUS: list[Case] = [
    *_control_character_cases(),
    *_set_and_env_cases(),
    *_grammar_cases(),
    *_list_and_key_cases(),
    *_secret_cases(),
    *_yaml_cases(),
    *_extends_and_checks_cases(),
    *_command_line_cases(),
]


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> int:
    """``rpibuild ARGS`` through the real entry point; returns its exit code."""
    monkeypatch.setattr(sys, "argv", ["rpibuild", *args])
    try:
        main()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


@pytest.mark.parametrize("case", CORPUS, ids=lambda c: c.id)
def test_hostile_input(case: Case, tmp_path: Path, capsys, monkeypatch) -> None:
    for name, content in case.files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    for name in ("RPIBUILD_PROFILE", "RPIBUILD_QPULIB_SRC", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    args = [arg.replace("{dir}", str(tmp_path)) for arg in case.args]
    code = run_cli(args, capsys, monkeypatch)
    out, err = capsys.readouterr()
    assert code == case.exit, f"exit {code}, expected {case.exit}\nstdout: {out}\nstderr: {err}"
    assert "Traceback" not in err + out
    for part in case.parts:
        part = part.replace("{dir}", str(tmp_path))
        assert part in err + out, f"{part!r} not in:\n{err}{out}"
    for part in case.absent:
        assert part not in err + out, f"{part!r} shown:\n{err}{out}"


def test_corpus_is_large_and_covers_every_kind() -> None:
    ids = [case.id for case in CORPUS]
    assert len(ids) == len(set(ids)), "case ids are unique"
    assert len(CORPUS) > 150
    for kind in ("ctl-", "set-", "env-", "grammar-", "list-", "key-", "secret-", "yaml-", "check-", "usage-"):
        assert sum(i.startswith(kind) for i in ids) >= 2, kind


@pytest.mark.parametrize(
    "name",
    ["yaml-alias-bomb", "yaml-5MB", "yaml-deep-nesting", "yaml-deep-flow-mapping", "extends-chain-40"],
)
def test_hostile_yaml_is_stopped_by_a_limit_with_a_location(name: str, tmp_path: Path) -> None:
    """Each is refused by a limit (not by running out of time or memory): located error.
    How fast is a figure of benchmarks/bad_input.py, never a timing assert here."""
    from rpibuild.config import load_profile
    from rpibuild.errors import ConfigError

    case = next(c for c in CORPUS if c.id == name)
    for file, content in case.files.items():
        (tmp_path / file).write_text(content, encoding="utf-8")
    profile = case.args[case.args.index("-p") + 1].replace("{dir}", str(tmp_path))
    with pytest.raises(ConfigError) as info:
        load_profile(profile, env={})
    assert info.value.file is not None and info.value.line is not None


YAML_TOKENS = [
    "[", "]", "{", "}", "&a ", "*a", "&b ", "*b", "!!python/name:os.system ", "!x ", "!!binary ", ": ", "- ",
    "\n", "  ", "? ", "'", '"', "# c", "%YAML 1.1\n", "---\n", "...\n", "<<: ", "extends: ", "pi3b-arm64",
    "name", "image", "labels", "x", "1", "\t", "\x00", "\xe9", "\ufeff", "|\n", ">\n", ",", "@", "`",
]  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    text=st.lists(st.sampled_from(YAML_TOKENS), max_size=40).map("".join),
    raw=st.binary(max_size=64),
)
def test_any_bytes_load_or_fail_with_a_located_config_error(tmp_path: Path, text: str, raw: bytes) -> None:
    """Whatever a file holds (YAML-ish token soup, or raw bytes), loading it gives a profile
    or a ConfigError naming the file: never another exception, never a hang."""
    from rpibuild.config import load_profile
    from rpibuild.errors import ConfigError

    for content in (text.encode("utf-8", "surrogatepass"), raw):
        path = tmp_path / "fuzz.yaml"
        path.write_bytes(content)
        try:
            load_profile(path, env={})
        except ConfigError as exc:
            assert exc.file is not None and exc.exit_code == 2
