"""The docker and buildx CLI calls publishing needs: only raw or JSON output is read.

- ``docker login --password-stdin``: checks the credentials through the engine and stores
  them where docker keeps them (config.json or the credential helper it names); the
  password travels on stdin, never in argv or the environment.
- ``docker buildx imagetools create``: a multi-platform list from manifests already pushed.

A failing call raises a classified RegistryError built from the tool's stderr.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

from rpibuild.engine.buildx import docker_cli
from rpibuild.publish.errors import RegistryAuthError, classify
from rpibuild.publish.target import docker_config_dir

TIMEOUT = 300


def _run(args: list[str], host: str, *, stdin: str | None = None, secret: str | None = None) -> bytes:
    """Run ``docker ARGS``; its stdout's bytes, or the classified error (the secret masked out)."""
    try:
        out = subprocess.run(
            [docker_cli(), *args],
            input=stdin.encode() if stdin is not None else None,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            timeout=TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise classify(f"docker {args[0]} timed out after {TIMEOUT}s", host) from None
    if out.returncode != 0:
        text = (out.stderr or out.stdout).decode(errors="replace").strip()
        message = text or f"docker {args[0]} exited {out.returncode}"
        if secret:
            message = message.replace(secret, "***")
        raise classify(message, host)
    return out.stdout


def login(host: str, username: str, password: str) -> str:
    """``docker login HOST -u USER --password-stdin``; returns where docker stored the secret."""
    if not username or not password:
        raise RegistryAuthError("a user name and a password are needed", hint="-u USER --password-stdin")
    _run(["login", host, "-u", username, "--password-stdin"], host, stdin=password + "\n", secret=password)
    return credential_store(host)


def login_stored(host: str) -> None:
    """``docker login HOST`` with nothing typed: succeeds only if docker's stored login is accepted."""
    _run(["login", host], host)


def credential_store(host: str) -> str:
    """Where docker keeps ``host``'s secret: ``docker-credential-NAME``, else config.json."""
    path = docker_config_dir() / "config.json"
    try:
        config: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return str(path)
    helper = (config.get("credHelpers") or {}).get(host) or config.get("credsStore")
    return f"docker-credential-{helper}" if helper else str(path)


def create_list(tag: str, sources: list[str], host: str) -> None:
    """Point ``tag`` at a new multi-platform list of ``sources`` (``REPO@DIGEST`` each)."""
    _run(["buildx", "imagetools", "create", "--progress", "plain", "-t", tag, *sources], host)
