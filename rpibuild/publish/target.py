"""Where to publish: the registry of a profile, its trust settings, and the remote names (pure)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from rpibuild.config import grammar
from rpibuild.config.model import Profile
from rpibuild.errors import ConfigError
from rpibuild.planning.naming import image_tags

_NAME_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")


@dataclass(frozen=True)
class Target:
    """Where to push: host[:port], namespace, and how rpibuild's own checks trust it."""

    host: str
    namespace: str | None = None
    insecure: bool = False
    ca_cert: str | None = None

    @property
    def base_url(self) -> str:
        return f"{'http' if self.insecure else 'https'}://{self.host}"

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) to connect to; a bare host means 443 (TLS) or 80 (plain HTTP)."""
        parts = urlsplit(f"//{self.host}")
        return parts.hostname or self.host, parts.port or (80 if self.insecure else 443)


def docker_config_dir() -> Path:
    """Where docker keeps its client config and, unless a helper does, the credentials."""
    return Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")


def parse_host(url: str) -> tuple[str | None, str]:
    """``https://reg.example:5000/`` -> ("https", "reg.example:5000"); a bare host keeps scheme None."""
    text = url.strip()
    if "://" in text:
        parts = urlsplit(text)
        if parts.path.strip("/"):
            raise ConfigError(f"{url!r}: give only host[:port], no path", field="registry.url")
        return parts.scheme.lower(), parts.netloc
    host = text.rstrip("/")
    if not host or "/" in host:
        raise ConfigError(f"{url!r} is not a registry host[:port]", field="registry.url")
    return None, host


def target_for(
    profile: Profile | None,
    *,
    url: str | None = None,
    namespace: str | None = None,
    insecure: bool | None = None,
    ca_cert: str | None = None,
) -> Target:
    """The registry of a profile, with command-line flags taking precedence."""
    section = profile.registry if profile else None
    raw = url or (section.url if section else None)
    if not raw:
        raise ConfigError(
            "no registry given",
            field="registry.url",
            hint="set registry.url in the profile or pass --registry",
        )
    scheme, host = parse_host(raw)
    plain = insecure if insecure is not None else bool(section and section.insecure)
    if scheme == "http" and not plain:
        raise ConfigError(
            f"{raw} is plain HTTP but the registry is not marked insecure",
            field="registry.url",
            hint="set registry.insecure: true (or pass --insecure) to allow a registry without TLS",
        )
    return Target(
        host=host,
        namespace=namespace if namespace is not None else (section.namespace if section else None),
        insecure=plain,
        ca_cert=ca_cert or (section.ca_cert if section else None),
    )


def remote_repository(target: Target, repository: str) -> str:
    """``rpibuild/pi3b`` in namespace ``team`` -> ``HOST/team/pi3b``.

    A namespace replaces the repository's own first part (docker's convention: the part
    before the last slash is the namespace), so cloud registries that allow exactly
    ``namespace/repository`` get that shape; without one the repository is used whole.
    """
    name = repository.strip("/")
    if target.namespace:
        namespace = target.namespace.strip("/")
        for part in namespace.split("/"):
            if not _NAME_COMPONENT.fullmatch(part):
                raise ConfigError(f"{namespace!r} is not a valid namespace", field="registry.namespace")
        name = f"{namespace}/{name.rsplit('/', 1)[-1]}"
    return f"{target.host}/{name}"


def split_reference(reference: str, field: str | None = None) -> tuple[str, str]:
    """``host:5000/ns/repo:tag`` -> (``host:5000/ns/repo``, ``tag``); the tag is required."""
    repository, sep, tag = reference.rpartition(":")
    if not sep or "/" in tag or not repository:
        raise ConfigError(f"{reference!r} has no tag", field=field, hint="write NAME:TAG")
    if not grammar.TAG.fullmatch(tag):
        raise ConfigError(f"{tag!r} is not a valid tag", field=field)
    return repository, tag


def push_plan(profile: Profile, target: Target) -> list[tuple[str, str]]:
    """(local reference, remote reference) for every tag of the profile's image."""
    plan = []
    for local in image_tags(profile):
        repository, tag = split_reference(local)
        plan.append((local, f"{remote_repository(target, repository)}:{tag}"))
    return plan


def manifest_target(name_tag: str, target: Target) -> tuple[str, str]:
    """``--manifest NAME:TAG`` -> (remote repository, tag); a bare NAME gets host and namespace."""
    name, tag = split_reference(name_tag, field="--manifest")
    if name.startswith(target.host + "/"):
        return name, tag
    return remote_repository(target, name), tag


def profile_password(profile: Profile | None, environ: dict[str, str] | None = None) -> str | None:
    """The password from registry.password_env (an env var's name) or registry.password (${ENV})."""
    if profile is None:
        return None
    env = os.environ if environ is None else environ
    section = profile.registry
    if section.password_env:
        value = env.get(section.password_env)
        if value:
            return value
    if section.password is not None:
        return section.password.get_secret_value() or None
    return None
