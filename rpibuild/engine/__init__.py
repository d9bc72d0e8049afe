"""The container engine behind one interface: everything else sees ``Engine`` and typed results.

- ``docker.py``: the real engine through docker-py (images, containers, tags, pushes,
  registry read-back); its ``build`` hands over to
- ``buildx.py``: builds through BuildKit (``docker buildx build``), builders, and
- ``progress.py``: BuildKit's rawjson progress folded into per-stage timings (pure).

The pipeline (build.py, artifacts.py, base.py, rootfs.py, publish/) is typed against the
``Engine`` protocol, so it can be exercised against a fake in unit tests.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from rpibuild.engine.buildx import Builder, BuildRequest, BuildResult
from rpibuild.engine.docker import START_HINT, DockerEngine, ImageInfo
from rpibuild.engine.progress import BuildEvent, StageTiming

__all__ = [
    "START_HINT",
    "BuildEvent",
    "BuildRequest",
    "BuildResult",
    "Builder",
    "DockerEngine",
    "Engine",
    "ImageInfo",
    "StageTiming",
    "connect",
]


class Engine(Protocol):
    """What rpibuild needs from a container engine."""

    @property
    def builder(self) -> Builder: ...

    # where it is reached (unix://, tcp://, ssh://), and whether its containers can mount
    # this host's folders
    address: str

    @property
    def is_local(self) -> bool: ...

    def cpus(self) -> int: ...
    def compile_engine(self) -> Engine: ...

    def version(self) -> dict[str, Any]: ...
    def info(self) -> dict[str, Any]: ...

    # images
    def image(self, ref: str) -> ImageInfo | None: ...
    def list_images(self, label: str) -> list[ImageInfo]: ...
    def tag(self, image_id: str, reference: str) -> None: ...
    def untag(self, reference: str) -> None: ...
    def remove_image(self, ref: str, *, force: bool = False) -> None: ...
    def load(self, tarball: Path) -> list[str]: ...
    def pull(self, reference: str, platform: str | None = None) -> str: ...
    def repo_digests(self, ref: str) -> list[str]: ...
    def save_image(self, image: str) -> Iterator[bytes]: ...
    def load_stream(self, chunks: Iterator[bytes]) -> None: ...

    # builds (BuildKit)
    def build(
        self,
        request: BuildRequest,
        *,
        on_event: Callable[[BuildEvent], None] | None = None,
        log: Callable[[str], object] | None = None,
    ) -> BuildResult: ...

    # registries
    def distribution(self, reference: str) -> dict[str, Any]: ...
    def push(
        self,
        repository: str,
        tag: str,
        *,
        auth_config: dict[str, str] | None = None,
        on_progress: Callable[[str], None] | None = None,
    ) -> tuple[str | None, int | None]: ...

    # containers
    def run(
        self,
        image: str,
        command: list[str],
        *,
        platform: str | None = None,
        environment: dict[str, str] | None = None,
        volumes: dict[str, dict[str, str]] | None = None,
    ) -> tuple[int, str]: ...
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
    ) -> int: ...
    def remove_labelled_containers(self, label: str) -> list[str]: ...
    def running_labelled_containers(self, label: str) -> list[str]: ...

    # volumes (the torch compile's folders on an engine that cannot mount this host's)
    def ensure_volume(self, name: str, labels: dict[str, str]) -> None: ...
    def list_volumes(self, label: str) -> list[str]: ...
    def remove_volume(self, name: str) -> None: ...
    def created_container(
        self, image: str, *, platform: str | None = None
    ) -> contextlib.AbstractContextManager[str]: ...
    def export_container(self, container: str, chunk_size: int = ...) -> Iterator[bytes]: ...
    def get_archive(self, container: str, path: str, chunk_size: int = ...) -> Iterator[bytes] | None: ...


def connect(*, builder: str | None = None, timeout: int = 600) -> DockerEngine:
    """The real engine (see ``DockerEngine.connect``)."""
    return DockerEngine.connect(builder=builder, timeout=timeout)
