"""login and push against a real registry (Debian's docker-registry, distribution 2.8).

Each fixture starts its own registry on a free 127.0.0.1 port with a config file written
here (htpasswd auth; TLS from a CA made here with openssl), points DOCKER_CONFIG at a temp
dir so no real credentials are touched, and removes every process, file, image and
/etc/docker/certs.d entry it made. The images pushed are tiny real ones, written as a
`docker load` archive with true arm/v7 and arm64 metadata (no hub needed).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from rpibuild.config import load_profile
from rpibuild.config.model import Profile
from rpibuild.engine import Engine
from rpibuild.platforms import get_platform
from rpibuild.publish import oci, tools, transport
from rpibuild.publish.errors import RegistryAuthError, RegistryNotFound, RegistryTLSError, RegistryUnreachable
from rpibuild.publish.registry import LIST_TYPES, push_profile
from rpibuild.publish.registry import login as publish_login
from rpibuild.publish.target import Target, target_for

USER = "pi-builder"
PASSWORD = "s3cret-" + uuid.uuid4().hex[:12]  # unique, so a leak is found by grep
REGISTRY_BIN = "/usr/bin/docker-registry"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
CERTS_D = Path("/etc/docker/certs.d")


# ---------------------------------------------------------------- a real registry


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Registry:
    """One docker-registry process; ``stop``/``start`` keep its storage (a restart)."""

    root: Path
    tls: bool = False
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    ca: Path | None = None
    storage: Path | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    def write_config(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        self.storage = self.storage or self.root / "data"
        self.storage.mkdir(parents=True, exist_ok=True)
        htpasswd = subprocess.run(
            ["htpasswd", "-Bbn", USER, PASSWORD], capture_output=True, text=True, check=True
        ).stdout
        (self.root / "htpasswd").write_text(htpasswd, encoding="utf-8")
        tls = ""
        if self.tls:
            self.ca = make_tls(self.root)
            tls = (
                f"  tls:\n    certificate: {self.root / 'server.crt'}\n    key: {self.root / 'server.key'}\n"
            )
        config = self.root / "config.yml"
        config.write_text(
            textwrap.dedent(
                f"""\
                version: 0.1
                log:
                  level: info
                storage:
                  filesystem:
                    rootdirectory: {self.storage}
                http:
                  addr: {self.host}
                  secret: {uuid.uuid4().hex}
                """
            )
            + tls
            + textwrap.dedent(
                f"""\
                auth:
                  htpasswd:
                    realm: rpibuild-test
                    path: {self.root / "htpasswd"}
                """
            ),
            encoding="utf-8",
        )
        return config

    def start(self) -> None:
        log = (self.root / "registry.log").open("ab")
        self.process = subprocess.Popen(
            [REGISTRY_BIN, "serve", str(self.root / "config.yml")], stdout=log, stderr=log
        )
        log.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"registry died: {(self.root / 'registry.log').read_text()[-2000:]}")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.1)
        raise RuntimeError("registry did not listen within 20 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)  # as abrupt as a crash
            self.process.wait(timeout=10)
        self.process = None

    def log_text(self) -> str:
        return (self.root / "registry.log").read_text(errors="replace")


def make_tls(root: Path) -> Path:
    """A CA and a server certificate for 127.0.0.1 (SAN), made with the openssl CLI."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    ca_key, ca_crt = root / "ca.key", root / "ca.crt"
    key, csr, crt, ext = root / "server.key", root / "server.csr", root / "server.crt", root / "san.ext"
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=rpibuild test CA",
            "-keyout", str(ca_key), "-out", str(ca_crt))  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", str(key),
            "-out", str(csr))  # fmt: skip
    ext.write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n", encoding="utf-8")
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key), "-CAcreateserial",
            "-days", "2", "-extfile", str(ext), "-out", str(crt))  # fmt: skip
    return ca_crt


@pytest.fixture(autouse=True)
def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Credentials go to a temp docker config, never the user's ~/.docker."""
    directory = tmp_path / "docker-config"
    monkeypatch.setenv("DOCKER_CONFIG", str(directory))
    return directory


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    """A plain-HTTP registry with htpasswd auth (127.0.0.1 is insecure-allowed by the engine)."""
    reg = Registry(tmp_path / "registry")
    reg.write_config()
    reg.start()
    yield reg
    reg.stop()


