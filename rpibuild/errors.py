"""Every fatal rpibuild error, each with its own exit code, and the one table of exit codes.

Only ``rpibuild.cli.main`` catches these; it prints the message and the hint, never a
traceback, so a user mistake reads as a sentence and a script can branch on the code. The
codes live in one enum (``ExitCode``) that every exit uses; the README's table is checked
against it by a unit test, so the two cannot drift apart.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """What rpibuild's exit status means; ``meaning`` is the README table's wording."""

    meaning: str

    def __new__(cls, value: int, meaning: str) -> ExitCode:
        member = int.__new__(cls, value)
        member._value_ = value
        member.meaning = meaning
        return member

    OK = 0, "ok"
    CHECK_FAILED = 1, "a check failed (doctor, qemu status)"
    USAGE = 2, "bad profile or usage"
    ENGINE = 3, "the container engine is unreachable or refused a request"
    HOST_SETUP = 4, "host not set up (a tool, binfmt handler, permission or disk space missing)"
    BUILD_FAILED = 5, "a build stage failed"
    REGISTRY = 6, "registry error (login, push, digest check)"
    DOWNLOAD = 7, "a download failed or did not match its pin"
    IMAGE_MISSING = 8, "an image rpibuild needs is not on the engine (build it first)"
    EXPORT = 9, "an export failed (a truncated stream from the engine, a compressor failed)"
    INTERNAL = 10, "internal error: a bug in rpibuild (RPIBUILD_DEBUG=1 shows the traceback)"
    INTERRUPTED = 130, "interrupted (Ctrl-C, SIGTERM): cleaned up, no tag moved"


class RpibuildError(Exception):
    """Base class: ``message`` says what failed, ``hint`` how to fix it."""

    exit_code: ExitCode = ExitCode.INTERNAL

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class ConfigError(RpibuildError):
    """A profile is malformed: names the file, the line and the field path."""

    exit_code = ExitCode.USAGE

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        where = file or "<profile>"
        if line is not None:
            where += f":{line}"
        prefix = f"{where}: " + (f"{field}: " if field else "")
        super().__init__(prefix + message, hint)
        self.file, self.line, self.field = file, line, field
        self.reason = message  # without the location, for re-raising it at another one


class EngineError(RpibuildError):
    """The container engine is unreachable or refused a request."""

    exit_code = ExitCode.ENGINE


class HostSetupError(RpibuildError):
    """The host lacks something a build needs (binfmt handler, qemu, debootstrap, disk)."""

    exit_code = ExitCode.HOST_SETUP


class BuildError(RpibuildError):
    """A stage failed; carries the stage name and the tail of its log."""

    exit_code = ExitCode.BUILD_FAILED

    def __init__(
        self,
        message: str,
        *,
        stage: str | None = None,
        log_tail: list[str] | None = None,
        log_file: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint)
        self.stage = stage
        self.log_tail = log_tail or []
        self.log_file = log_file


class RegistryError(RpibuildError):
    """Login, push or digest check against a registry failed."""

    exit_code = ExitCode.REGISTRY


class DownloadError(BuildError):
    """A pinned source could not be downloaded, or is not what its pin says (a BuildError of
    the ``sources`` step, with its own code: the fix is the network or the pin, not the build)."""

    exit_code = ExitCode.DOWNLOAD


class ImageMissing(RpibuildError):
    """An image a command works on (push, rootfs, artifacts) is not on the engine."""

    exit_code = ExitCode.IMAGE_MISSING


class ExportError(RpibuildError):
    """Exporting an image's files failed: the engine's stream ended early, a compressor died."""

    exit_code = ExitCode.EXPORT


class InternalError(RpibuildError):
    """An exception no code foresaw: a bug in rpibuild, reported as one."""

    exit_code = ExitCode.INTERNAL


class Interrupted(RpibuildError):
    """Ctrl-C: work was stopped and cleaned up."""

    exit_code = ExitCode.INTERRUPTED
