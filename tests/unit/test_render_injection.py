"""Property: no profile value can add, remove or split a Dockerfile instruction.

Hostile strings (line breaks of every Unicode kind, quotes, ``$()``, backticks, backslashes,
sed delimiters, ``#``, bidi controls) go into one string field at a time, through the
profile file, ``--set`` or ``${ENV}``. Each profile is either rejected with a located
ConfigError, or renders a Dockerfile whose instruction sequence (keyword and number of
words or shell tokens of each) is exactly the one the same template renders for a benign
value; generated context files (pip.conf, apt mirror) keep their line counts too.
"""

from __future__ import annotations

import itertools
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from rpibuild.config import load_profile
from rpibuild.config.checks import check_buildable
from rpibuild.config.grammar import forbidden_character
from rpibuild.errors import ConfigError
from rpibuild.planning.render import render

from .dockerfile import docker_words, instructions, shell_tokens

Path_ = tuple[str | int, ...]
# (path, benign value, --set lines that make the template use the field). An int in the
# path is a list index; "*key" as the last part puts the value in a mapping KEY.
FIELDS: list[tuple[Path_, str, tuple[str, ...]]] = [
    (("name",), "my-profile", ()),
    (("platform",), "linux/arm64", ()),
    (("base", "bootstrap", "variant"), "minbase", ()),
    (("description",), "a Pi", ()),
    (("base", "image"), "debian:bookworm", ("base.bootstrap=null",)),
    (("base", "bootstrap", "suite"), "bookworm", ()),
    (("base", "bootstrap", "mirror"), "http://mirror.example.invalid/debian", ()),
    (("base", "bootstrap", "components", 0), "main", ()),
    (("base", "bootstrap", "packages", 0), "python3", ()),
    (("base", "bootstrap", "keyring"), str(Path(__file__).resolve()), ()),  # a file that exists
    (("extension", "path"), str(Path(__file__).resolve().parent), ()),
    (("apt", "packages", 0), "g++", ()),
    (("apt", "runtime_packages", 0), "libgomp1", ()),
    (("network", "http_proxy"), "http://proxy:3128", ()),
    (("network", "https_proxy"), "http://proxy:3128", ()),
    (("network", "no_proxy"), "localhost", ()),
    (("network", "apt_mirror"), "http://mirror.example/debian", ()),
    (("network", "pip_index_url"), "https://idx.example/simple", ()),
    (("network", "pip_extra_index_url"), "https://idx.example/simple", ()),
    (("torch", "version"), "2.5.1", ()),
    (("torch", "sha256"), "a" * 64, ()),
    (
        ("torch", "wheel"),
        "https://w.example/torch-2.5.1-cp311-cp311-linux_aarch64.whl",
        ("torch.source=wheel",),
    ),
    (
        ("torch", "git_url"),
        "https://github.com/pytorch/pytorch.git",
        ("torch.source=source", "torch.git_ref=v1"),
    ),
    (("torch", "git_ref"), "v2.5.1", ("torch.source=source",)),
    (("torch", "build_env", "CFLAGS"), "-O2", ("torch.source=source", "torch.git_ref=v2.5.1")),
    (("torch", "build_env", "*key"), "CFLAGS", ("torch.source=source", "torch.git_ref=v2.5.1")),
    (("qpulib", "url"), "https://x.example/{commit}.tar.gz", ()),
    (("qpulib", "commit"), "c2658a55f2b21de6f3270c86c227011b10d447c2", ()),
    (("qpulib", "mode"), "qpu", ()),
    (("verify", "qemu_cpu"), "cortex-a53", ()),
    (("image", "repository"), "team/pi", ()),
    (("image", "tags", 0), "{profile}-dev", ()),
    (("image", "labels", "owner"), "me", ()),
    (("image", "labels", "*key"), "org.example.owner", ()),
    (("registry", "url"), "reg.example:5000", ()),
    (("registry", "namespace"), "team", ()),
    (("registry", "username"), "bob", ()),
    (("registry", "password_env"), "REG_PASS", ()),
]
FIELD = {".".join(map(str, path)): (path, benign, sets) for path, benign, sets in FIELDS}
BASE_SETS = ("network.ca_bundle=null",)

TOKENS = [
    "\n", "\r", "\r\n", "\u2028", "\u2029", "\u0085", "\x0b", "\x0c", "\x00", "\x1b[2J", "\u202e", "\ufeff",
    "'", '"', "`", "$(", ")", "${", "}", "$", "\\", "#", "e;", ";", "&&", "|", " ", "\t", "s#x#y#e",
    "RUN touch /pwned", "FROM scratch", "ENV X=1", "=", ":", "/", "@", "%", "{", "{{", "}}", "<<EOF",
    " <<EOF", "-", ".",
]  # fmt: skip
hostile = st.lists(
    st.one_of(st.sampled_from(TOKENS), st.text(st.characters(codec="ascii"), max_size=3)),
    min_size=1,
    max_size=8,
).map("".join)


def _document(path: Path_, value: str) -> dict[str, Any]:
    """A profile extending pi3b-arm64 with one value at ``path``."""
    doc: dict[str, Any] = {"extends": "pi3b-arm64"}
    node: Any = doc
    for part, nxt in itertools.pairwise(path):
        node = node.setdefault(part, [] if isinstance(nxt, int) else {})
    last = path[-1]
    if isinstance(last, int):
        node.append(value)
    elif last == "*key":
        node[value] = "x"
    else:
        node[last] = value
    return doc