@pytest.fixture
def tls_registry(tmp_path: Path) -> Iterator[Registry]:
    """An HTTPS registry with a certificate from a CA made here; the engine trusts it via certs.d."""
    reg = Registry(tmp_path / "tls-registry", tls=True)
    reg.write_config()
    made_certs_d = not CERTS_D.exists()
    certs = CERTS_D / reg.host
    certs.mkdir(parents=True, exist_ok=False)
    assert reg.ca is not None
    shutil.copy(reg.ca, certs / "ca.crt")
    try:
        reg.start()
        yield reg
    finally:
        reg.stop()
        shutil.rmtree(certs, ignore_errors=True)
        if made_certs_d:
            with contextlib.suppress(OSError):
                CERTS_D.rmdir()  # only if empty: another test may have an entry there now


# ---------------------------------------------------------------- tiny real images


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def load_image(
    engine: Engine,
    reference: str,
    platform: str,
    tmp: Path,
    payload_mib: int = 0,
    files: dict[str, bytes] | None = None,
    labels: dict[str, str] | None = None,
) -> str:
    """``docker load`` a one-layer image with the given platform's config; returns its id.

    The layer holds a unique marker (so every test pushes new content) and optionally
    ``payload_mib`` of random bytes, enough to make a push take seconds.
    """
    target = get_platform(platform)
    layer_buf = io.BytesIO()
    with tarfile.open(fileobj=layer_buf, mode="w") as layer:
        _add(layer, "etc/rpibuild-test", f"{reference} {uuid.uuid4()}\n".encode())
        if payload_mib:
            _add(layer, "payload.bin", os.urandom(payload_mib << 20))
        for name, data in (files or {}).items():
            _add(layer, name, data)
    layer_bytes = layer_buf.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    config = {
        "architecture": target.architecture,
        "os": target.os,
        **({"variant": target.variant} if target.variant else {}),
        "created": "1970-01-01T00:00:00Z",
        "config": {"Cmd": ["/bin/true"], "Labels": {"io.rpibuild.test": "registry", **(labels or {})}},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "rpibuild registry test"}],
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    archive = tmp / f"image-{uuid.uuid4().hex[:8]}.tar"
    with tarfile.open(archive, "w") as tar:
        _add(tar, config_name, config_bytes)
        _add(tar, f"{diff_id[7:]}/layer.tar", layer_bytes)
        manifest = [{"Config": config_name, "RepoTags": [reference], "Layers": [f"{diff_id[7:]}/layer.tar"]}]
        _add(tar, "manifest.json", json.dumps(manifest).encode())
    try:
        engine.load(archive)
    finally:
        archive.unlink()
    info = engine.image(reference)
    assert info is not None and info.platform == target.name
    return info.id


@pytest.fixture
def images(engine: Engine) -> Iterator[list[str]]:
    """Image ids a test made; each is removed (with all its tags) at the end."""
    made: list[str] = []
    yield made
    for image_id in made:
        engine.remove_image(image_id, force=True)


PROFILE = """\
platform: {platform}
base:
  image: scratch
torch:
  source: none
qpulib:
  enabled: false
extension:
  enabled: false
verify:
  enabled: false
image:
  repository: rpibuild-test/{name}
  tags: ["{{profile}}", "t2"]
registry:
  url: {url}
  namespace: team
  insecure: {insecure}
  username: {user}
  password_env: RPIBUILD_TEST_REGISTRY_PASSWORD
"""


def write_profile(tmp: Path, name: str, platform: str, reg: Registry, *, ca: bool = False) -> Path:
    path = tmp / f"{name}.yaml"
    text = PROFILE.format(
        platform=platform, name=name, url=reg.host, insecure=str(not reg.tls).lower(), user=USER
    )
    if ca:
        text += f"  ca_cert: {reg.ca}\n"
    path.write_text(text, encoding="utf-8")
    return path


def make_profile_image(
    engine: Engine, images: list[str], tmp: Path, reg: Registry, name: str, platform: str, **kw: object
) -> tuple[Path, Profile, str]:
    path = write_profile(tmp, name, platform, reg, ca=bool(kw.pop("ca", False)))
    profile = load_profile(path, env={}).profile
    image_id = load_image(engine, f"rpibuild-test/{name}:{name}", platform, tmp, **kw)  # type: ignore[arg-type]
    images.append(image_id)
    engine.tag(image_id, f"rpibuild-test/{name}:t2")
    return path, profile, image_id


