"""The schema of a build profile: frozen pydantic models, validated once at the edge.

Unknown keys are rejected (``extra="forbid"``) so a typo never silently falls back to a
default; the loader turns pydantic's errors into messages that name file, line and field.
Every string is checked against the grammar of what it is (``grammar``): values reach a
Dockerfile, shell lines and tools' command lines, where quoting alone is not enough.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from rpibuild import torch_routes
from rpibuild.config import grammar
from rpibuild.platforms import QEMU_CPUS, Platform, get_platform

QPULIB_UPSTREAM_COMMIT = "c2658a55f2b21de6f3270c86c227011b10d447c2"
TAG_PLACEHOLDERS = ("profile", "platform", "torch", "qpulib", "version")
PROXY_SCHEMES = ("http", "https", "socks5", "socks5h")
INDEX_SCHEMES = ("http", "https", "file")
GIT_SCHEMES = ("https", "http", "git", "ssh", "file")


class FieldProblem(ValueError):
    """A whole-profile check that is about one field: the loader reports it at ``loc``."""

    def __init__(self, loc: tuple[str, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


def _no_control_characters(value: Any) -> None:
    """Walk a field's value (strings, lists, mapping keys and values) for forbidden characters."""
    if isinstance(value, str):
        grammar.check_text(value)
    elif isinstance(value, SecretStr):
        grammar.check_text(value.get_secret_value())
    elif isinstance(value, list | tuple):
        for item in value:
            _no_control_characters(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            _no_control_characters(key)
            _no_control_characters(item)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*")
    @classmethod
    def _one_line(cls, value: Any) -> Any:
        """No value anywhere holds a newline, NUL or other control character."""
        _no_control_characters(value)
        return value


def _optional(check: Callable[[str], str]) -> Callable[[Any, str | None], str | None]:
    """A field validator from a grammar check; None (not given) passes."""

    def validate(cls: Any, value: str | None) -> str | None:
        return None if value is None else check(value)

    return validate


# Item types: an error names the list index or the map key that is wrong.
DebianPackage = Annotated[str, AfterValidator(grammar.debian_package)]
DebianComponent = Annotated[str, AfterValidator(grammar.debian_component)]
EnvName = Annotated[str, AfterValidator(grammar.env_name)]
DistccHost = Annotated[str, AfterValidator(grammar.distcc_host)]
LabelKey = Annotated[str, AfterValidator(grammar.label_key)]
TagTemplate = Annotated[str, AfterValidator(lambda v: grammar.tag_template(v, TAG_PLACEHOLDERS))]


def _unset_if_empty(cls: Any, value: object) -> object:
    """``${VAR:-}`` left empty means "not given"."""
    return None if value == "" else value


class Bootstrap(_Model):
    """Bootstrap a Debian or Raspbian suite into a fresh base image."""

    # mmdebstrap: apt runs natively (solving, parallel downloads, signatures), QEMU only runs
    # dpkg and maintainer scripts; debootstrap stays selectable.
    tool: Literal["mmdebstrap", "debootstrap"] = "mmdebstrap"
    suite: str = "bookworm"
    mirror: str | None = Field(None, description="None: the bootstrap tool's own default mirror")
    variant: Literal["minbase", "buildd", "default"] = "minbase"
    components: list[DebianComponent] = ["main"]
    packages: list[DebianPackage] = []
    keyring: str | None = Field(None, description="keyring file (needed for Raspbian)")

    _suite = field_validator("suite")(classmethod(_optional(grammar.debian_suite)))
    _mirror = field_validator("mirror")(
        classmethod(_optional(lambda v: grammar.url(v, INDEX_SCHEMES, plain=True, credentials=False)))
    )
    _empty = field_validator("mirror", "keyring", mode="before")(classmethod(_unset_if_empty))
    _keyring = field_validator("keyring")(classmethod(_optional(grammar.host_path)))


class Base(_Model):
    """Where the root filesystem comes from: pulled (``image``) or bootstrapped."""

    image: str | None = None
    bootstrap: Bootstrap | None = None

    _image = field_validator("image")(classmethod(_optional(grammar.image_reference)))

    @model_validator(mode="after")
    def _one_source(self) -> Base:
        if self.image and self.bootstrap:
            raise ValueError("give either base.image or base.bootstrap, not both")
        if not self.image and not self.bootstrap:
            raise ValueError("give base.image (to pull) or base.bootstrap (to debootstrap)")
        return self


class Apt(_Model):
    """Debian packages: ``packages`` for the build stages, ``runtime_packages`` for the result."""

    packages: list[DebianPackage] = []
    # Compilers and headers: in the target's build stages only when C++ is compiled there
    # (build.cross: false, a native target, torch from git); a cross build leaves them out.
    compiler_packages: list[DebianPackage] = []
    runtime_packages: list[DebianPackage] = []


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

    _empty = field_validator("*", mode="before")(classmethod(_unset_if_empty))
    _proxies = field_validator("http_proxy", "https_proxy")(
        classmethod(_optional(lambda v: grammar.url(v, PROXY_SCHEMES)))
    )
    _no_proxy = field_validator("no_proxy")(classmethod(_optional(grammar.no_proxy)))
    _ca = field_validator("ca_bundle")(classmethod(_optional(grammar.host_path)))
    _mirror = field_validator("apt_mirror")(
        classmethod(_optional(lambda v: grammar.url(v, ("http", "https"), plain=True, credentials=False)))
    )
    _index = field_validator("pip_index_url", "pip_extra_index_url")(
        classmethod(_optional(lambda v: grammar.url(v, INDEX_SCHEMES)))
    )


class Torch(_Model):
    """Which torch goes into the image."""

    source: Literal["pypi", "wheel", "debian", "source", "none"] = "pypi"
    version: str | None = Field(None, description="pypi: torch's version; debian: the source package's")
    sha256: str | None = Field(None, description="sha256 of the wheel file (pypi, wheel)")
    wheel: str | None = Field(None, description="path or URL of a wheel (source: wheel)")
    git_url: str = "https://github.com/pytorch/pytorch.git"
    git_ref: str | None = None
    max_jobs: int | None = Field(
        None,
        ge=1,
        le=1024,
        description="compile jobs; default: the CPUs of the engine the compile runs on (plus "
        "the distcc helpers' job limits)",
    )
    build_env: dict[EnvName, str] = {}
    wheel_store: Literal["local", "registry"] = Field(
        "local",
        description="where a wheel compiled from source (debian) is kept: local (rpibuild's cache) or "
        "registry (also the profile's registry, as an OCI artifact tagged with the build key: "
        "a host without it fetches it instead of compiling)",
    )
    distcc_hosts: list[DistccHost] = Field(
        [],
        description="distcc helpers for the torch compile (HOST[:PORT][/LIMIT], each running "
        "rpibuild's distcc-helper image); also RPIBUILD_DISTCC_HOSTS",
    )

    @field_validator("wheel", "sha256", "version", "git_ref", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """``${VAR:-}`` left empty means "not given"."""
        return None if value == "" else value

    _sha = field_validator("sha256")(classmethod(_optional(grammar.sha256)))
    _version = field_validator("version")(classmethod(_optional(grammar.version)))
    _wheel = field_validator("wheel")(classmethod(_optional(grammar.wheel)))
    _git_url = field_validator("git_url")(
        classmethod(_optional(lambda v: grammar.url(v, GIT_SCHEMES, credentials=False)))
    )
    _git_ref = field_validator("git_ref")(classmethod(_optional(grammar.git_ref)))

    @model_validator(mode="after")
    def _by_source(self) -> Torch:
        """What the chosen route needs (rpibuild.torch_routes: one module per route)."""
        missing = torch_routes.route_of(self.source).required(self)
        if missing:
            raise ValueError(missing)
        return self


class QPULib(_Model):
    """QPULib, the VideoCore IV QPU library: upstream pinned by commit, or a local tree."""

    enabled: bool = True
    mode: Literal["qpu", "emulation"] = "qpu"
    commit: str = QPULIB_UPSTREAM_COMMIT
    url: str = "https://github.com/mn416/QPULib/archive/{commit}.tar.gz"
    tree_sha256: str | None = Field(
        None, description="content hash of the unpacked tree (rpibuild.build.sources.tree_sha256)"
    )
    path: str | None = Field(None, description="local source tree; default $RPIBUILD_QPULIB_SRC")

    _sha = field_validator("tree_sha256")(classmethod(_optional(grammar.sha256)))
    _url = field_validator("url")(
        classmethod(_optional(lambda v: grammar.url_template(v, ("commit",), ("https", "http", "file"))))
    )
    _empty = field_validator("tree_sha256", "path", mode="before")(classmethod(_unset_if_empty))
    _path = field_validator("path")(classmethod(_optional(grammar.host_path)))

    @field_validator("commit")
    @classmethod
    def _commit(cls, value: str) -> str:
        if not re.fullmatch(r"[0-9a-f]{40}", value, flags=re.ASCII):
            raise ValueError("must be a full 40-digit commit id (pins the source)")
        return value


class Extension(_Model):
    enabled: bool = True
    path: str | None = Field(None, description="None: the torch-qpu package shipped in images/")

    _path = field_validator("path")(classmethod(_optional(grammar.host_path)))


class Verify(_Model):
    enabled: bool = True
    qemu_cpu: str | None = Field(None, description="None: the platform's Pi core")
    emulator: bool = Field(False, description="also run the emulator-backend accuracy tests")

    _empty = field_validator("qemu_cpu", mode="before")(classmethod(_unset_if_empty))
    _cpu = field_validator("qemu_cpu")(classmethod(_optional(grammar.cpu_model)))


class Image(_Model):
    repository: str
    tags: list[TagTemplate] = ["{profile}"]
    labels: dict[LabelKey, str] = {}
    keep_build_tools: bool = False

    _repository = field_validator("repository")(classmethod(_optional(grammar.repository)))


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

    _url = field_validator("url")(classmethod(_optional(grammar.registry_host)))
    _ca_cert = field_validator("ca_cert")(classmethod(_optional(grammar.host_path)))
    _namespace = field_validator("namespace")(classmethod(_optional(grammar.namespace)))

    @field_validator("password_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value, flags=re.ASCII):
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
    cross: bool = Field(
        True,
        description="compile C++ (QPULib, torch_qpu, torch from source) natively on the build "
        "platform with Debian's cross toolchain; false: everything under QEMU",
    )

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

    _name = field_validator("name")(classmethod(_optional(grammar.profile_name)))

    @field_validator("platform")
    @classmethod
    def _platform(cls, value: str) -> str:
        return get_platform(value).name

    @model_validator(mode="after")
    def _cpu_fits_platform(self) -> Profile:
        """verify.qemu_cpu must be able to run the platform's code (no Cortex-A7 for arm64)."""
        cpu = self.verify.qemu_cpu
        if cpu is not None and cpu not in QEMU_CPUS[self.platform]:
            fits = ", ".join(QEMU_CPUS[self.platform]) or "none: it runs natively, without QEMU"
            raise FieldProblem(
                ("verify", "qemu_cpu"), f"{cpu} cannot run {self.platform} code (models that can: {fits})"
            )
        return self

    @model_validator(mode="after")
    def _wheel_store_has_a_registry(self) -> Profile:
        """torch.wheel_store: registry shares the wheel through registry.url; without one there
        is nowhere to look, which must not pass silently as "not shared"."""
        if self.torch.wheel_store == "registry" and not self.registry.url:
            raise FieldProblem(
                ("torch", "wheel_store"),
                "'registry' needs registry.url (the registry the wheel is pushed to and fetched from)",
            )
        return self

    @property
    def target(self) -> Platform:
        return get_platform(self.platform)
