"""Every fatal rpibuild error, each with its own exit code.

Only ``rpibuild.cli.main`` catches these; it prints the message and the hint, never a
traceback, so a user mistake reads as a sentence and a script can branch on the code.
"""

from __future__ import annotations


class RpibuildError(Exception):
    """Base class: ``message`` says what failed, ``hint`` how to fix it."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class ConfigError(RpibuildError):
    """A profile is malformed: names the file, the line and the field path."""

    exit_code = 2

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

    exit_code = 3


class HostSetupError(RpibuildError):
    """The host lacks something a build needs (binfmt handler, qemu, debootstrap, disk)."""

    exit_code = 4


class BuildError(RpibuildError):
    """A stage failed; carries the stage name and the tail of its log."""

    exit_code = 5

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

    exit_code = 6


class Interrupted(RpibuildError):
    """Ctrl-C: work was stopped and cleaned up."""

    exit_code = 130
