"""Credentials in every URL field and setting: used where the protocol allows, refused where
they would reach a command line or a layer, and never shown, whatever the command or path.

A local web server asks for Basic authorization with a sentinel password and serves a small
QPULib-like archive; each URL-bearing field goes through sources fetch, render, plan, build
(which stops early, at its pinned sources) and doctor, and every output and log is grepped.
"""

from __future__ import annotations

import base64
import http.server
import io
import json
import os
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from rpibuild.build.sources import tree_sha256

SECRET = "Sentinel-pa55-9d1e"
USER = "ci-bot"
COMMIT = "c2658a55f2b21de6f3270c86c227011b10d447c2"
# Fields that take credentials (sent as a header, or as a BuildKit secret to pip).
SUPPORTED = ("network.pip_index_url", "network.pip_extra_index_url", "qpulib.url")
# Proxies with credentials are accepted (masked everywhere; they reach the build as the
# engine's predefined proxy build args).
# Fields whose URL would sit in a command line, the Dockerfile or an image layer.
REFUSED = ("network.apt_mirror", "base.bootstrap.mirror", "torch.git_url", "torch.wheel")


class _Server(http.server.ThreadingHTTPServer):
    archive: bytes
    requests: list[tuple[str, str | None]]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        auth = self.headers.get("Authorization")
        self.server.requests.append((self.path, auth))
        expected = "Basic " + base64.b64encode(f"{USER}:{SECRET}".encode()).decode()
        if auth != expected:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="mirror"')
            self.end_headers()
            return
        if not self.path.endswith(".tar.gz"):
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.server.archive)))
        self.end_headers()
        self.wfile.write(self.server.archive)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test reads ``requests`` instead."""


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, str]:
    """A tiny tree with QPULib's shape (a Lib/ folder), as a tar.gz, and its content hash."""
    root = tmp_path_factory.mktemp("tree") / f"QPULib-{COMMIT}"
    (root / "Lib").mkdir(parents=True)
    (root / "Lib" / "README").write_text("not QPULib, a stand-in\n", encoding="utf-8")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(root, arcname=root.name)
    return buffer.getvalue(), tree_sha256(root)


@pytest.fixture
def server(tree: tuple[bytes, str]) -> Iterator[_Server]:
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.archive, httpd.requests = tree[0], []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _url(server: _Server, path: str = "") -> str:
    return f"http://{USER}:{SECRET}@127.0.0.1:{server.server_address[1]}{path}"


def _run(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "RPIBUILD_CACHE": str(tmp_path / "cache")}
    environment.pop("RPIBUILD_SOURCE_MIRROR", None)
    # The test command's own QPULib tree (scripts/test.sh exports it) would replace the URL.
    environment.pop("RPIBUILD_QPULIB_SRC", None)
    environment.update(env or {})
    command = [sys.executable, "-m", "rpibuild", *args]
    return subprocess.run(command, capture_output=True, text=True, env=environment, check=False)


def _assert_hidden(tmp_path: Path, *runs: subprocess.CompletedProcess[str]) -> None:
    """The sentinel is in no output, no log file and no file of a written build context."""
    for run in runs:
        assert "Traceback" not in run.stderr, run.stderr
        assert SECRET not in run.stdout + run.stderr, f"{run.args}: secret shown"
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix != ".yaml"]
    for path in written:
        if "sources" in path.parts:  # the unpacked stand-in tree
            continue
        assert SECRET.encode() not in path.read_bytes(), f"secret written to {path}"


