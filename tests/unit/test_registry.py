"""The pure parts of rpibuild.registry: references, error classes, manifest lists, backoff."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from rpibuild.cli import cli
from rpibuild.config import Profile, load_profile
from rpibuild.errors import ConfigError, RegistryError
from rpibuild.registry import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    PushedImage,
    RegistryAuthError,
    RegistryNotFound,
    RegistryServerError,
    RegistryStorageFull,
    RegistryTLSError,
    RegistryUnreachable,
    Target,
    backoff_delays,
    classify,
    engine_side,
    load_credentials,
    manifest_list,
    manifest_target,
    parse_host,
    profile_password,
    push_plan,
    remote_repository,
    split_reference,
    store_credentials,
    target_for,
    with_retries,
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


# ---------------------------------------------------------------- manifest lists


def _pushed(arch: str, variant: str | None, digest: str) -> PushedImage:
    platform = {"os": "linux", "architecture": arch, **({"variant": variant} if variant else {})}
    return PushedImage(f"r/x:t-{arch}", digest, 525, platform)


def test_manifest_list_json() -> None:
    body = manifest_list(
        [_pushed("arm", "v7", "sha256:" + "a" * 64), _pushed("arm64", None, "sha256:" + "b" * 64)]
    )
    assert body == {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST_LIST,
        "manifests": [
            {
                "mediaType": DOCKER_MANIFEST,
                "size": 525,
                "digest": "sha256:" + "a" * 64,
                "platform": {"os": "linux", "architecture": "arm", "variant": "v7"},
            },
            {
                "mediaType": DOCKER_MANIFEST,
                "size": 525,
                "digest": "sha256:" + "b" * 64,
                "platform": {"os": "linux", "architecture": "arm64"},
            },
        ],
    }
    assert json.loads(json.dumps(body)) == body


def test_manifest_list_rejects_duplicates_and_empty() -> None:
    with pytest.raises(RegistryError, match="two images"):
        manifest_list([_pushed("arm64", None, "sha256:1"), _pushed("arm64", None, "sha256:2")])
    with pytest.raises(RegistryError, match="at least one"):
        manifest_list([])


def test_pushed_image_json_shape() -> None:
    assert _pushed("arm", "v7", "sha256:x").as_dict() == {
        "reference": "r/x:t-arm",
        "digest": "sha256:x",
        "platform": "linux/arm/v7",
    }


# ---------------------------------------------------------------- credentials


def test_credentials_are_stored_as_docker_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "dc"))
    (tmp_path / "dc").mkdir()
    (tmp_path / "dc" / "config.json").write_text(json.dumps({"auths": {"other:1": {"auth": "eDp5"}}, "x": 1}))
    where = store_credentials("r:5000", "user", "pa:ss")
    assert where == str(tmp_path / "dc" / "config.json")
    data = json.loads((tmp_path / "dc" / "config.json").read_text())
    assert data["x"] == 1 and "other:1" in data["auths"]  # the rest of the file is kept
    assert base64.b64decode(data["auths"]["r:5000"]["auth"]).decode() == "user:pa:ss"
    assert (tmp_path / "dc" / "config.json").stat().st_mode & 0o077 == 0
    assert load_credentials("r:5000") == ("user", "pa:ss")
    assert load_credentials("nowhere:1") is None


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


HELPER = """#!/bin/sh
# A docker credential helper speaking docker's protocol, storing into $STORE (test only).
case "$1" in
  store) cat > "$STORE" ;;
  get) read -r server; python3 -c 'import json,os,sys; d=json.load(open(os.environ["STORE"]));
print(json.dumps({"ServerURL": d["ServerURL"], "Username": d["Username"], "Secret": d["Secret"]}))' ;;
  *) exit 1 ;;
esac
"""


def test_a_configured_credential_store_gets_the_secret_not_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-rpibuildtest"
    helper.write_text(HELPER, encoding="utf-8")
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("STORE", str(tmp_path / "store.json"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "dc"))
    (tmp_path / "dc").mkdir()
    (tmp_path / "dc" / "config.json").write_text(json.dumps({"credsStore": "rpibuildtest"}))

    assert store_credentials("r:5000", "user", "hunter2") == "docker-credential-rpibuildtest"
    stored = json.loads((tmp_path / "store.json").read_text())
    assert (stored["ServerURL"], stored["Username"], stored["Secret"]) == ("r:5000", "user", "hunter2")
    config_text = (tmp_path / "dc" / "config.json").read_text()
    assert "hunter2" not in config_text and "aHVudGVyMg" not in config_text  # nor its base64
    assert json.loads(config_text)["auths"] == {"r:5000": {}}
    assert load_credentials("r:5000") == ("user", "hunter2")


def test_engine_side_tls_hints_point_at_the_engines_config() -> None:
    plain = engine_side(
        classify("http: server gave HTTP response to HTTPS client", "r:1"), Target("r:1", insecure=True)
    )
    assert "insecure-registries" in (plain.hint or "")
    untrusted = engine_side(classify("x509: certificate signed by unknown authority", "r:1"), Target("r:1"))
    assert "/etc/docker/certs.d/r:1/ca.crt" in (untrusted.hint or "")
    other = engine_side(classify("unauthorized", "r:1"), Target("r:1"))
    assert isinstance(other, RegistryAuthError)


def test_requests_errors_are_cut_to_their_cause() -> None:
    from rpibuild.registry import _requests_reason

    ssl = Exception(
        "HTTPSConnectionPool(host='127.0.0.1', port=1): Max retries exceeded with url: /v2/ (Caused by "
        "SSLError(SSLError(1, '[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)')))"
    )
    assert _requests_reason(ssl) == "[SSL: WRONG_VERSION_NUMBER] wrong version number"
    verify = Exception(
        "Max retries exceeded (Caused by SSLError(SSLCertVerificationError(1, '[SSL: "
        "CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get local issuer certificate "
        "(_ssl.c:1006)')))"
    )
    assert _requests_reason(verify) == "certificate verify failed: unable to get local issuer certificate"
    refused = Exception(
        "HTTPConnectionPool(host='127.0.0.1', port=1): Max retries exceeded with url: /v2/ (Caused by "
        "NewConnectionError('<urllib3.connection.HTTPConnection object at 0x7f>: Failed to establish a new "
        "connection: [Errno 111] Connection refused'))"
    )
    assert _requests_reason(refused) == "[Errno 111] Connection refused"
    assert type(classify(_requests_reason(refused))) is RegistryUnreachable
