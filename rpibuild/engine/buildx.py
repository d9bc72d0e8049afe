"""Builds through BuildKit: ``docker buildx build`` with structured progress and metadata.

docker-py has no BuildKit (docker/docker-py#2230), so builds run the buildx CLI plugin, the
way repo2docker does; everything else stays with docker-py. Nothing here reads text meant
for people: builders come from ``buildx ls --format json``, progress from
``--progress=rawjson``, the image id from ``--metadata-file``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from rpibuild.engine.progress import BuildEvent, BuildProgress, StageTiming, decode_stream
from rpibuild.errors import BuildError, ConfigError, HostSetupError, Interrupted

# The oldest buildx that has what this module uses, read from buildx's own source tags:
# `--progress=rawjson` comes with the BuildKit progressui vendored from v0.12.0 on (RawJSONMode;
# v0.11.0 has none), and `buildx ls --format json` (builders()) with v0.13.0 (commands/ls.go
# gained --format there). `--metadata-file` is older (v0.10.0 has it).
MIN_VERSION = (0, 13)
INSTALL_HINT = "bash scripts/setup-host.sh installs the buildx plugin (Debian/Ubuntu: docker-buildx)"
# Drivers that can export a build cache (--cache-to); the docker driver cannot.
CACHE_EXPORT_DRIVERS = ("docker-container", "kubernetes", "remote")
CANCEL_GRACE_SECONDS = 20


@dataclass(frozen=True)
class BuilderNode:
    name: str
    endpoint: str
    status: str
    platforms: tuple[str, ...]


@dataclass(frozen=True)
class Builder:
    """A buildx builder: where builds run (this engine, another one, native arm machines)."""

    name: str
    driver: str
    nodes: tuple[BuilderNode, ...]

    @property
    def platforms(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for node in self.nodes:
            seen.update(dict.fromkeys(node.platforms))
        return tuple(seen)

    @property
    def native_platforms(self) -> tuple[str, ...]:
        """The platforms its nodes run without emulation: BuildKit lists a worker's own
        platform first, then those it runs through binfmt/QEMU."""
        return tuple(dict.fromkeys(node.platforms[0] for node in self.nodes if node.platforms))

    @property
    def exports_cache(self) -> bool:
        return self.driver in CACHE_EXPORT_DRIVERS

    @property
    def loads_into_engine(self) -> bool:
        """The docker driver builds straight into its engine's image store."""
        return self.driver == "docker"

    def require_cache_export(self, cache_to: tuple[str, ...] | list[str]) -> None:
        """A usage error (exit 2) up front when --cache-to asks what this builder cannot do."""
        if cache_to and not self.exports_cache:
            raise ConfigError(
                f"builder {self.name!r} uses the {self.driver} driver, which cannot export a "
                "build cache (--cache-to)",
                field="build.cache_to",
                hint="create a builder that can: `docker buildx create --name rpibuild "
                "--driver docker-container`, then --builder rpibuild",
            )

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "driver": self.driver,
            "nodes": [
                {"name": n.name, "endpoint": n.endpoint, "status": n.status, "platforms": list(n.platforms)}
                for n in self.nodes
            ],
            "native_platforms": list(self.native_platforms),
            "cache_export": self.exports_cache,
        }


@dataclass
class BuildRequest:
    """Everything one ``buildx build`` needs; secrets are files outside the context."""

    context: Path
    platform: str
    target: str | None = None
    no_cache: bool = False
    build_args: dict[str, str] = field(default_factory=dict)  # values travel in the environment
    secrets: dict[str, Path] = field(default_factory=dict)
    cache_from: tuple[str, ...] = ()
    cache_to: tuple[str, ...] = ()
    # The Dockerfile's stage names in order (for progress: stages with nothing to run too).
    stages: tuple[str, ...] = ()


@dataclass
class BuildResult:
    image_id: str
    stages: list[StageTiming] = field(default_factory=list)


def docker_cli() -> str:
    found = shutil.which("docker")
    if not found:
        raise HostSetupError("the docker CLI is not installed", hint=INSTALL_HINT)
    return found


