"""Host-wide locks for work that two rpibuild processes must not do at once.

A bootstrapped base is an image on the engine, which every user and CI job on the host shares,
so the lock is host-wide too (a folder in the system's temporary directory), not per cache.
``flock`` locks vanish with the process that held them: a killed build never leaves one stuck.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

LOCK_DIR_ENV = "RPIBUILD_LOCK_DIR"


def lock_dir() -> Path:
    return Path(os.environ.get(LOCK_DIR_ENV) or Path(tempfile.gettempdir()) / "rpibuild-locks")


@contextlib.contextmanager
def host_lock(name: str, *, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold the lock ``name`` (letters, digits, ``.-_``); ``on_wait`` is called once if another
    process holds it, before waiting for it."""
    if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
        raise ValueError(f"not a lock name: {name!r}")
    folder = lock_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(PermissionError):  # shared by every user of the engine
        folder.chmod(0o1777)
    fd = os.open(folder / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def is_held(name: str) -> bool:
    """Whether another process holds the lock ``name`` now (a look, never a wait: the lock is
    taken and released at once when it is free)."""
    path = lock_dir() / f"{name}.lock"
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
