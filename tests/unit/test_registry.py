"""The pure parts of rpibuild.publish: references, error classes, backoff, the JSON shape of results."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from rpibuild.cli import cli
from rpibuild.config import Profile, load_profile
from rpibuild.errors import ConfigError, RegistryError
from rpibuild.publish.errors import (
    RegistryAuthError,
    RegistryNotFound,
    RegistryServerError,
    RegistryStorageFull,
    RegistryTLSError,
    RegistryUnreachable,
    backoff_delays,
    classify,
    engine_side,
    with_retries,
)
from rpibuild.publish.registry import PushedImage
from rpibuild.publish.target import (
    Target,
    manifest_target,
    parse_host,
    profile_password,
    push_plan,
    remote_repository,
    split_reference,
    target_for,
)

PROFILE = """\
platform: linux/arm64
base: {{image: scratch}}
torch: {{source: none}}
qpulib: {{enabled: false}}
extension: {{enabled: false}}
image:
  repository: rpibuild/myrasp
  tags: ["{{profile}}", "torch"]
registry:
{registry}
"""


def profile_with(tmp_path: Path, registry: str, env: dict[str, str] | None = None) -> Profile:
    path = tmp_path / "p.yaml"
    path.write_text(PROFILE.format(registry=registry), encoding="utf-8")
    return load_profile(path, env=env or {}).profile


# ---------------------------------------------------------------- references


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("reg.example.com", (None, "reg.example.com")),
        ("reg.example.com:5000/", (None, "reg.example.com:5000")),
        ("https://reg.example.com", ("https", "reg.example.com")),
        ("http://127.0.0.1:5000", ("http", "127.0.0.1:5000")),
    ],
)
def test_parse_host(url: str, expected: tuple[str | None, str]) -> None:
    assert parse_host(url) == expected


@pytest.mark.parametrize("url", ["https://reg.example.com/v2/", "reg/ns", ""])
def test_parse_host_rejects_paths(url: str) -> None:
    with pytest.raises(ConfigError):
        parse_host(url)


def test_namespace_replaces_the_repositorys_first_part() -> None:
    assert remote_repository(Target("r:5000", "team"), "rpibuild/myrasp") == "r:5000/team/myrasp"
    assert remote_repository(Target("r:5000", None), "rpibuild/myrasp") == "r:5000/rpibuild/myrasp"
    assert remote_repository(Target("r", "a/b"), "x") == "r/a/b/x"
    with pytest.raises(ConfigError, match="namespace"):
        remote_repository(Target("r", "Team!"), "x")


def test_push_plan_retags_every_profile_tag(tmp_path: Path) -> None:
    profile = profile_with(tmp_path, "  url: reg.example.com\n  namespace: team")
    target = target_for(profile)
    assert target.base_url == "https://reg.example.com"
    assert push_plan(profile, target) == [
        ("rpibuild/myrasp:p", "reg.example.com/team/myrasp:p"),
        ("rpibuild/myrasp:torch", "reg.example.com/team/myrasp:torch"),
    ]


def test_flags_override_the_profile(tmp_path: Path) -> None:
    profile = profile_with(tmp_path, "  url: reg.example.com\n  namespace: team")
    target = target_for(profile, url="127.0.0.1:5000", namespace="other", insecure=True)
    assert (target.host, target.namespace, target.base_url) == (
        "127.0.0.1:5000",
        "other",
        "http://127.0.0.1:5000",
    )


def test_plain_http_needs_insecure(tmp_path: Path) -> None:
    profile = profile_with(tmp_path, "  url: http://reg.example.com")
    with pytest.raises(ConfigError, match="not marked insecure"):
        target_for(profile)
    assert target_for(profile, insecure=True).insecure


def test_no_registry_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no registry"):
        target_for(profile_with(tmp_path, "  namespace: team"))


def test_split_reference_and_manifest_target() -> None:
    assert split_reference("r:5000/ns/repo:tag") == ("r:5000/ns/repo", "tag")
    with pytest.raises(ConfigError):
        split_reference("r:5000/ns/repo")
    target = Target("r:5000", "team")
    assert manifest_target("myrasp:torch", target) == ("r:5000/team/myrasp", "torch")
    assert manifest_target("r:5000/x/y:t", target) == ("r:5000/x/y", "t")


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("message", "status", "kind"),
    [
        (
            "Get https://r/v2/: dial tcp 127.0.0.1:5000: connect: connection refused",
            None,
            RegistryUnreachable,
        ),
        ("Patch http://r/v2/x/blobs/uploads/1: EOF", None, RegistryUnreachable),
        ("Get https://r/v2/: x509: certificate signed by unknown authority", None, RegistryTLSError),
        ("Get https://r/v2/: http: server gave HTTP response to HTTPS client", None, RegistryTLSError),
        ("[SSL: WRONG_VERSION_NUMBER] wrong version number", None, RegistryTLSError),
        ("unauthorized: authentication required", None, RegistryAuthError),
        ("login attempt to http://r/v2/ failed with status: 401 Unauthorized", None, RegistryAuthError),
        ("denied: requested access to the resource is denied", None, RegistryNotFound),
        ("GET manifest: HTTP 404 NAME_UNKNOWN: repository name not known to registry", 404, RegistryNotFound),
        ("GET manifest a/b:t: HTTP 404 MANIFEST_UNKNOWN: manifest unknown", 404, RegistryNotFound),
        ("write /var/lib/registry/x: no space left on device", None, RegistryStorageFull),
        ("HTTP 507", 507, RegistryStorageFull),
        (
            'upload: HTTP 500 UNKNOWN ({"DriverName": "filesystem", "Enclosed": {"Op": "write", "Err": 28}})',
            500,
            RegistryStorageFull,
        ),
        ("received unexpected HTTP status: 500 Internal Server Error", None, RegistryServerError),
        ("HTTP 503", 503, RegistryServerError),
    ],
)
def test_classify(message: str, status: int | None, kind: type[RegistryError]) -> None:
    error = classify(message, "r:5000", status)
    assert type(error) is kind
    assert error.exit_code == 6
    assert "r:5000" in error.message


def test_tls_hints_name_the_fix() -> None:
    assert "registry.ca_cert" in (classify("x509: certificate signed by unknown authority", "r").hint or "")
    assert "registry.insecure: true" in (classify("wrong version number", "r").hint or "")
    assert "drop registry.insecure" in (
        classify("Client sent an HTTP request to an HTTPS server", "r").hint or ""
    )


def test_unknown_failure_stays_a_plain_registry_error() -> None:
    assert type(classify("something odd")) is RegistryError


# ---------------------------------------------------------------- retries


def test_backoff_schedule_is_exponential_and_capped() -> None:
    assert backoff_delays(0) == []
    assert backoff_delays(4) == [2.0, 4.0, 8.0, 16.0]
    assert backoff_delays(7, base=1, cap=10) == [1, 2, 4, 8, 10, 10, 10]


def test_transient_failures_are_retried_then_reported() -> None:
    slept: list[float] = []
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise RegistryUnreachable("cannot reach r")
        return "ok"

    assert with_retries(flaky, retries=3, base=1, sleep=slept.append) == "ok"
    assert slept == [1, 2]

    def down() -> None:
        raise RegistryServerError("r failed")

    with pytest.raises(RegistryServerError, match=r"after 2 retries"):
        with_retries(down, retries=2, base=1, sleep=slept.append)


def test_permanent_failures_are_not_retried() -> None:
    calls: list[int] = []

    def refused() -> None:
        calls.append(1)
        raise RegistryAuthError("refused")

    with pytest.raises(RegistryAuthError):
        with_retries(refused, retries=5, sleep=lambda _: None)
    assert calls == [1]


# ---------------------------------------------------------------- results


def test_pushed_image_json_shape() -> None:
    assert PushedImage("r/x:t-arm", "sha256:x", ("linux/arm/v7",)).as_dict() == {
        "reference": "r/x:t-arm",
        "digest": "sha256:x",
        "platform": "linux/arm/v7",
    }
    listed = PushedImage("r/x:t", "sha256:y", ("linux/arm/v7", "linux/arm64"))
    assert listed.as_dict()["platform"] == ["linux/arm/v7", "linux/arm64"]


# ---------------------------------------------------------------- credentials


def test_password_from_the_env_var_the_profile_names(tmp_path: Path) -> None:
    profile = profile_with(tmp_path, "  url: r\n  password_env: MY_REG_PW")
    assert profile_password(profile, {"MY_REG_PW": "pw"}) == "pw"
    assert profile_password(profile, {}) is None
    interpolated = profile_with(tmp_path, "  url: r\n  password: ${PW}", env={"PW": "from-env"})
    assert profile_password(interpolated, {}) == "from-env"
    assert "from-env" not in repr(interpolated)  # SecretStr never shows it


def test_password_env_must_be_a_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="NAME of an environment variable"):
        profile_with(tmp_path, "  url: r\n  password_env: 'hunter2!'")


@pytest.mark.parametrize("args", [["login"], ["push"]])
def test_help(args: list[str]) -> None:
    result = CliRunner().invoke(cli, [*args, "--help"])
    assert result.exit_code == 0
    assert "--password" not in result.output.replace("--password-stdin", "")


def test_several_profiles_need_manifest() -> None:
    result = CliRunner().invoke(cli, ["push", "-p", "pi3b-arm64", "-p", "host-emulator"])
    assert isinstance(result.exception, ConfigError)
    assert "--manifest" in str(result.exception)


def test_engine_side_tls_hints_point_at_the_engines_config() -> None:
    plain = engine_side(classify("http: server gave HTTP response to HTTPS client", "r:1"), True, "r:1")
    assert "insecure-registries" in (plain.hint or "")
    untrusted = engine_side(classify("x509: certificate signed by unknown authority", "r:1"), False, "r:1")
    assert "/etc/docker/certs.d/r:1/ca.crt" in (untrusted.hint or "")
    other = engine_side(classify("unauthorized", "r:1"), False, "r:1")
    assert isinstance(other, RegistryAuthError)


def test_tool_messages_are_cut_to_their_cause() -> None:
    """docker and buildx wrap the cause in prefixes and advice lines; the message keeps the cause."""
    daemon = classify(
        "Error response from daemon: login attempt to http://r:1/v2/ failed with status: 401 Unauthorized",
        "r:1",
    )
    assert isinstance(daemon, RegistryAuthError)
    assert (
        daemon.message
        == "r:1 refused the credentials: login attempt to http://r:1/v2/ failed with status: 401 Unauthorized"
    )
    buildx = classify("ERROR: r:1/team/nope:t: not found", "r:1")
    assert (
        isinstance(buildx, RegistryNotFound)
        and buildx.message == "r:1: not found: r:1/team/nope:t: not found"
    )
    no_tty = classify(
        "Authenticating with existing credentials...\n"
        "Error: Cannot perform an interactive login from a non TTY device",
        "r:1",
    )
    assert isinstance(no_tty, RegistryAuthError) and "needs a login" in no_tty.message
    no_auth = classify("ERROR: pull access denied ... authorization failed: no basic auth credentials", "r:1")
    assert isinstance(no_auth, RegistryAuthError) and "needs a login" in no_auth.message
