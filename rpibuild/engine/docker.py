"""The engine through docker-py: images, containers, tags, pushes and what a registry serves.

Builds go through BuildKit (``buildx.py``); this is everything else. Streams (pushes) are
checked chunk by chunk for an ``error``, because the engine answers 200 and reports
failures inside the stream.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rpibuild.engine import buildx
from rpibuild.engine.progress import BuildEvent
from rpibuild.engine.tar_stream import open_tar_stream
from rpibuild.errors import EngineError, ImageMissing, RegistryError

if TYPE_CHECKING:
    import docker

    from rpibuild.engine import Engine

START_HINT = "start the engine: bash scripts/setup-host.sh (or `dockerd &` as root)"
# Where docker-py (and the docker CLI) find the engine when nothing else is said.
DEFAULT_ADDRESS = "unix:///var/run/docker.sock"


def default_address() -> str:
    """The address of the engine rpibuild uses without --builder (DOCKER_HOST, else the socket)."""
    return os.environ.get("DOCKER_HOST") or DEFAULT_ADDRESS


@dataclass(frozen=True)
class ImageInfo:
    id: str
    tags: tuple[str, ...]
    os: str
    architecture: str
    variant: str | None
    labels: dict[str, str]
    size: int

    @property
    def platform(self) -> str:
        parts = [self.os, self.architecture] + ([self.variant] if self.variant else [])
        return "/".join(parts)


class DockerEngine:
    """A connection to a Docker engine, and the buildx builder that builds into it."""

    def __init__(
        self, client: docker.DockerClient, builder: buildx.Builder | None = None, address: str | None = None
    ) -> None:
        self.client = client
        self.api = client.api
        self._builder = builder
        # docker-py forgets a unix socket's path (its base_url is http+docker://localhost), so
        # the address this engine was reached at is kept: it tells engines apart.
        self.address = address or default_address()

    @classmethod
    def connect(cls, *, builder: str | None = None, timeout: int = 600) -> DockerEngine:
        """The engine of the current docker context, or of the named docker-driver builder.

        A docker-driver builder on another engine (a docker context, ssh:// included) builds
        into that engine's image store, so the images are inspected and tagged there.
        """
        selected = buildx.select_builder(builder) if builder else None
        base_url = buildx.docker_host_of(selected) if selected else None
        return cls(_client(base_url, timeout), selected, base_url)

    @classmethod
    def at(cls, address: str, *, timeout: int = 600) -> DockerEngine:
        """The engine at ``address`` (unix://, tcp://, ssh://): a buildx node's own engine."""
        return cls(_client(address, timeout), None, address)

    @property
    def is_local(self) -> bool:
        """Whether this is the engine rpibuild reaches without --builder, over a unix socket:
        the one engine whose containers can mount this host's folders."""
        return self.address == default_address() and self.address.startswith("unix://")

    def cpus(self) -> int:
        """How many CPUs the engine's machine has (what its containers can use)."""
        return max(int(self.info().get("NCPU") or 1), 1)

    def compile_engine(self) -> DockerEngine:
        """The engine behind this engine's builder, where a container doing the builder's work
        (the torch compile) runs: this one for the docker driver (connect() reached the
        builder's own engine); the first node's engine for a docker-container builder on
        another engine; this one for a builder with no engine behind it (remote, kubernetes)."""
        address = buildx.engine_address_of(self.builder)
        if address is None or address == self.address:
            return self
        return DockerEngine.at(address)

    @property
    def builder(self) -> buildx.Builder:
        """The buildx builder builds go to (resolved on first use: only builds need buildx)."""
        if self._builder is None:
            self._builder = buildx.select_builder(None)
        return self._builder

    def build(
        self,
        request: buildx.BuildRequest,
        *,
        on_event: Callable[[BuildEvent], None] | None = None,
        log: Callable[[str], object] | None = None,
    ) -> buildx.BuildResult:
        """Build without tagging (tags move only after success) through BuildKit."""
        return buildx.build(self.builder, request, on_event=on_event, log=log)

    def version(self) -> dict[str, Any]:
        return dict(self.client.version())

    def info(self) -> dict[str, Any]:
        return dict(self.client.info())

    # -------------------------------------------------------------- images

    def image(self, ref: str) -> ImageInfo | None:
        """Inspect an image; None when it does not exist."""
        import docker.errors

        try:
            data = self.api.inspect_image(ref)
        except docker.errors.ImageNotFound:
            return None
        except docker.errors.APIError as exc:
            raise EngineError(f"cannot inspect {ref}: {_reason(exc)}") from None
        return ImageInfo(
            id=data["Id"],
            tags=tuple(data.get("RepoTags") or ()),
            os=data.get("Os", ""),
            architecture=data.get("Architecture", ""),
            variant=data.get("Variant") or None,
            labels=dict((data.get("Config") or {}).get("Labels") or {}),
            size=int(data.get("Size", 0)),
        )

    def list_images(self, label: str) -> list[ImageInfo]:
        """Every tagged image carrying ``label`` (a key, or key=value), inspected."""
        import docker.errors

        try:
            listed = self.api.images(filters={"label": label, "dangling": False})
        except docker.errors.APIError as exc:
            raise EngineError(f"cannot list images: {_reason(exc)}") from None
        found = (self.image(str(entry["Id"])) for entry in listed)
        return [info for info in found if info is not None]

    def tag(self, image_id: str, reference: str) -> None:
        repository, _, tag = reference.rpartition(":")
        if not repository or "/" in tag:
            repository, tag = reference, "latest"
        self.api.tag(image_id, repository, tag)

    def remove_image(self, ref: str, *, force: bool = False) -> None:
        import docker.errors

        with contextlib.suppress(docker.errors.ImageNotFound):
            self.api.remove_image(ref, force=force, noprune=False)

    def load(self, tarball: Path) -> list[str]:
        """``docker load`` a docker-archive; returns the loaded image ids."""
        import docker.errors

        try:
            with tarball.open("rb") as stream:
                images = self.client.images.load(stream)
        except docker.errors.APIError as exc:
            raise EngineError(f"cannot load {tarball.name}: {_reason(exc)}") from None
        return [image.id for image in images]

    def pull(self, reference: str, platform: str | None = None) -> str:
        import docker.errors

        repository, _, tag = reference.partition("@") if "@" in reference else (reference, "", "")
        try:
            image = self.client.images.pull(repository if not tag else reference, platform=platform)
        except docker.errors.APIError as exc:
            raise EngineError(
                f"cannot pull {reference}: {_reason(exc)}",
                hint="if no registry is reachable, bootstrap the base instead (base.bootstrap)",
            ) from None
        return str(image.id)

    def untag(self, reference: str) -> None:
        """Remove one tag; never deletes parent layers (noprune) or a running container's image."""
        import docker.errors

        try:
            self.api.remove_image(reference, force=False, noprune=True)
        except docker.errors.ImageNotFound:
            pass
        except docker.errors.APIError as exc:
            raise EngineError(f"cannot untag {reference}: {_reason(exc)}") from None

    # -------------------------------------------------------------- registries

    def distribution(self, reference: str) -> dict[str, Any]:
        """What the registry serves at ``reference``, asked through the engine (its trust
        settings, docker's stored credentials): ``{"Descriptor": {digest, mediaType, size},
        "Platforms": [{os, architecture, variant}]}``."""
        import docker.errors

        self.api.reload_config()  # a login since connect() is in docker's store, not our copy
        try:
            return dict(self.api.inspect_distribution(reference))
        except docker.errors.APIError as exc:
            raise RegistryError(_reason(exc)) from None

    def push(
        self,
        repository: str,
        tag: str,
        *,
        auth_config: dict[str, str] | None = None,
        on_progress: Callable[[str], None] | None = None,
    ) -> tuple[str | None, int | None]:
        """Push ``repository:tag``; returns the (manifest digest, size) the engine reported.

        The engine answers 200 and reports failure inside the stream, so every chunk is
        checked for ``error``/``errorDetail`` and raised as a RegistryError with its text.
        ``on_progress`` may raise to abort: the response is closed, and the engine cancels a
        push whose client went away (its own upload retries would otherwise run ~50 s).
        """
        import docker.errors

        digest: str | None = None
        size: int | None = None
        # Without auth_config docker-py sends what docker's store holds for the registry
        # (config.json or its credential helper); re-read it: a login may have come since.
        self.api.reload_config()
        try:
            stream = self.api.push(repository, tag=tag, stream=True, decode=True, auth_config=auth_config)
            try:
                for chunk in _chunks(stream):
                    if "error" in chunk or "errorDetail" in chunk:
                        detail = chunk.get("errorDetail") or {}
                        raise RegistryError(str(detail.get("message") or chunk.get("error") or "push failed"))
                    aux = chunk.get("aux")
                    if isinstance(aux, dict) and aux.get("Digest"):
                        digest, size = str(aux["Digest"]), int(aux.get("Size") or 0) or None
                    if on_progress and chunk.get("status"):
                        layer = f"{chunk['id']}: " if chunk.get("id") else ""
                        on_progress(f"{layer}{chunk['status']} {chunk.get('progress') or ''}".rstrip())
            except BaseException:
                # Closing our connections is how the engine learns the client went away: it
                # then cancels the push instead of running its own upload retries (~50 s).
                stream.close()
                self.api.close()
                raise
        except docker.errors.APIError as exc:
            raise RegistryError(_reason(exc)) from None
        return digest, size

    # -------------------------------------------------------------- containers

    @contextlib.contextmanager
    def _started(
        self, image: str, command: list[str], *, extra_labels: dict[str, str] | None = None, **options: Any
    ) -> Iterator[Any]:
        """A started container that is always removed afterwards (also on error or Ctrl-C)."""
        import docker.errors

        container = None
        try:
            container = self.client.containers.create(
                image, command, labels={"io.rpibuild.temporary": "1", **(extra_labels or {})}, **options
            )
            container.start()
            yield container
        except docker.errors.APIError as exc:
            raise EngineError(f"cannot run {image}: {_reason(exc)}") from None
        finally:
            if container is not None:
                with contextlib.suppress(docker.errors.APIError):
                    container.remove(force=True)

    def run(
        self,
        image: str,
        command: list[str],
        *,
        platform: str | None = None,
        environment: dict[str, str] | None = None,
        volumes: dict[str, dict[str, str]] | None = None,
    ) -> tuple[int, str]:
        """Run a command to completion and return its exit code and output."""
        with self._started(
            image, command, platform=platform, environment=environment, volumes=volumes
        ) as container:
            code = int(container.wait()["StatusCode"])
            return code, container.logs(stdout=True, stderr=True).decode("utf-8", "replace")

    def run_streaming(
        self,
        image: str,
        command: list[str],
        *,
        on_line: Callable[[str], None],
        volumes: dict[str, dict[str, str]] | None = None,
        cap_add: list[str] | None = None,
        environment: dict[str, str] | None = None,
        user: str | None = None,
        network: bool | str = True,
        labels: dict[str, str] | None = None,
        copy_out: tuple[str, Path] | None = None,
    ) -> int:
        """Run a command, passing each output line to ``on_line``; returns its exit code.

        ``volumes`` keys are host folders or named volumes. ``network``: True (the default
        bridge), False (none) or a network mode such as "host". ``copy_out``: (folder in the
        container, host folder): after a successful run the folder's files are copied out
        (how results come back from an engine on another machine: no host folder is shared).
        """
        options: dict[str, Any] = {"volumes": volumes, "cap_add": cap_add, "environment": environment}
        if user is not None:
            options["user"] = user
        if network is False:
            options["network_mode"] = "none"
        elif isinstance(network, str):
            options["network_mode"] = network
        with self._started(image, command, extra_labels=labels, **options) as container:
            pending = b""
            for chunk in container.logs(stream=True, follow=True):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    on_line(line.decode("utf-8", "replace"))
            if pending:
                on_line(pending.decode("utf-8", "replace"))
            code = int(container.wait()["StatusCode"])
            if code == 0 and copy_out is not None:
                inside, host = copy_out
                stream = self.get_archive(container.id, inside)
                if stream is None:
                    raise EngineError(f"the container left nothing in {inside}")
                extract_files(stream, host)
            return code

    def remove_labelled_containers(self, label: str) -> list[str]:
        """Remove every container carrying ``label`` (``key=value``), running or not; their ids.

        For work that must not run twice at once: a container left running by an rpibuild
        process that was killed (its cleanup never ran) is stopped before a new one starts."""
        import docker.errors

        try:
            found = self.client.containers.list(all=True, filters={"label": label})
        except docker.errors.APIError as exc:
            raise EngineError(f"cannot list containers: {_reason(exc)}") from None
        for container in found:
            with contextlib.suppress(docker.errors.APIError):
                container.remove(force=True)
        return [container.id for container in found]

    def remove_containers(self, ids: list[str]) -> None:
        import docker.errors

        for cid in ids:
            with contextlib.suppress(docker.errors.APIError):
                self.api.remove_container(cid, force=True)

    # -------------------------------------------------------------- volumes

    def ensure_volume(self, name: str, labels: dict[str, str]) -> None:
        """Create the named volume unless it exists (volumes outlive containers and, unlike
        BuildKit's cache mounts, are never garbage-collected)."""
        import docker.errors

        try:
            self.api.create_volume(name, labels=labels)  # idempotent for an existing name
        except docker.errors.APIError as exc:
            raise EngineError(f"cannot create volume {name}: {_reason(exc)}") from None

    def running_labelled_containers(self, label: str) -> list[str]:
        """The ids of the running containers carrying ``label`` (``key=value``), whoever
        started them: work under way on this engine, e.g. a compile another host started."""
        import docker.errors

        try:
            found = self.client.containers.list(filters={"label": label, "status": "running"})
        except docker.errors.APIError as exc:
            raise EngineError(f"cannot list containers: {_reason(exc)}") from None
        return [container.id for container in found]

    def list_volumes(self, label: str) -> list[str]:
        """The names of the volumes carrying ``label`` (key or key=value)."""
        import docker.errors

        try:
            found = self.api.volumes(filters={"label": label}).get("Volumes") or []
        except docker.errors.APIError as exc:
            raise EngineError(f"cannot list volumes: {_reason(exc)}") from None
        return sorted(str(volume["Name"]) for volume in found)

    def remove_volume(self, name: str) -> None:
        import docker.errors

        try:
            self.api.remove_volume(name, force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            raise EngineError(f"cannot remove volume {name}: {_reason(exc)}") from None

    def save_image(self, image: str) -> Iterator[bytes]:
        """``docker save`` of one image, as a stream of chunks (for ``load_stream`` elsewhere)."""
        return _checked_stream(self.api.get_image(image, chunk_size=1 << 20), f"cannot save {image}")

    def load_stream(self, chunks: Iterator[bytes]) -> None:
        """``docker load`` from a stream of chunks (another engine's ``save_image``), nothing on disk."""
        import docker.errors

        try:
            for chunk in _chunks(self.api.load_image(chunks)):
                if "error" in chunk or "errorDetail" in chunk:
                    raise EngineError(f"cannot load an image into {self.address}: {chunk.get('error')}")
        except docker.errors.APIError as exc:
            raise EngineError(f"cannot load an image into {self.address}: {_reason(exc)}") from None

    @contextlib.contextmanager
    def created_container(self, image: str, *, platform: str | None = None) -> Iterator[str]:
        """A created, never started container of ``image`` (for reading its filesystem).

        Never started, so nothing runs under QEMU and nothing in the image changes; it is
        removed on the way out whatever happens, Ctrl-C included.
        """
        import docker.errors

        try:
            # A command is required to create a container from an image without CMD; it never runs.
            created = self.api.create_container(
                image,
                command=["/bin/true"],
                labels={"io.rpibuild.temporary": "1"},
                platform=platform,
                use_config_proxy=False,
            )
        except docker.errors.ImageNotFound:
            raise ImageMissing(f"image {image} does not exist") from None
        except docker.errors.APIError as exc:
            raise EngineError(f"cannot create a container of {image}: {_reason(exc)}") from None
        try:
            yield created["Id"]
        finally:
            self.remove_containers([created["Id"]])

    def export_container(self, container: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """``docker export``: the container's whole filesystem as a tar stream (PAX xattrs kept)."""
        import docker.errors

        try:
            yield from self.api.export(container, chunk_size=chunk_size)
        except docker.errors.APIError as exc:
            raise EngineError(f"cannot export container {container[:12]}: {_reason(exc)}") from None

    def get_archive(self, container: str, path: str, chunk_size: int = 1 << 20) -> Iterator[bytes] | None:
        """A tar stream of ``path`` in the container (its last component is the tar's top entry).

        None when the path does not exist, so callers can treat optional files as optional.
        """
        import docker.errors

        try:
            stream, _stat = self.api.get_archive(container, path, chunk_size=chunk_size)
        except docker.errors.NotFound:
            return None
        except docker.errors.APIError as exc:
            raise EngineError(f"cannot copy {path} out of {container[:12]}: {_reason(exc)}") from None
        return _checked_stream(stream, f"cannot copy {path} out of {container[:12]}")

    def repo_digests(self, ref: str) -> list[str]:
        """Registry digests of an image (empty until it was pushed or pulled)."""
        import docker.errors

        try:
            return list(self.api.inspect_image(ref).get("RepoDigests") or [])
        except docker.errors.APIError:
            return []


def extract_files(stream: Iterator[bytes], folder: Path) -> list[Path]:
    """The regular files of a ``get_archive`` tar stream (one folder: its files), written flat
    into ``folder``. Only plain file names are taken: no links, devices or paths that climb."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    with open_tar_stream(stream) as archive:
        for member in archive:
            name = Path(member.name).name
            if not member.isfile() or name in ("", ".", ".."):
                continue
            source = archive.extractfile(member)
            assert source is not None
            target = folder / name
            with target.open("wb") as out:
                while block := source.read(1 << 20):
                    out.write(block)
            written.append(target)
    return written


def _client(base_url: str | None, timeout: int) -> docker.DockerClient:
    """A docker-py client of the engine at ``base_url`` (None: the environment's), pinged."""
    import docker
    import docker.errors

    try:
        if base_url:
            client = docker.DockerClient(base_url=base_url, timeout=timeout)
        else:
            client = docker.from_env(timeout=timeout)
        client.ping()
    except docker.errors.DockerException as exc:
        where = f" at {base_url}" if base_url else ""
        raise EngineError(f"cannot reach the Docker engine{where}: {_reason(exc)}", hint=START_HINT) from None
    return client


def _chunks(stream: Iterator[Any]) -> Iterator[dict[str, Any]]:
    for chunk in stream:
        if isinstance(chunk, dict):
            yield chunk


def _checked_stream(stream: Iterator[bytes], what: str) -> Iterator[bytes]:
    import docker.errors

    try:
        yield from stream
    except docker.errors.APIError as exc:
        raise EngineError(f"{what}: {_reason(exc)}") from None


def _reason(exc: Exception) -> str:
    explanation = getattr(exc, "explanation", None)
    if explanation:
        return str(explanation)
    return str(exc).strip() or type(exc).__name__


def _conforms(engine: DockerEngine) -> Engine:
    """mypy (scripts/test.sh) checks that the real engine implements the Engine protocol."""
    return engine