def rpibuild(
    *args: str, stdin: str | None = None, password: bool = False
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if password:
        env["RPIBUILD_TEST_REGISTRY_PASSWORD"] = PASSWORD
    return subprocess.run(
        [sys.executable, "-m", "rpibuild", *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )


def login(reg: Registry, *extra: str) -> None:
    result = rpibuild("login", reg.host, "-u", USER, "--password-stdin", *extra, stdin=PASSWORD + "\n")
    assert result.returncode == 0, result.stderr
    assert PASSWORD not in result.stdout + result.stderr


def remote_tags(engine: Engine, host: str) -> list[str]:
    """Every local tag that names the test registry: must be none after a push."""
    return [t for image in engine.client.images.list() for t in image.tags if t.startswith(host + "/")]


# ---------------------------------------------------------------- tests


def test_login_stores_credentials_like_docker_and_never_prints_them(
    registry: Registry, docker_config: Path
) -> None:
    login(registry, "--insecure")
    config = json.loads((docker_config / "config.json").read_text())
    assert set(config["auths"]) == {registry.host}
    assert oct((docker_config / "config.json").stat().st_mode & 0o777) == "0o600"
    # The real docker CLI reads what we stored: it can list the registry's catalog via login state.
    check = subprocess.run(
        ["docker", "login", registry.host],
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert check.returncode == 0, check.stderr  # "Login Succeeded" from the stored credentials
    assert PASSWORD not in registry.log_text()
    for log in (Path("/var/log/dockerd.log"), Path("/var/log/rpibuild-dockerd.log")):
        if log.is_file():
            assert PASSWORD not in log.read_text(errors="replace")
    for path in (
        Path(os.environ["RPIBUILD_CACHE"]).rglob("*") if Path(os.environ["RPIBUILD_CACHE"]).exists() else []
    ):
        if path.is_file():
            assert PASSWORD not in path.read_text(errors="replace")


def test_wrong_password_is_refused_with_the_auth_error(registry: Registry, docker_config: Path) -> None:
    result = rpibuild(
        "login", registry.host, "-u", USER, "--password-stdin", "--insecure", stdin="wrong-pass\n"
    )
    assert result.returncode == 6
    assert "refused the credentials" in result.stderr
    assert "wrong-pass" not in result.stderr
    assert not (docker_config / "config.json").exists()


def test_login_reads_the_password_from_the_env_var_named_in_the_profile(
    engine: Engine, images: list[str], tmp_path: Path, registry: Registry, docker_config: Path
) -> None:
    path = write_profile(tmp_path, "envlogin", "linux/arm64", registry)
    result = rpibuild("login", "-p", str(path), password=True)
    assert result.returncode == 0, result.stderr
    assert registry.host in json.loads((docker_config / "config.json").read_text())["auths"]


def test_push_pull_back_digest_equal(
    engine: Engine, images: list[str], tmp_path: Path, registry: Registry, docker_config: Path
) -> None:
    path, _, image_id = make_profile_image(engine, images, tmp_path, registry, "armv7img", "linux/arm/v7")
    login(registry, "--insecure")
    result = rpibuild("push", "-p", str(path), "--json")
    assert result.returncode == 0, result.stderr
    pushed = json.loads(result.stdout)
    refs = [p["reference"] for p in pushed]
    assert refs == [f"{registry.host}/team/armv7img:armv7img", f"{registry.host}/team/armv7img:t2"]
    assert all(p["platform"] == "linux/arm/v7" for p in pushed)
    assert pushed[0]["digest"] == pushed[1]["digest"]
    assert remote_tags(engine, registry.host) == []  # temporary tags gone

    # Pull it back with the real docker CLI and the credentials login stored.
    pull = subprocess.run(
        ["docker", "pull", "--platform", "linux/arm/v7", refs[0]], capture_output=True, text=True, check=False
    )
    assert pull.returncode == 0, pull.stderr
    try:
        assert pushed[0]["digest"] in pull.stdout
        info = engine.image(refs[0])
        assert info is not None and info.id == image_id
        assert f"{registry.host}/team/armv7img@{pushed[0]['digest']}" in engine.repo_digests(refs[0])
    finally:
        engine.untag(refs[0])
    assert PASSWORD not in registry.log_text()
    history = subprocess.run(["docker", "history", "--no-trunc", image_id], capture_output=True, text=True)
    assert PASSWORD not in history.stdout


def test_push_without_login_is_an_auth_error(
    engine: Engine, images: list[str], tmp_path: Path, registry: Registry
) -> None:
    path, _, _ = make_profile_image(engine, images, tmp_path, registry, "nologin", "linux/arm64")
    result = rpibuild("push", "-p", str(path))
    assert result.returncode == 6
    assert "needs a login" in result.stderr
    assert remote_tags(engine, registry.host) == []


def test_plain_http_only_when_the_profile_or_flag_says_so(
    engine: Engine, images: list[str], tmp_path: Path, registry: Registry
) -> None:
    result = rpibuild("login", registry.host, "-u", USER, "--password-stdin", stdin=PASSWORD)
    assert result.returncode == 6
    assert "TLS with" in result.stderr
    assert "registry.insecure: true" in result.stderr


def test_unreachable_registry_is_reported_as_such(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    result = rpibuild("login", f"127.0.0.1:{port}", "-u", USER, "--password-stdin", "--insecure", stdin="x")
    assert result.returncode == 6
    assert f"cannot reach 127.0.0.1:{port}" in result.stderr


def test_tls_registry_needs_its_ca_and_then_pushes(
    engine: Engine, images: list[str], tmp_path: Path, tls_registry: Registry, docker_config: Path
) -> None:
    untrusted = rpibuild("login", tls_registry.host, "-u", USER, "--password-stdin", stdin=PASSWORD)
    assert untrusted.returncode == 6
    assert "TLS with" in untrusted.stderr and "registry.ca_cert" in untrusted.stderr
    assert tls_registry.ca is not None
    login(tls_registry, "--ca-cert", str(tls_registry.ca))

    path, _, _ = make_profile_image(engine, images, tmp_path, tls_registry, "tlsimg", "linux/arm64", ca=True)
    result = rpibuild("push", "-p", str(path), "--json")
    assert result.returncode == 0, result.stderr
    pushed = json.loads(result.stdout)
    assert [p["platform"] for p in pushed] == ["linux/arm64", "linux/arm64"]
    assert remote_tags(engine, tls_registry.host) == []


def test_registry_killed_mid_push_then_restarted(
    engine: Engine, images: list[str], tmp_path: Path, registry: Registry, docker_config: Path
) -> None:
    """Kill the registry while layers upload; it comes back 2 s later: the push completes."""
    _, profile, image_id = make_profile_image(
        engine, images, tmp_path, registry, "bigimg", "linux/arm64", payload_mib=96
    )
    login(registry, "--insecure")
    events: list[str] = []
    restarter: list[threading.Timer] = []

    def on_progress(line: str) -> None:
        events.append(line)
        if not restarter and "Pushing" in line:
            registry.stop()
            timer = threading.Timer(2.0, registry.start)
            timer.start()
            restarter.append(timer)

    target = target_for(profile)
    try:
        pushed = push_profile(engine, profile, target, retries=4, retry_base=1.0, on_progress=on_progress)
    finally:
        for timer in restarter:
            timer.join()
    assert restarter, "the push finished before it could be interrupted"
    assert any("; retry 1/4 in" in e for e in events), events[-20:]  # rpibuild's own retry ran
    assert [p.platform_name for p in pushed] == ["linux/arm64", "linux/arm64"]
    # What the registry now serves is exactly the local image.
    auth = (USER, PASSWORD)
    manifest = requests.get(
        f"{registry.url}/v2/team/bigimg/manifests/t2",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
        auth=auth,
        timeout=30,
    )
    assert manifest.headers["Docker-Content-Digest"] == pushed[1].digest
    assert manifest.json()["config"]["digest"] == image_id
    assert remote_tags(engine, registry.host) == []


def test_registry_gone_for_good_fails_clearly_and_leaves_nothing_tagged(
    engine: Engine, images: list[str], tmp_path: Path, registry: Registry, docker_config: Path
) -> None:
    _, profile, _ = make_profile_image(
        engine, images, tmp_path, registry, "goneimg", "linux/arm64", payload_mib=96
    )
    login(registry, "--insecure")
    killed: list[bool] = []

    def on_progress(line: str) -> None:
        if not killed and "Pushing" in line:
            registry.stop()
            killed.append(True)

    started = time.monotonic()
    with pytest.raises(RegistryUnreachable) as caught:
        push_profile(engine, profile, target_for(profile), retries=1, retry_base=0.5, on_progress=on_progress)
    assert killed
    assert f"cannot reach {registry.host}" in caught.value.message
    assert "after 1 retries" in caught.value.message
    assert remote_tags(engine, registry.host) == []
    assert time.monotonic() - started < 120


def test_manifest_list_of_two_platforms(
    engine: Engine, images: list[str], tmp_path: Path, registry: Registry, docker_config: Path
) -> None:
    armv7, _, _ = make_profile_image(engine, images, tmp_path, registry, "multi7", "linux/arm/v7")
    arm64, _, arm64_id = make_profile_image(engine, images, tmp_path, registry, "multi64", "linux/arm64")
    login(registry, "--insecure")
    result = rpibuild("push", "-p", str(armv7), "-p", str(arm64), "--manifest", "myrasp:torch", "--json")
    assert result.returncode == 0, result.stderr
    listed, *members = json.loads(result.stdout)
    assert listed["reference"] == f"{registry.host}/team/myrasp:torch"
    assert listed["platform"] == ["linux/arm/v7", "linux/arm64"]
    assert [m["reference"] for m in members] == [
        f"{registry.host}/team/myrasp:torch-armv7",
        f"{registry.host}/team/myrasp:torch-arm64",
    ]

    response = requests.get(
        f"{registry.url}/v2/team/myrasp/manifests/torch",
        headers={"Accept": ", ".join(LIST_TYPES)},
        auth=(USER, PASSWORD),
        timeout=30,
    )
    assert response.status_code == 200
    assert response.headers["Docker-Content-Digest"] == listed["digest"]
    body = response.json()
    assert body["mediaType"] == "application/vnd.docker.distribution.manifest.list.v2+json"
    platforms = {(m["platform"]["architecture"], m["platform"].get("variant")): m for m in body["manifests"]}
    assert set(platforms) == {("arm", "v7"), ("arm64", None)}
    assert platforms[("arm", "v7")]["digest"] == members[0]["digest"]

    # The engine resolves the list to the right platform: pulling arm64 gets the arm64 image.
    pulled = subprocess.run(
        ["docker", "pull", "--platform", "linux/arm64", listed["reference"]], capture_output=True, text=True
    )
    assert pulled.returncode == 0, pulled.stderr
    try:
        info = engine.image(listed["reference"])
        assert info is not None and info.id == arm64_id
    finally:
        engine.untag(listed["reference"])
    assert remote_tags(engine, registry.host) == []


def test_doctor_checks_the_registry_and_its_stored_credentials(
    tmp_path: Path, registry: Registry, docker_config: Path
) -> None:
    path = write_profile(tmp_path, "doc", "linux/arm64", registry)

    def registry_check() -> dict[str, object]:
        result = rpibuild("doctor", "-p", str(path), "--json")
        return {c["name"]: c for c in json.loads(result.stdout)}["registry"]

    before = registry_check()
    assert before["ok"] is False and "needs a login" in str(before["detail"])
    login(registry, "--insecure")
    after = registry_check()
    assert after["ok"] is True, after
    assert "credentials accepted" in str(after["detail"])
    registry.stop()
    gone = registry_check()
    assert gone["ok"] is False and "cannot reach" in str(gone["detail"])


def test_auth_error_class_for_wrong_credentials_in_process(registry: Registry, docker_config: Path) -> None:
    with pytest.raises(RegistryAuthError):
        publish_login(Target(registry.host, insecure=True), USER, "nope")
    assert not (docker_config / "config.json").exists()


def test_tls_error_class_in_process(tls_registry: Registry) -> None:
    with pytest.raises(RegistryTLSError) as caught:
        transport.check(Target(tls_registry.host))
    assert "registry.ca_cert" in (caught.value.hint or "")
    assert tls_registry.ca is not None
    transport.check(Target(tls_registry.host, ca_cert=str(tls_registry.ca)))  # trusted with its CA


@pytest.fixture
def small_registry(tmp_path: Path) -> Iterator[Registry]:
    """A registry whose storage is an 8 MiB tmpfs: a bigger push fills its disk."""
    storage = tmp_path / "small-storage"
    storage.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(storage)], check=True)
    try:
        reg = Registry(tmp_path / "small-registry", storage=storage)
        reg.write_config()
        reg.start()
        try:
            yield reg
        finally:
            reg.stop()
    finally:
        subprocess.run(["umount", str(storage)], check=False)


def test_registry_disk_full_is_reported_as_such(
    engine: Engine, images: list[str], tmp_path: Path, small_registry: Registry, docker_config: Path
) -> None:
    path, _, _ = make_profile_image(
        engine, images, tmp_path, small_registry, "fullimg", "linux/arm64", payload_mib=24
    )
    login(small_registry, "--insecure")
    result = rpibuild("push", "-p", str(path), "--retries", "0")
    assert result.returncode == 6
    assert "has no space left" in result.stderr
    assert "free space or raise the quota" in result.stderr
    assert remote_tags(engine, small_registry.host) == []


def test_missing_repository_is_reported_as_such(registry: Registry, docker_config: Path) -> None:
    login(registry, "--insecure")
    with pytest.raises(RegistryNotFound) as caught:
        oci.manifest(Target(registry.host, insecure=True), "team/never-pushed", "t")
    assert "not found" in caught.value.message
    assert "MANIFEST_UNKNOWN" in caught.value.message  # distribution 2.8's answer for an unknown repo
    assert caught.value.exit_code == 6


def test_oras_reads_fail_as_registry_errors(tls_registry: Registry) -> None:
    """A read through the oras session names the cause (exit 6), never a raw requests error."""
    with pytest.raises(RegistryUnreachable) as gone:
        oci.manifest(Target(f"127.0.0.1:{free_port()}", insecure=True), "team/x", "t")
    assert gone.value.exit_code == 6
    with pytest.raises(RegistryTLSError) as untrusted:
        oci.manifest(Target(tls_registry.host), "team/x", "t")
    assert "registry.ca_cert" in (untrusted.value.hint or "")


HELPER = """#!/bin/sh
# A docker credential helper speaking docker's protocol, storing into $STORE (test only).
case "$1" in
  store) cat > "$STORE" ;;
  get) read -r server; [ -f "$STORE" ] || { echo "credentials not found in native keychain"; exit 1; }
       python3 -c 'import json,os; d=json.load(open(os.environ["STORE"]));
print(json.dumps({"ServerURL": d["ServerURL"], "Username": d["Username"], "Secret": d["Secret"]}))' ;;
  erase) rm -f "$STORE" ;;
  list) echo "{}" ;;
  *) exit 1 ;;
esac
"""


def test_a_configured_credential_store_gets_the_secret_not_the_file(
    registry: Registry, docker_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docker login (which rpibuild login calls) hands the secret to the helper config.json names."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-rpibuildtest"
    helper.write_text(HELPER, encoding="utf-8")
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("STORE", str(tmp_path / "store.json"))
    docker_config.mkdir()
    (docker_config / "config.json").write_text(json.dumps({"credsStore": "rpibuildtest"}))

    result = rpibuild("login", registry.host, "-u", USER, "--password-stdin", "--insecure", stdin=PASSWORD)
    assert result.returncode == 0, result.stderr
    assert "docker-credential-rpibuildtest" in result.stderr
    stored = json.loads((tmp_path / "store.json").read_text())
    assert (stored["Username"], stored["Secret"]) == (USER, PASSWORD)
    config_text = (docker_config / "config.json").read_text()
    assert PASSWORD not in config_text
    assert base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode() not in config_text
    tools.login_stored(registry.host)  # docker reads it back through the helper


def test_push_prints_references_with_digests(
    engine: Engine, images: list[str], tmp_path: Path, registry: Registry, docker_config: Path
) -> None:
    path, _, _ = make_profile_image(engine, images, tmp_path, registry, "humanimg", "linux/arm64")
    login(registry, "--insecure")
    result = rpibuild("push", "-p", str(path))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split()
    assert [line.split("@")[0] for line in lines] == [
        f"{registry.host}/team/humanimg:humanimg",
        f"{registry.host}/team/humanimg:t2",
    ]
    assert all(line.split("@")[1].startswith("sha256:") for line in lines)
    assert "pushed" in result.stderr and "linux/arm64" in result.stderr


class _TokenRegistry:
    """A stand-in for a cloud registry's token auth (no such service runs here): /v2/ answers
    401 with a Bearer challenge, /token trades Basic credentials for a scoped token."""

    def __init__(self) -> None:
        import http.server

        outer = self
        self.scopes: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep pytest output clean
                pass

            def _send(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(code)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not getattr(self, "_head", False):
                    self.wfile.write(body)

            def do_HEAD(self) -> None:  # buildx asks HEAD first; the same answer without a body
                self._head = True
                self.do_GET()

            def do_GET(self) -> None:
                from urllib.parse import parse_qs, urlsplit

                url = urlsplit(self.path)
                auth = self.headers.get("Authorization", "")
                if url.path == "/token":
                    good = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
                    if auth != good:
                        return self._send(401, b'{"details":"incorrect username or password"}')
                    scope = parse_qs(url.query).get("scope", [""])[0]
                    outer.scopes.append(scope)
                    return self._send(200, json.dumps({"token": f"tok:{scope}"}).encode())
                if not auth.startswith("Bearer tok:"):
                    realm = f"http://127.0.0.1:{outer.port}/token"
                    challenge = f'Bearer realm="{realm}",service="test"'
                    if url.path.startswith("/v2/team/"):
                        repo = url.path.split("/manifests/")[0].removeprefix("/v2/")
                        challenge += f',scope="repository:{repo}:pull"'
                    return self._send(401, b"{}", {"WWW-Authenticate": challenge})
                if url.path == "/v2/":
                    return self._send(200, b"{}")
                if url.path == "/v2/team/app/manifests/t" and auth == "Bearer tok:repository:team/app:pull":
                    body = b'{"schemaVersion": 2, "mediaType": "' + DOCKER_MANIFEST.encode() + b'"}'
                    digest = "sha256:" + hashlib.sha256(body).hexdigest()
                    return self._send(
                        200, body, {"Docker-Content-Digest": digest, "Content-Type": DOCKER_MANIFEST}
                    )
                return self._send(
                    404, b'{"errors": [{"code": "NAME_UNKNOWN", "message": "repository name not known"}]}'
                )

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def token_registry() -> Iterator[_TokenRegistry]:
    server = _TokenRegistry()
    yield server
    server.close()


def test_bearer_token_auth_as_cloud_registries_use(
    token_registry: _TokenRegistry, docker_config: Path
) -> None:
    """docker login and oras follow the token flow; rpibuild only classifies what they say."""
    host = f"127.0.0.1:{token_registry.port}"
    target = Target(host, insecure=True)
    with pytest.raises(RegistryAuthError):
        publish_login(target, USER, "wrong")
    publish_login(target, USER, PASSWORD)
    raw = oci.manifest(target, "team/app", "t")
    assert json.loads(raw)["mediaType"] == DOCKER_MANIFEST
    with pytest.raises(RegistryNotFound):
        oci.manifest(target, "team/other", "t")
    assert "repository:team/app:pull" in token_registry.scopes


# ---------------------------------------------------------------- build --push / --tag


def test_build_push_with_a_tag_pushes_exactly_that_reference(
    engine: Engine, images: list[str], tmp_path: Path, registry: Registry, docker_config: Path
) -> None:
    """What `rpibuild build --push -t myapp:v1` does once its build passed (a NAME without a
    registry goes to registry.url/namespace)."""
    from rpibuild.publish.release import publish_built

    _, profile, image_id = make_profile_image(engine, images, tmp_path, registry, "tagimg", "linux/arm64")
    login(registry, "--insecure")
    pushed = publish_built(engine, [(profile, "rpibuild-test/tagimg:tagimg")], ["myapp:v1"], retries=0)
    assert [p.reference for p in pushed] == [f"{registry.host}/team/myapp:v1"]
    manifest = requests.get(
        f"{registry.url}/v2/team/myapp/manifests/v1",
        headers={"Accept": DOCKER_MANIFEST},
        auth=(USER, PASSWORD),
        timeout=30,
    )
    assert manifest.headers["Docker-Content-Digest"] == pushed[0].digest
    assert manifest.json()["config"]["digest"] == image_id
    assert remote_tags(engine, registry.host) == []


def test_build_push_of_two_profiles_makes_one_multi_platform_tag(
    engine: Engine, images: list[str], tmp_path: Path, registry: Registry, docker_config: Path
) -> None:
    """`rpibuild build -p armv7 -p arm64 --push --tag REG/NAME:TAG`, after both builds passed."""
    from rpibuild.publish.release import publish_built

    _, armv7, _ = make_profile_image(engine, images, tmp_path, registry, "bp7", "linux/arm/v7")
    _, arm64, arm64_id = make_profile_image(engine, images, tmp_path, registry, "bp64", "linux/arm64")
    login(registry, "--insecure")
    reference = f"{registry.host}/team/pi:torch"
    built = [(armv7, "rpibuild-test/bp7:bp7"), (arm64, "rpibuild-test/bp64:bp64")]
    listed, *members = publish_built(engine, built, [reference], retries=0)
    assert listed.reference == reference
    assert listed.platforms == ("linux/arm/v7", "linux/arm64")
    assert [m.reference for m in members] == [f"{reference}-armv7", f"{reference}-arm64"]
    body = requests.get(
        f"{registry.url}/v2/team/pi/manifests/torch",
        headers={"Accept": ", ".join(LIST_TYPES)},
        auth=(USER, PASSWORD),
        timeout=30,
    )
    assert body.headers["Docker-Content-Digest"] == listed.digest
    assert {m["digest"] for m in body.json()["manifests"]} == {m.digest for m in members}
    pulled = subprocess.run(["docker", "pull", "--platform", "linux/arm64", reference], capture_output=True)
    assert pulled.returncode == 0, pulled.stderr
    try:
        info = engine.image(reference)
        assert info is not None and info.id == arm64_id
    finally:
        engine.untag(reference)


# ---------------------------------------------------------------- SBOM


def test_push_attaches_an_sbom_that_lists_every_dpkg_package(
    engine: Engine, images: list[str], tmp_path: Path, registry: Registry, docker_config: Path
) -> None:
    """The image carries this host's real dpkg database and some DEP-5 copyright files; the SBOM
    read back from the registry (referrers tag schema: distribution 2.8 has no referrers API)
    lists every package dpkg itself calls installed, with the licences the files declare."""
    from rpibuild.publish import attach

    status = Path("/var/lib/dpkg/status").read_bytes()
    docs = sorted(Path("/usr/share/doc").glob("*/copyright"))
    dep5 = [p for p in docs if p.read_text(errors="replace").startswith("Format:")][:5]
    assert dep5, "this host has no machine-readable copyright file to test with"
    files = {"var/lib/dpkg/status": status}
    files.update({f"usr/share/doc/{p.parent.name}/copyright": p.read_bytes() for p in dep5})
    path = write_profile(tmp_path, "sbomimg", "linux/arm64", registry)
    image_id = load_image(engine, "rpibuild-test/sbomimg:sbomimg", "linux/arm64", tmp_path, files=files)
    images.append(image_id)
    engine.tag(image_id, "rpibuild-test/sbomimg:t2")
    login(registry, "--insecure")

    result = rpibuild("push", "-p", str(path), "--json")
    assert result.returncode == 0, result.stderr
    pushed = json.loads(result.stdout)
    assert pushed[0]["sbom"] == pushed[1]["sbom"]  # one SBOM for the one image both tags name

    admin = tmp_path / "dpkg"
    admin.mkdir()
    (admin / "status").write_bytes(status)
    query = subprocess.run(
        ["dpkg-query", f"--admindir={admin}", "-W", "-f", "${db:Status-Abbrev}|${Package}\\n"],
        capture_output=True,
        text=True,
        check=True,
    )
    installed = {
        name for abbrev, name in (line.split("|") for line in query.stdout.splitlines()) if abbrev[1:2] == "i"
    }
    assert len(installed) > 50

    target = Target(registry.host, insecure=True)
    descriptors = attach.referrers(target, "team/sbomimg", pushed[0]["digest"])
    assert [d["digest"] for d in descriptors] == [pushed[0]["sbom"]]
    document = attach.fetch_sbom(target, "team/sbomimg", pushed[0]["digest"])
    assert document is not None and document["bomFormat"] == "CycloneDX"
    components = {c["name"]: c for c in document["components"] if c.get("purl", "").startswith("pkg:deb/")}
    assert installed <= set(components), sorted(installed - set(components))[:10]
    for doc in dep5:
        licences = components[doc.parent.name].get("licenses") if doc.parent.name in components else None
        if doc.parent.name in installed:
            assert licences, doc.parent.name
    # The tag-schema fallback is what `oras discover` reads on a registry without the referrers API.
    index = requests.get(
        f"{registry.url}/v2/team/sbomimg/manifests/{pushed[0]['digest'].replace(':', '-')}",
        headers={"Accept": "application/vnd.oci.image.index.v1+json"},
        auth=(USER, PASSWORD),
        timeout=30,
    ).json()
    assert index["manifests"][0]["artifactType"] == "application/vnd.cyclonedx+json"
    artifact = requests.get(
        f"{registry.url}/v2/team/sbomimg/manifests/{pushed[0]['sbom']}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        auth=(USER, PASSWORD),
        timeout=30,
    ).json()
    assert artifact["subject"]["digest"] == pushed[0]["digest"]


# ---------------------------------------------------------------- the image group


def test_image_ls_and_rm_see_only_rpibuilds_images(engine: Engine, images: list[str], tmp_path: Path) -> None:
    """`image ls` lists by the io.rpibuild.profile label with the versions from the labels;
    `image rm` removes such tags and refuses an image rpibuild did not build."""
    profile = f"lsprofile-{uuid.uuid4().hex[:8]}"
    labels = {
        "io.rpibuild.profile": profile,
        "io.rpibuild.torch.version": "2.9.1",
        "io.rpibuild.qpulib.commit": "c2658a55f2b21de6f3270c86c227011b10d447c2",
    }
    ours = f"rpibuild-test/{profile}:{profile}"
    image_id = load_image(engine, ours, "linux/arm/v7", tmp_path, labels=labels)
    images.append(image_id)
    engine.tag(image_id, f"rpibuild-test/{profile}:extra")
    foreign = load_image(engine, f"rpibuild-test/foreign-{profile}:x", "linux/arm64", tmp_path)
    images.append(foreign)

    listed = rpibuild("image", "ls", "-p", profile, "--json")
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)
    assert row["id"] == image_id and row["platform"] == "linux/arm/v7"
    assert row["tags"] == [f"rpibuild-test/{profile}:extra", ours]
    assert (row["torch"], row["qpulib"]) == ("2.9.1", labels["io.rpibuild.qpulib.commit"])
    assert row["size"] > 0
    every = json.loads(rpibuild("image", "ls", "--json").stdout)
    assert image_id in {r["id"] for r in every} and foreign not in {r["id"] for r in every}

    refused = rpibuild("image", "rm", ours, f"rpibuild-test/foreign-{profile}:x")
    assert refused.returncode == 8 and "not built by rpibuild" in refused.stderr
    assert engine.image(ours) is not None  # checked first: nothing removed
    removed = rpibuild("image", "rm", "-p", profile)
    assert removed.returncode == 0, removed.stderr
    assert engine.image(ours) is None and engine.image(f"rpibuild-test/{profile}:extra") is None
    assert engine.image(f"rpibuild-test/foreign-{profile}:x") is not None
