"""Profile loading: extends, --set, ${ENV}, and errors that name file, line and field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rpibuild.config import DEFAULT_PROFILE, available_profiles, load_profile
from rpibuild.config.model import QPULIB_UPSTREAM_COMMIT
from rpibuild.errors import ConfigError

ARMV7_ENV = {"RPIBUILD_TORCH_WHEEL": "/tmp/torch.whl", "RPIBUILD_TORCH_WHEEL_SHA256": "a" * 64}
MINIMAL = textwrap.dedent(
    """
    platform: linux/arm/v7
    base:
      bootstrap:
        suite: bookworm
    torch:
      source: none
    image:
      repository: test/minimal
    """
).lstrip()


def test_shipped_profiles_are_listed_and_valid() -> None:
    names = available_profiles()
    assert {"pi3b-arm64", "pi3b-armv7", "host-emulator"} <= set(names)
    assert not any(name.startswith("_") for name in names)
    for name in names:
        loaded = load_profile(name, env=ARMV7_ENV)
        assert loaded.profile.name == name
        assert loaded.profile.qpulib.commit == QPULIB_UPSTREAM_COMMIT


def test_default_profile_is_64_bit_pi3b() -> None:
    loaded = load_profile(None, env={})
    assert loaded.profile.name == DEFAULT_PROFILE == "pi3b-arm64"
    profile = loaded.profile
    assert profile.platform == "linux/arm64"
    assert profile.torch.source == "pypi" and profile.torch.version and profile.torch.sha256
    assert profile.base.bootstrap is not None and profile.base.image is None
    assert loaded.chain[-1].name == "_common.yaml"


def test_minimal_profile_gets_defaults(write_profile) -> None:
    profile = load_profile(write_profile(MINIMAL), env={}).profile
    assert profile.name == "profile"
    assert profile.target.variant == "v7"
    assert profile.image.tags == ["{profile}"]
    assert profile.qpulib.enabled and profile.qpulib.mode == "qpu"


def test_extends_merges_mappings_and_replaces_lists(write_profile) -> None:
    write_profile(MINIMAL + "apt:\n  packages: [a, b]\n", name="parent.yaml")
    child = write_profile(
        """
        extends: parent.yaml
        apt:
          packages: [c]
        base:
          bootstrap:
            variant: buildd
        """
    )
    profile = load_profile(child, env={}).profile
    assert profile.apt.packages == ["c"]
    assert profile.base.bootstrap.variant == "buildd"
    assert profile.base.bootstrap.suite == "bookworm"  # inherited


def test_extends_cycle_is_an_error(write_profile) -> None:
    write_profile("extends: b.yaml\n", name="a.yaml")
    b = write_profile("extends: a.yaml\n", name="b.yaml")
    with pytest.raises(ConfigError, match="cycle"):
        load_profile(b, env={})


def test_unknown_key_names_file_line_field_and_suggestion(write_profile) -> None:
    path = write_profile(MINIMAL + "verify:\n  emulater: true\n")
    with pytest.raises(ConfigError) as info:
        load_profile(path, env={})
    error = info.value
    assert error.file == str(path.resolve())
    assert error.line == 10
    assert error.field == "verify.emulater"
    assert "unknown field" in error.message
    assert error.hint == "did you mean 'emulator'?"
    assert error.exit_code == 2


def test_error_in_inherited_value_points_at_the_parent(write_profile) -> None:
    parent = write_profile(MINIMAL + "qpulib:\n  mode: turbo\n", name="parent.yaml")
    child = write_profile("extends: parent.yaml\ndescription: child\n")
    with pytest.raises(ConfigError) as info:
        load_profile(child, env={})
    assert info.value.file == str(parent.resolve())
    assert info.value.line == 10
    assert info.value.field == "qpulib.mode"


@pytest.mark.parametrize(
    ("extra", "field", "line", "needle"),
    [
        ("torch:\n  source: pypi\n", "torch", 7, "needs torch.version"),
        ("platform: linux/riscv64\n", "platform", 1, "unknown platform"),
        ("verify:\n  enabled: maybe\n", "verify.enabled", 10, "valid boolean"),
        ("qpulib:\n  commit: abc\n", "qpulib.commit", 10, "40-digit"),
        ("apt:\n  packages: ['g++; rm -rf /']\n", "apt.packages[0]", 10, "not a Debian package"),
        ("image:\n  repository: Bad Name\n", "image.repository", 8, "lowercase"),
    ],
)
def test_bad_values_are_located(write_profile, extra, field, line, needle) -> None:
    # Replace the field's section in MINIMAL, so the bad value is the only one.
    section = extra.split(":", 1)[0]
    replaced = {
        "torch": "torch:\n  source: none\n",
        "image": "image:\n  repository: test/minimal\n",
        "platform": "platform: linux/arm/v7\n",
    }
    text = MINIMAL.replace(replaced.get(section, "\0"), "")
    path = write_profile(extra + text if section == "platform" else text + extra)
    with pytest.raises(ConfigError) as info:
        load_profile(path, env={})
    assert info.value.field == field
    assert info.value.line == line
    assert needle in str(info.value)


def test_missing_required_field(write_profile) -> None:
    path = write_profile("platform: linux/arm64\nbase:\n  image: x\ntorch:\n  source: none\n")
    with pytest.raises(ConfigError) as info:
        load_profile(path, env={})
    assert info.value.field == "image"
    assert "required field is missing" in str(info.value)
    assert info.value.line == 1


def test_duplicate_key_and_bad_yaml(write_profile) -> None:
    with pytest.raises(ConfigError, match="duplicate key") as info:
        load_profile(write_profile("platform: a\nplatform: b\n"), env={})
    assert info.value.line == 2
    with pytest.raises(ConfigError, match="invalid YAML") as info:
        load_profile(write_profile("platform: [unclosed\n"), env={})
    assert info.value.line is not None


def test_set_overrides_with_yaml_values(write_profile) -> None:
    path = write_profile(MINIMAL)
    profile = load_profile(
        path,
        ["verify.emulator=true", "torch.max_jobs=4", "image.tags=[a, b]", "qpulib.enabled=false"],
        env={},
    ).profile
    assert profile.verify.emulator is True
    assert profile.torch.max_jobs == 4
    assert profile.image.tags == ["a", "b"]
    assert profile.qpulib.enabled is False


def test_set_keeps_strings_that_yaml_would_mangle(write_profile) -> None:
    path = write_profile(MINIMAL)
    profile = load_profile(
        path,
        ["torch.source=wheel", "torch.wheel=w.whl", "torch.sha256=" + "0" * 64, "torch.version=1.10"],
        env={},
    ).profile
    assert profile.torch.sha256 == "0" * 64
    assert profile.torch.version == "1.10"


def test_bad_set_is_reported_as_coming_from_the_command_line(write_profile) -> None:
    path = write_profile(MINIMAL)
    with pytest.raises(ConfigError) as info:
        load_profile(path, ["verify.emulator=maybe"], env={})
    assert info.value.file == "--set verify.emulator=maybe"
    with pytest.raises(ConfigError, match=r"FIELD\.PATH=VALUE"):
        load_profile(path, ["novalue"], env={})
    with pytest.raises(ConfigError, match="not a mapping"):
        load_profile(path, ["platform.x=1"], env={})


def test_env_interpolation(write_profile) -> None:
    path = write_profile(
        MINIMAL
        + "registry:\n  password: ${REG_PASS}\n  username: ${REG_USER:-ci}\n"
        + "description: cost $$5\n"
    )
    profile = load_profile(path, env={"REG_PASS": "s3cret"}).profile
    assert profile.registry.password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(profile) and "s3cret" not in profile.model_dump_json()
    assert profile.registry.username == "ci"
    assert profile.description == "cost $5"
    with pytest.raises(ConfigError, match="REG_PASS is not set") as info:
        load_profile(path, env={})
    assert info.value.line == 10 and info.value.field == "registry.password"


def test_relative_paths_resolve_against_their_file_or_cwd(write_profile, tmp_path, monkeypatch) -> None:
    path = write_profile(MINIMAL + "extension:\n  path: ext\nqpulib:\n  path: ${SRC}\n")
    monkeypatch.chdir(tmp_path.parent)
    profile = load_profile(path, env={"SRC": "qsrc"}).profile
    assert profile.extension.path == str(tmp_path / "ext")
    assert profile.qpulib.path == str(tmp_path.parent / "qsrc")


def test_qpulib_src_environment_variable(write_profile, tmp_path) -> None:
    profile = load_profile(write_profile(MINIMAL), env={"RPIBUILD_QPULIB_SRC": str(tmp_path)}).profile
    assert profile.qpulib.path == str(tmp_path)


def test_unknown_profile_name_suggests_a_close_one() -> None:
    with pytest.raises(ConfigError, match="no profile named") as info:
        load_profile("pi3b-arm46", env={})
    assert info.value.hint == "did you mean 'pi3b-arm64'?"


# ---------------------------------------------------------------- property-based

_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8), st.floats(allow_nan=False))
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(
    document=st.dictionaries(
        st.sampled_from(["platform", "base", "torch", "image", "apt", "qpulib", "network", "verify", "junk"]),
        _values,
        max_size=6,
    )
)
def test_any_document_loads_or_fails_with_a_located_config_error(write_profile, document) -> None:
    path = write_profile(yaml.safe_dump(document))
    try:
        load_profile(path, env={})
    except ConfigError as exc:
        assert exc.file is not None
        assert exc.exit_code == 2


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(
    section=st.sampled_from(["torch", "verify", "image", "network", "qpulib"]),
    key=st.from_regex(r"[a-z]{3,10}", fullmatch=True),
)
def test_an_injected_unknown_key_is_named(write_profile, section, key) -> None:
    from rpibuild.config.model import Profile

    annotation = Profile.model_fields[section].annotation
    if key in annotation.model_fields:
        return
    document = yaml.safe_load(MINIMAL)
    document.setdefault(section, {})[key] = 1
    path = write_profile(yaml.safe_dump(document))
    with pytest.raises(ConfigError) as info:
        load_profile(path, env={})
    assert info.value.field == f"{section}.{key}"
    assert info.value.line is not None and info.value.line > 1
    assert Path(info.value.file).name == "profile.yaml"


@pytest.mark.parametrize(
    ("override", "field", "value"),
    [
        ("torch.version=2.9", ("torch", "version"), "2.9"),  # text field: the text typed
        ("torch.version=2", ("torch", "version"), "2"),
        ("image.repository=123", ("image", "repository"), "123"),
        ("torch.max_jobs=4", ("torch", "max_jobs"), 4),  # numeric field: a number
        ("verify.emulator=true", ("verify", "emulator"), True),
        ("image.tags=[dev, '{profile}']", ("image", "tags"), ["dev", "{profile}"]),
    ],
)
def test_set_values_are_typed_by_the_field_they_set(
    override: str, field: tuple[str, str], value: object
) -> None:
    profile = load_profile("pi3b-arm64", [override]).profile
    assert getattr(getattr(profile, field[0]), field[1]) == value


@pytest.mark.parametrize(
    "repository", ["localhost:5000/team/pi", "registry.example/team/pi", "Reg.Example:443/pi"]
)
def test_image_repository_may_name_a_registry_host_with_a_port(repository: str) -> None:
    assert (
        load_profile("pi3b-arm64", [f"image.repository={repository}"]).profile.image.repository == repository
    )


@pytest.mark.parametrize("repository", ["Team/pi", "host:port/pi", "a b", "pi:tag"])
def test_image_repository_refuses_what_is_no_repository(repository: str) -> None:
    with pytest.raises(ConfigError, match=r"image\.repository"):
        load_profile("pi3b-arm64", [f"image.repository={repository}"])


def test_a_parent_profile_is_named_parents_only() -> None:
    with pytest.raises(ConfigError, match="parents only") as caught:
        load_profile("_common")
    assert caught.value.hint and "pi3b-arm64" in caught.value.hint


def test_every_error_keeps_its_did_you_mean(write_profile) -> None:
    path = write_profile("extends: pi3b-arm64\ntorch:\n  verison: 1\n  sorce: pypi\n", "two.yaml")
    with pytest.raises(ConfigError) as caught:
        load_profile(path)
    hint = caught.value.hint or ""
    assert (
        "did you mean 'version'?" in hint
        and "torch.sorce (line 4): unknown field (did you mean 'source'?)" in hint
    )