def _profile(tmp_path: Path, server: _Server, tree_hash: str, **overrides: str) -> Path:
    """The default profile with credentials in every URL field that takes them."""
    fields = {
        "network.pip_index_url": _url(server, "/simple"),
        "network.pip_extra_index_url": _url(server, "/extra/simple"),
        "qpulib.url": _url(server, "/{commit}.tar.gz"),
        "network.http_proxy": _url(server, ""),
        "network.https_proxy": _url(server, ""),
        "qpulib.tree_sha256": tree_hash,
        **overrides,
    }
    sections: dict[str, list[str]] = {}
    for dotted, value in fields.items():
        section, key = dotted.split(".", 1)
        sections.setdefault(section, []).append(f"  {key}: '{value}'")
    lines = ["extends: pi3b-arm64", *(f"{s}:\n" + "\n".join(keys) for s, keys in sections.items())]
    path = tmp_path / "creds.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_supported_fields_authenticate_by_header_and_are_never_shown(
    tmp_path: Path, server: _Server, tree: tuple[bytes, str]
) -> None:
    profile = _profile(tmp_path, server, tree[1])
    fetched = _run(tmp_path, "sources", "fetch", "-p", str(profile), "--json")
    assert fetched.returncode == 0, fetched.stderr
    assert Path(json.loads(fetched.stdout)["qpulib"], "Lib", "README").is_file()
    # The password went as a header, never in the request line.
    assert server.requests and all(SECRET not in path for path, _ in server.requests)
    assert all(auth and auth.startswith("Basic ") for _, auth in server.requests)
    runs = [
        fetched,
        _run(tmp_path, "config", "show", "-p", str(profile)),
        _run(tmp_path, "config", "show", "-p", str(profile), "--json"),
        _run(tmp_path, "plan", "-p", str(profile), "--json"),
        _run(tmp_path, "render", "-p", str(profile)),
        _run(tmp_path, "render", "-p", str(profile), "-o", str(tmp_path / "context")),
        _run(tmp_path, "doctor", "-p", str(profile), "--json"),
        _run(tmp_path, "doctor", "-p", str(profile)),
    ]
    assert runs[5].returncode == 0, runs[5].stderr
    assert (tmp_path / "context" / "Dockerfile").is_file()
    _assert_hidden(tmp_path, *runs)


def test_a_build_that_fails_at_its_sources_shows_no_secret(
    tmp_path: Path, server: _Server, tree: tuple[bytes, str]
) -> None:
    """A wrong pin: the authenticated download succeeds, the build stops before any base."""
    profile = _profile(tmp_path, server, "0" * 64)
    for extra in ((), ("--json",), ("-v", "--progress", "plain")):
        run = _run(tmp_path, "build", "-p", str(profile), *extra)
        assert run.returncode == 7, run.stderr
        assert "***" in run.stdout + run.stderr
        if "--json" in extra:  # the failure as a JSON object on stdout, masked like the rest
            error = json.loads(run.stdout)["error"]
            assert error["exit_code"] == 7 and error["stage"] == "sources" and "***@" in error["message"]
        _assert_hidden(tmp_path, run)


@pytest.mark.parametrize("setting", ["mirror", "qpulib.url"])
def test_unreachable_or_malformed_urls_mask_the_password(tmp_path: Path, setting: str) -> None:
    cases = {
        f"http://{USER}:{SECRET}@127.0.0.1:9/x": 7,  # nothing listens there
        f"https://{USER}:{SECRET}@host.invalid/x": 7,  # the nonnumeric-port error
        f"https://{USER}:{SECRET}@host:port/x": 2,  # a port that is no number
    }
    for url, code in cases.items():
        if setting == "mirror":
            args, env = ["sources", "fetch"], {"RPIBUILD_SOURCE_MIRROR": url}
        else:
            args, env = ["sources", "fetch", "--set", f"qpulib.url={url}/{{commit}}.tar.gz"], {}
        for json_flag in ((), ("--json",)):
            run = _run(tmp_path, *args, *json_flag, env=env)
            assert run.returncode == code, f"{url}: {run.stderr}"
            _assert_hidden(tmp_path, run)


@pytest.mark.parametrize("field", REFUSED)
def test_fields_that_would_expose_credentials_refuse_them_at_load(
    tmp_path: Path, server: _Server, tree: tuple[bytes, str], field: str
) -> None:
    value = _url(server, "/torch-2.9.1-cp313-cp313-linux_aarch64.whl" if field == "torch.wheel" else "/x")
    sets = ["--set", f"{field}={value}"]
    if field == "torch.wheel":
        sets += ["--set", "torch.source=wheel", "--set", f"torch.sha256={'0' * 64}"]
    profile = _profile(tmp_path, server, tree[1])
    commands = (
        ["config", "validate"],
        ["render"],
        ["plan", "--json"],
        ["sources", "fetch"],
        ["build"],
        ["build", "--json"],
        ["doctor"],
    )
    runs = [_run(tmp_path, *command, "-p", str(profile), *sets) for command in commands]
    for run in runs:
        assert run.returncode == 2, f"{run.args}: {run.stderr}"
        assert "carries credentials" in run.stderr + run.stdout
    _assert_hidden(tmp_path, *runs)