def version() -> tuple[int, ...] | None:
    """buildx's version as numbers, or None when the plugin is missing."""
    try:
        out = subprocess.run(
            [docker_cli(), "buildx", "version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (HostSetupError, OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    # "github.com/docker/buildx 0.13.1+ds1 <revision>": the second field is the version.
    fields = out.stdout.split()
    if len(fields) < 2:
        return None
    numbers = []
    for part in fields[1].lstrip("v").split("+")[0].split("-")[0].split("."):
        if not part.isdigit():
            break
        numbers.append(int(part))
    return tuple(numbers) or None


def builders() -> list[Builder]:
    """Every builder buildx knows (``docker buildx ls --format json``, one object a line)."""
    out = _run_buildx(["ls", "--format", "json"])
    found: dict[str, Builder] = {}
    for line in out.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        data = json.loads(line)
        nodes = tuple(
            BuilderNode(
                name=str(node.get("Name", "")),
                endpoint=str(node.get("Endpoint", "")),
                status=str(node.get("Status", "")),
                platforms=tuple(node.get("Platforms") or ()),
            )
            for node in data.get("Nodes") or ()
        )
        found.setdefault(str(data["Name"]), Builder(str(data["Name"]), str(data.get("Driver", "")), nodes))
    return list(found.values())


def select_builder(name: str | None) -> Builder:
    """The named builder, or buildx's current one; a usage error (exit 2) when unknown."""
    known = builders()
    if name:
        for builder in known:
            if builder.name == name:
                return builder
        names = ", ".join(b.name for b in known) or "none"
        raise ConfigError(
            f"there is no buildx builder named {name!r} (builders: {names})",
            field="build.builder",
            hint="create one with `docker buildx create` or `docker context create`, then "
            "check `docker buildx ls`",
        )
    current = os.environ.get("BUILDX_BUILDER")
    if current:
        return select_builder(current)
    # `buildx ls` lists the current builder first unless another was `buildx use`d; the
    # default builder of the current docker context is what buildx uses then.
    for builder in known:
        if builder.name in ("default", _current_context()):
            return builder
    if known:
        return known[0]
    raise HostSetupError("buildx lists no builder", hint=INSTALL_HINT)


# Drivers whose builds run in a container on a docker engine (their nodes' endpoints name it).
ENGINE_DRIVERS = ("docker", "docker-container")
ENGINE_SCHEMES = ("unix://", "tcp://", "ssh://", "npipe://")


def engine_address_of(builder: Builder) -> str | None:
    """The docker engine behind a builder, where other work for it can run (the torch compile):
    a docker-driver builder's context endpoint, or a docker-container builder's first node's
    engine (an address, or a docker context by name). None for a builder with no docker
    engine behind it (remote BuildKit, kubernetes) or one buildx cannot name."""
    if builder.driver == "docker":
        return docker_host_of(builder)
    if builder.driver not in ENGINE_DRIVERS or not builder.nodes:
        return None
    endpoint = builder.nodes[0].endpoint
    if endpoint.startswith(ENGINE_SCHEMES):
        return endpoint
    return _context_host(endpoint) if endpoint else None


def docker_host_of(builder: Builder) -> str | None:
    """The engine a docker-driver builder builds into (its docker context's endpoint)."""
    if not builder.loads_into_engine:
        return None
    return _context_host(builder.name)


def _context_host(context: str) -> str | None:
    """A docker context's engine address, or None when there is no such context."""
    out = subprocess.run(
        [docker_cli(), "context", "inspect", context],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if out.returncode != 0:
        return None
    try:
        contexts = json.loads(out.stdout)
        return str(contexts[0]["Endpoints"]["docker"]["Host"])
    except (ValueError, LookupError, TypeError):
        return None


def build(
    builder: Builder,
    request: BuildRequest,
    *,
    on_event: Callable[[BuildEvent], None] | None = None,
    log: Callable[[str], object] | None = None,
) -> BuildResult:
    """Run one build; raise BuildError with the failed step's output, Interrupted on Ctrl-C."""
    builder.require_cache_export(request.cache_to)
    progress = BuildProgress(on_event=on_event, log=log, stages=request.stages)
    with tempfile.TemporaryDirectory(prefix="rpibuild-buildx-") as tmp:
        metadata = Path(tmp, "metadata.json")
        command = _command(builder, request, metadata)
        env = dict(os.environ)
        env.update(request.build_args)
        # `with`: the pipe is closed and the process reaped on every way out; on Ctrl-C
        # _cancel has already stopped it, so leaving the block never waits for long.
        with subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            text=True,
            encoding="utf-8",
            errors="replace",
            # Its own session: a terminal's Ctrl-C reaches rpibuild, which cancels the build
            # and waits for buildx to wind it down (nothing left running).
            start_new_session=True,
        ) as process:
            try:
                assert process.stdout is not None
                for status in decode_stream(_reads(process.stdout), progress.note):
                    progress.feed(status)
                code = process.wait()
            except BaseException:
                _cancel(process)
                raise
        if code != 0:
            raise _failure(progress, code)
        image_id = _image_id(metadata)
    if image_id is None:
        raise BuildError(
            "buildx reported no image id", stage=progress.current_stage(), log_tail=list(progress.tail)
        )
    return BuildResult(image_id, progress.stages())


def _command(builder: Builder, request: BuildRequest, metadata: Path) -> list[str]:
    if builder.loads_into_engine and builder.name != "default":
        # A docker-driver builder is a docker context's own engine, and buildx uses it only
        # from that context.
        command = [docker_cli(), "--context", builder.name, "buildx", "build"]
    else:
        command = [docker_cli(), "buildx", "build", "--builder", builder.name]
    command += [
        "--progress=rawjson",
        "--metadata-file",
        str(metadata),
        "--platform",
        request.platform,
        "--provenance=false",
    ]
    if not builder.loads_into_engine:
        command.append("--load")
    if request.target:
        command += ["--target", request.target]
    if request.no_cache:
        command.append("--no-cache")
    for name in request.build_args:
        command += ["--build-arg", name]  # the value comes from the environment, not argv
    for secret_id, path in request.secrets.items():
        command += ["--secret", f"id={secret_id},src={path}"]
    for ref in request.cache_from:
        command += ["--cache-from", ref]
    for ref in request.cache_to:
        command += ["--cache-to", ref]
    command.append(str(request.context))
    return command


def _reads(stream: IO[str]) -> Iterator[str]:
    while True:
        chunk = stream.readline()
        if not chunk:
            return
        yield chunk


def _cancel(process: subprocess.Popen[str]) -> None:
    """Ask buildx to cancel (SIGINT, as a terminal would), then make sure it is gone."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=CANCEL_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _failure(progress: BuildProgress, code: int) -> BuildError | Interrupted:
    if progress.cancelled() or code in (130, -signal.SIGINT):
        return Interrupted("the build was cancelled")
    failed = progress.failure()
    if failed is not None:
        tail = failed.tail or list(progress.tail)
        error = " ".join(failed.error.split())
        return BuildError(
            f"stage {failed.stage!r} failed: {error[:400]}",
            stage=failed.stage,
            log_tail=tail,
        )
    text = " ".join(line.strip() for line in list(progress.tail)[-3:]) or f"buildx exited with {code}"
    return BuildError(
        f"the build failed: {text}", stage=progress.current_stage(), log_tail=list(progress.tail)
    )


def _image_id(metadata: Path) -> str | None:
    try:
        data = json.loads(metadata.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    # The engine's own exporter names the image by its config digest: that is its id.
    value = data.get("containerimage.config.digest") or data.get("containerimage.digest")
    return str(value) if value else None


def _current_context() -> str:
    out = subprocess.run(
        [docker_cli(), "context", "show"], capture_output=True, text=True, timeout=30, check=False
    )
    return out.stdout.strip() or "default"


def _run_buildx(args: list[str]) -> str:
    try:
        out = subprocess.run(
            [docker_cli(), "buildx", *args], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise HostSetupError(f"docker buildx {args[0]} failed: {exc}", hint=INSTALL_HINT) from None
    if out.returncode != 0:
        raise HostSetupError(
            f"docker buildx {args[0]} failed: {out.stderr.strip() or out.stdout.strip()}", hint=INSTALL_HINT
        )
    return out.stdout
