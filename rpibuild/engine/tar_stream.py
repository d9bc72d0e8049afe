"""A ``get_archive`` tar stream opened as a tarfile, read as it arrives (never held whole).

docker-py hands a container's files over as an iterator of byte chunks; tarfile's stream mode
wants a file object. One adapter for every reader of such a stream (export, SBOM, the wheel a
compile on another engine leaves).
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterable, Iterator


class _ChunkStream(io.RawIOBase):
    """A read-only file over an iterator of byte chunks."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self._rest = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._rest:
            try:
                self._rest = next(self._chunks)
            except StopIteration:
                return 0
        size = min(len(buffer), len(self._rest))
        buffer[:size] = self._rest[:size]
        self._rest = self._rest[size:]
        return size


def open_tar_stream(chunks: Iterable[bytes]) -> tarfile.TarFile:
    """``chunks`` (a ``get_archive`` stream) as a tarfile in stream mode (members in order)."""
    return tarfile.open(fileobj=io.BufferedReader(_ChunkStream(chunks)), mode="r|")