def _load(path: Path_, value: str, channel: str, sets: tuple[str, ...], folder: Path) -> Any:
    overrides = [*BASE_SETS, *sets]
    env: dict[str, str] = {}
    if channel == "env" and path[-1] != "*key":
        env["HOSTILE"] = value
        value = "${HOSTILE}"
    if channel == "set" and not isinstance(path[-1], int) and path[-1] != "*key":
        overrides.append(".".join(map(str, path)) + "=" + json.dumps(value))
        doc: dict[str, Any] = {"extends": "pi3b-arm64"}
    else:
        doc = _document(path, value)
    file = folder / "profile.yaml"
    file.write_text(yaml.safe_dump(doc, allow_unicode=False), encoding="utf-8")
    loaded = load_profile(file, overrides, env=env)
    check_buildable(loaded)
    return loaded


def _signature(loaded: Any, folder: Path) -> tuple[Any, ...]:
    rendered = render(loaded.profile)
    text = rendered.dockerfile
    assert forbidden_character(text.replace("\n", "")) is None, "a control character reached the Dockerfile"
    # Generated files (BuildKit secrets) keep their line count whatever the values hold.
    files = {name: len(content.splitlines()) for name, content in rendered.secrets.items()}
    return tuple(i.signature() for i in instructions(text)), tuple(sorted(files.items()))


_baselines: dict[tuple[Path_, str], tuple[Any, ...]] = {}


def _baseline(path: Path_, benign: str, sets: tuple[str, ...], channel: str) -> tuple[Any, ...]:
    key = (path, channel)
    if key not in _baselines:
        with tempfile.TemporaryDirectory() as tmp:
            _baselines[key] = _signature(_load(path, benign, channel, sets, Path(tmp)), Path(tmp))
    return _baselines[key]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    field=st.sampled_from(FIELDS),
    text=hostile,
    mode=st.sampled_from(["replace", "suffix", "prefix"]),
    channel=st.sampled_from(["file", "set", "env"]),
)
@example(field=FIELD["network.apt_mirror"], text="$(touch x)#e;", mode="replace", channel="file")  # sed 'e'
@example(field=FIELD["verify.qemu_cpu"], text=" LD_PRELOAD=/tmp/x.so", mode="suffix", channel="env")
@example(field=FIELD["name"], text="\nFROM scratch", mode="suffix", channel="set")
@example(field=FIELD["image.labels.owner"], text='a" "b=$HOME \\', mode="replace", channel="file")
@example(field=FIELD["torch.build_env.CFLAGS"], text="'\\", mode="suffix", channel="file")
def test_no_value_changes_the_instruction_sequence(field, text, mode, channel) -> None:
    path, benign, sets = field
    value = {"replace": text, "suffix": benign + text, "prefix": text + benign}[mode]
    assume(value != "")  # empty means "not given": another template branch, rightly
    expected = _baseline(path, benign, sets, channel)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            loaded = _load(path, value, channel, sets, Path(tmp))
        except ConfigError as exc:
            assert exc.file is not None and exc.exit_code == 2
            assert exc.field is not None, str(exc)
            if channel == "file":
                assert exc.line is not None, str(exc)
            return
        assert _signature(loaded, Path(tmp)) == expected, f"{path}={value!r} changed the Dockerfile"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('a "b c" d', 3),
        ('k=\'v w\' x="y\\"z"', 2),
        ("\"a\\$b\" 'c d'", 2),
    ],
)
def test_docker_words(text: str, expected: int) -> None:
    assert len(docker_words(text)) == expected


def test_reader_sees_continuations_heredocs_and_injected_lines() -> None:
    text = "FROM a AS b\n# c\nRUN x \\\n  # inside\n  && y\nRUN <<EOF\nFROM z\nEOF\nENV A=1 B='2 3'\n"
    assert [i.signature() for i in instructions(text)] == [("FROM", 3), ("RUN", 3), ("RUN", 2), ("ENV", 2)]
    assert instructions("LABEL a=b\u2028RUN x\n")[-1].keyword == "RUN"  # strict: U+2028 splits
    assert len(shell_tokens("echo 'a; b' ; c")) == 4


FREE_TEXT = ["description", "image.labels.owner", "torch.build_env.CFLAGS"]
PRINTABLE_TOKENS = [t for t in TOKENS if forbidden_character(t) is None and t.strip()]


@pytest.mark.parametrize("name", FREE_TEXT)
@pytest.mark.parametrize("token", PRINTABLE_TOKENS)
def test_free_text_with_shell_and_dockerfile_syntax_renders_unchanged(
    name: str, token: str, tmp_path
) -> None:
    """Free-text fields accept any one-line text, so these must render, not be rejected."""
    path, benign, sets = FIELD[name]
    loaded = _load(path, f"{benign}{token}x{token}", "file", sets, tmp_path)
    assert _signature(loaded, tmp_path) == _baseline(path, benign, sets, "file")


def test_the_apt_mirror_is_never_program_text(tmp_path) -> None:
    """The mirror reaches the build as a BuildKit secret that awk reads as data (no sed 'e' flag)."""
    mirror = "http://mirror.example/debian-e"
    loaded = load_profile("pi3b-arm64", ["network.ca_bundle=null", f"network.apt_mirror={mirror}"], env={})
    rendered = render(loaded.profile)
    assert mirror not in rendered.dockerfile
    assert "sed " not in rendered.dockerfile
    assert "--mount=type=secret,id=apt-mirror,target=/etc/rpibuild/apt-mirror" in rendered.dockerfile
    assert rendered.secrets["apt-mirror"] == mirror + "\n"
    assert "apt-mirror" not in "".join(rendered.files)
