"""The schema of a build profile: frozen pydantic models, validated once at the edge.

Unknown keys are rejected (``extra="forbid"``) so a typo never silently falls back to a
default; the loader turns pydantic's errors into messages that name file, line and field.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from rpibuild.platforms import Platform, get_platform

QPULIB_UPSTREAM_COMMIT = "c2658a55f2b21de6f3270c86c227011b10d447c2"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_PKG = re.compile(r"^[a-z0-9][a-z0-9+.\-]*(:[a-z0-9]+)?(=[A-Za-z0-9.+~:\-]+)?$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_packages(value: list[str]) -> list[str]:
    for name in value:
        if not _PKG.match(name):
            raise ValueError(f"{name!r} is not a Debian package name")
    return value


def _check_sha256(value: str | None) -> str | None:
    if value is not None and not _SHA256.match(value):
        raise ValueError("must be 64 lowercase hex digits (a sha256)")
    return value


class Bootstrap(_Model):
    """debootstrap a Debian or Raspbian suite into a fresh base image."""

    suite: str = "bookworm"
    mirror: str | None = Field(None, description="None: debootstrap's own default mirror")
    variant: Literal["minbase", "buildd", "default"] = "minbase"
    components: list[str] = ["main"]
    packages: list[str] = []
    keyring: str | None = Field(None, description="keyring file (needed for Raspbian)")

    _packages = field_validator("packages")(_check_packages)


class Base(_Model):
    """Where the root filesystem comes from: pulled (``image``) or bootstrapped."""

    image: str | None = None
    bootstrap: Bootstrap | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Base:
        if self.image and self.bootstrap:
            raise ValueError("give either base.image or base.bootstrap, not both")
        if not self.image and not self.bootstrap:
            raise ValueError("give base.image (to pull) or base.bootstrap (to debootstrap)")
        return self


class Apt(_Model):
    """Debian packages: ``packages`` for the build stages, ``runtime_packages`` for the result."""

    packages: list[str] = []
    runtime_packages: list[str] = []

    _packages = field_validator("packages", "runtime_packages")(_check_packages)


class Network(_Model):
    """Proxies, mirrors and a CA bundle: they reach every build stage, never the runtime image."""

    http_proxy: str | None = None
    https_proxy: str | None = None
    no_proxy: str | None = None
    apt_mirror: str | None = None
    pip_index_url: str | None = None
    pip_extra_index_url: str | None = None
    ca_bundle: str | None = Field(
        None, description="PEM bundle for TLS-intercepting proxies; 'host' = this host's bundle"
    )


class Torch(_Model):
    """Which torch goes into the image."""

    source: Literal["pypi", "wheel", "source", "none"] = "pypi"
    version: str | None = None
    sha256: str | None = Field(None, description="sha256 of the wheel file (pypi, wheel)")
    wheel: str | None = Field(None, description="path or URL of a wheel (source: wheel)")
    git_url: str = "https://github.com/pytorch/pytorch.git"
    git_ref: str | None = None
    max_jobs: int = Field(2, ge=1, le=64)
    build_env: dict[str, str] = {}

    @field_validator("wheel", "sha256", "version", "git_ref", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """``${VAR:-}`` left empty means "not given"."""
        return None if value == "" else value

    _sha = field_validator("sha256")(_check_sha256)

    @model_validator(mode="after")
    def _by_source(self) -> Torch:
        if self.source == "pypi" and not self.version:
            raise ValueError("torch.source 'pypi' needs torch.version (pin it)")
        if self.source == "wheel" and not (self.wheel and self.sha256):
            raise ValueError(
                "torch.source 'wheel' needs torch.wheel and torch.sha256 "
                "(the armv7 profile reads RPIBUILD_TORCH_WHEEL and RPIBUILD_TORCH_WHEEL_SHA256)"
            )
        if self.source == "source" and not self.git_ref:
            raise ValueError("torch.source 'source' needs torch.git_ref (a tag or commit)")
        return self


class QPULib(_Model):
    """QPULib, the VideoCore IV QPU library: upstream pinned by commit, or a local tree."""

    enabled: bool = True
    mode: Literal["qpu", "emulation"] = "qpu"
    commit: str = QPULIB_UPSTREAM_COMMIT
    url: str = "https://github.com/mn416/QPULib/archive/{commit}.tar.gz"
    tree_sha256: str | None = Field(
        None, description="content hash of the unpacked tree (rpibuild.sources.tree_sha256)"
    )
    path: str | None = Field(None, description="local source tree; default $RPIBUILD_QPULIB_SRC")

    _sha = field_validator("tree_sha256")(_check_sha256)

    @field_validator("commit")
    @classmethod
    def _commit(cls, value: str) -> str:
        if not re.fullmatch(r"[0-9a-f]{40}", value):
            raise ValueError("must be a full 40-digit commit id (pins the source)")
        return value


class Extension(_Model):
    enabled: bool = True
    path: str | None = Field(None, description="None: the torch-qpu package shipped in images/")


class Verify(_Model):
    enabled: bool = True
    qemu_cpu: str | None = Field(None, description="None: the platform's Pi core")
    emulator: bool = Field(False, description="also run the emulator-backend accuracy tests")


class Image(_Model):
    repository: str
    tags: list[str] = ["{profile}"]
    labels: dict[str, str] = {}
    keep_build_tools: bool = False

    @field_validator("repository")
    @classmethod
    def _repository(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9]+([._\-/][a-z0-9]+)*", value):
            raise ValueError("must be a lowercase image repository such as 'rpibuild/pi3b'")
        return value


class Registry(_Model):
    """Where ``rpibuild push`` sends the image; credentials normally come from ``rpibuild login``."""

    url: str | None = Field(None, description="host[:port] (https:// implied; http:// needs insecure)")
    namespace: str | None = Field(None, description="replaces the first part of image.repository")
    username: str | None = None
    password: SecretStr | None = Field(None, description="use ${ENV} interpolation, never plain")
    password_env: str | None = Field(None, description="name of an environment variable with the password")
    insecure: bool = Field(False, description="plain HTTP registry (no TLS)")
    ca_cert: str | None = Field(None, description="PEM file of the registry's private CA")

    @field_validator("url", "namespace", "username", "password_env", "ca_cert", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """``${VAR:-}`` left empty means "not given"."""
        return None if value == "" else value

    @field_validator("password_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
            raise ValueError("must be the NAME of an environment variable, not its value")
        return value


_BUILDER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
# --cache-from/--cache-to: buildx's own comma-separated key=value form (type=registry,ref=...).
_CACHE_SPEC = re.compile(r"^[A-Za-z0-9_.\-]+=[^\s,]*(,[A-Za-z0-9_.\-]+=[^\s,]*)*$")


def _check_cache_specs(value: list[str]) -> list[str]:
    for spec in value:
        if not _CACHE_SPEC.match(spec):
            raise ValueError(f"{spec!r} is not a buildx cache spec (e.g. type=registry,ref=HOST/NAME:cache)")
    return value


class Build(_Model):
    """Where and how BuildKit builds: the buildx builder and CI caches."""

    builder: str | None = Field(None, description="a buildx builder (docker buildx ls); default: current")
    cache_from: list[str] = Field([], description="buildx --cache-from specs (type=registry|local|gha,...)")
    cache_to: list[str] = Field([], description="buildx --cache-to specs; needs a builder that exports")

    @field_validator("builder")
    @classmethod
    def _builder_name(cls, value: str | None) -> str | None:
        if value is not None and not _BUILDER.match(value):
            raise ValueError("must be a builder name (letters, digits, '.', '_', '-')")
        return value

    _cache_specs = field_validator("cache_from", "cache_to")(_check_cache_specs)


class Profile(_Model):
    """One build target: everything ``rpibuild build`` needs to know."""

    name: str
    description: str = ""
    platform: str
    base: Base
    apt: Apt = Apt()
    network: Network = Network()
    torch: Torch
    qpulib: QPULib = QPULib()
    extension: Extension = Extension()
    verify: Verify = Verify()
    image: Image
    registry: Registry = Registry()
    build: Build = Build()

    @field_validator("platform")
    @classmethod
    def _platform(cls, value: str) -> str:
        return get_platform(value).name

    @property
    def target(self) -> Platform:
        return get_platform(self.platform)
