"""A stand-in for the container engine, for unit tests of the pipeline (build.py, artifacts.py).

It implements the ``rpibuild.engine.Engine`` protocol in memory: images are records, a build
returns what the test scripted, and every call is logged so a test can assert what the
pipeline did (and did not) ask of the engine. The real engine is covered by the
integration and e2e tests.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rpibuild.engine import (
    Builder,
    BuildEvent,
    BuildRequest,
    BuildResult,
    Engine,
    ImageInfo,
    StageTiming,
)
from rpibuild.engine.buildx import BuilderNode
from rpibuild.errors import BuildError

DOCKER_DRIVER = Builder(
    "default", "docker", (BuilderNode("default", "default", "running", ("linux/amd64", "linux/arm64")),)
)


@dataclass
class BuildSnapshot:
    """What the engine was handed: the context's files and the secrets' contents, read at build time."""

    request: BuildRequest
    context_files: dict[str, bytes]
    secrets: dict[str, str]


@dataclass
class FakeEngine:
    builder: Builder = DOCKER_DRIVER
    images: dict[str, ImageInfo] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    builds: list[BuildSnapshot] = field(default_factory=list)
    # What the next build does: return this result, or raise this error.
    build_result: BuildResult | None = None
    build_error: Exception | None = None
    build_events: list[BuildEvent] = field(default_factory=list)
    # A streamed container run (the torch compile): the files it leaves in the folder mounted
    # at /opt/rpibuild/wheels (file name -> bytes), its output lines and exit code.
    exports: dict[str, bytes] = field(default_factory=dict)
    run_lines: list[str] = field(default_factory=list)
    run_code: int = 0
    runs: list[dict[str, Any]] = field(default_factory=list)
    # Where it is reached; is_local: whether its containers can mount this host's folders
    # (False: a second engine, whose compile uses named volumes and copies its results out).
    address: str = "unix:///var/run/docker.sock"
    is_local: bool = True
    ncpu: int = 2
    # The engine behind the builder (another FakeEngine), when it is not this one.
    behind_builder: FakeEngine | None = None
    volumes: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> labels
    running: dict[str, list[str]] = field(default_factory=dict)  # label=value -> container ids
    loaded: list[bytes] = field(default_factory=list)

    def add_image(
        self, ref: str, platform: str, image_id: str | None = None, labels: dict[str, str] | None = None
    ) -> ImageInfo:
        os_, arch, *variant = platform.split("/")
        info = ImageInfo(
            id=image_id or f"sha256:{abs(hash(ref)):064x}"[:71],
            tags=(ref,),
            os=os_,
            architecture=arch,
            variant=variant[0] if variant else None,
            labels=dict(labels or {}),
            size=1,
        )
        self.images[ref] = info
        self.images[info.id] = info
        return info

    # ------------------------------------------------------------ Engine protocol
    def cpus(self) -> int:
        return self.ncpu

    def compile_engine(self) -> FakeEngine:
        return self.behind_builder or self

    def save_image(self, image: str) -> Iterator[bytes]:
        self.calls.append(f"save {image}")
        yield f"image {image}".encode()

    def load_stream(self, chunks: Iterator[bytes]) -> None:
        data = b"".join(chunks)
        self.calls.append("load stream")
        self.loaded.append(data)
        image = data.decode().removeprefix("image ")
        self.add_image(image, "linux/amd64", image_id=image)

    def ensure_volume(self, name: str, labels: dict[str, str]) -> None:
        self.calls.append(f"volume {name}")
        self.volumes.setdefault(name, dict(labels))

    def list_volumes(self, label: str) -> list[str]:
        key, _, value = label.partition("=")
        return sorted(n for n, labels in self.volumes.items() if labels.get(key) == value)

    def remove_volume(self, name: str) -> None:
        self.calls.append(f"remove volume {name}")
        self.volumes.pop(name, None)

    def version(self) -> dict[str, Any]:
        return {"Version": "fake"}

    def info(self) -> dict[str, Any]:
        return {}

    def image(self, ref: str) -> ImageInfo | None:
        self.calls.append(f"image {ref}")
        if ref in self.tags:
            return self.images.get(self.tags[ref])
        return self.images.get(ref)

    def list_images(self, label: str) -> list[ImageInfo]:
        key, _, value = label.partition("=")
        self.calls.append(f"list_images {label}")
        tagged = set(self.tags.values())
        return [
            info
            for info in self.images_by_id()
            if info.id in tagged and key in info.labels and (not value or info.labels[key] == value)
        ]

    def images_by_id(self) -> list[ImageInfo]:
        return list({info.id: info for info in self.images.values()}.values())

    def tag(self, image_id: str, reference: str) -> None:
        self.calls.append(f"tag {reference}")
        self.tags[reference] = image_id

    def untag(self, reference: str) -> None:
        self.calls.append(f"untag {reference}")
        self.tags.pop(reference, None)

    def remove_image(self, ref: str, *, force: bool = False) -> None:
        self.calls.append(f"remove {ref}")
        self.images.pop(ref, None)

    def load(self, tarball: Path) -> list[str]:
        self.calls.append(f"load {tarball.name}")
        return []

    def pull(self, reference: str, platform: str | None = None) -> str:
        self.calls.append(f"pull {reference}")
        raise AssertionError("the fake engine pulls nothing")

    def repo_digests(self, ref: str) -> list[str]:
        return []

    def build(
        self,
        request: BuildRequest,
        *,
        on_event: Callable[[BuildEvent], None] | None = None,
        log: Callable[[str], object] | None = None,
    ) -> BuildResult:
        self.calls.append("build")
        files = {
            p.relative_to(request.context).as_posix(): p.read_bytes()
            for p in request.context.rglob("*")
            if p.is_file()
        }
        secrets = {key: path.read_text() for key, path in request.secrets.items()}
        self.builds.append(BuildSnapshot(request, files, secrets))
        for event in self.build_events:
            if on_event:
                on_event(event)
            if log:
                log(event.line)
        if self.build_error is not None:
            raise self.build_error
        assert self.build_result is not None, "script the build: set build_result or build_error"
        return self.build_result

    def distribution(self, reference: str) -> dict[str, Any]:
        raise AssertionError("not used")

    def push(self, repository: str, tag: str, **_: Any) -> tuple[str | None, int | None]:
        raise AssertionError("not used")

    def run(self, image: str, command: list[str], **_: Any) -> tuple[int, str]:
        raise AssertionError("not used")

    def run_streaming(
        self,
        image: str,
        command: list[str],
        *,
        on_line: Callable[[str], None],
        volumes: dict[str, dict[str, str]] | None = None,
        **options: Any,
    ) -> int:
        self.calls.append(f"run {image}")
        self.runs.append({"image": image, "command": command, "volumes": volumes or {}, **options})
        for line in self.run_lines:
            on_line(line)
        if self.run_code == 0:
            copy_out = options.get("copy_out")
            if copy_out is not None:  # named volumes: the results come out of the container
                out = Path(copy_out[1])
                out.mkdir(parents=True, exist_ok=True)
            else:
                mounts = {bind["bind"]: Path(host) for host, bind in (volumes or {}).items()}
                out = mounts["/opt/rpibuild/wheels"]
            for name, data in self.exports.items():
                (out / name).write_bytes(data)
        return self.run_code

    def remove_labelled_containers(self, label: str) -> list[str]:
        self.calls.append(f"remove containers {label}")
        return []

    def running_labelled_containers(self, label: str) -> list[str]:
        return self.running.get(label, [])

    @contextlib.contextmanager
    def created_container(self, image: str, *, platform: str | None = None) -> Iterator[str]:
        self.calls.append(f"create {image}")
        yield f"container-of-{image}"

    def export_container(self, container: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        raise AssertionError("not used")

    def get_archive(self, container: str, path: str, chunk_size: int = 1 << 20) -> Iterator[bytes] | None:
        raise AssertionError("not used")


def stage_timings(*names: str, cached: bool = False) -> list[StageTiming]:
    return [StageTiming(name, 1.0, 2, 2 if cached else 0) for name in names]


def failing_build(stage: str, message: str, tail: list[str]) -> BuildError:
    return BuildError(f"stage {stage!r} failed: {message}", stage=stage, log_tail=tail)


def _conforms(engine: FakeEngine) -> Engine:
    """mypy (scripts/test.sh) checks that the fake engine implements the Engine protocol."""
    return engine
