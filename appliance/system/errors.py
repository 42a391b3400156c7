"""Bulwark's error hierarchy.

Every error a user can meet is a subclass of :class:`BulwarkError`. The class docstring's first
line is the message template (formatted with the positional arguments), ``code`` is a stable
identifier used in API error bodies and logs, ``exit_status`` is the CLI's exit code for the
whole family, ``retryable`` says whether trying again can help, and ``hint`` tells the user what
to do next.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar


class BulwarkError(Exception):
    """Error: {}"""

    code: ClassVar[str] = "error"
    exit_status: ClassVar[int] = 1
    http_status: ClassVar[int] = 500
    retryable: ClassVar[bool] = False
    hint: ClassVar[str] = "See the appliance log for details."

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        self.args = args

    def template(self) -> str:
        doc = type(self).__doc__ or "{}"
        return doc.strip().splitlines()[0]

    @property
    def message(self) -> str:
        template = self.template()
        try:
            return template.format(*self.args)
        except (IndexError, KeyError):
            return f"{template} {self.args!r}"

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, object]:
        """The error as the API and ``--json`` outputs show it."""
        return {
            "code": self.code,
            "message": self.message,
            "hint": self.hint,
            "retryable": self.retryable,
        }


# --- families: each has its own exit status --------------------------------------------------


class InvalidInput(BulwarkError):
    """Invalid input: {}"""

    code = "invalid_input"
    exit_status = 3
    http_status = 400
    hint = "Correct the value and try again; nothing was changed."


class NotFound(BulwarkError):
    """Not found: {}"""

    code = "not_found"
    exit_status = 4
    http_status = 404
    hint = "Check the name; list what exists with the matching 'list' command."


class AlreadyExists(BulwarkError):
    """Already exists: {}"""

    code = "already_exists"
    exit_status = 5
    http_status = 409
    hint = "Choose another name, or use the existing one."


class Busy(BulwarkError):
    """In use: {}"""

    code = "busy"
    exit_status = 6
    http_status = 409
    retryable = True
    hint = "Wait for the work using it to finish, then try again."


class OutOfSpace(BulwarkError):
    """Out of space: {}"""

    code = "out_of_space"
    exit_status = 7
    http_status = 507
    hint = "Free space (prune old recovery points, raise a quota) or add disks to the pool."


class ExternalCommandError(BulwarkError):
    """A system program failed: {}"""

    code = "external_command_error"
    exit_status = 8
    http_status = 502


class CommandTimeout(ExternalCommandError):
    """{} did not finish within {} s and was stopped."""

    code = "command_timeout"
    exit_status = 9
    retryable = True
    hint = "The system may be overloaded or a disk may be hanging; check disk health and retry."


class UnexpectedOutput(BulwarkError):
    """Unexpected output from {}: {!r}"""

    code = "unexpected_output"
    exit_status = 10
    http_status = 502
    hint = "This version of a system program prints something Bulwark does not understand; report it."


class Unsupported(BulwarkError):
    """Not supported here: {}"""

    code = "unsupported"
    exit_status = 11
    http_status = 501
    hint = "This needs a capability that this system lacks (for example OpenZFS instead of zfs-fuse)."


class PermissionDenied(BulwarkError):
    """Permission denied: {}"""

    code = "permission_denied"
    exit_status = 12
    http_status = 403
    hint = "Sign in with an account whose role allows this."


class NotInitialized(BulwarkError):
    """The appliance is not set up in {}."""

    code = "not_initialized"
    exit_status = 13
    http_status = 503
    hint = "Run 'bulwark init' first (or pass the right --data-dir)."


class Conflict(BulwarkError):
    """Conflict: {}"""

    code = "conflict"
    exit_status = 14
    http_status = 409
    hint = "Reload to see the current state, then try again."


# --- command runner ---------------------------------------------------------------------------


class CommandFailed(ExternalCommandError):
    """{} exited with status {}: {}"""

    code = "command_failed"

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        super().__init__(argv[0] if argv else "?", returncode, stderr.strip() or "(no error output)")
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr


class CommandNotFound(ExternalCommandError):
    """The program {} is not installed."""

    code = "command_not_found"
    hint = "Install the appliance's system packages (see the README's first command)."


def all_error_classes() -> list[type[BulwarkError]]:
    """Every error class defined so far, depth first (for documentation and tests)."""
    seen: list[type[BulwarkError]] = []

    def walk(cls: type[BulwarkError]) -> None:
        seen.append(cls)
        for sub in cls.__subclasses__():
            walk(sub)

    walk(BulwarkError)
    return seen
