"""The two kinds of failure a user can meet, so the CLI and the Action report them the same way.

Every error names the input it is about and says what is wrong in one line; the shells turn them into an
exit status (2 for usage, 1 for the rest) and never show a traceback unless asked to.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

Warn = Callable[[str], None]
"""Where a warning goes: stderr for the CLI, a ::warning:: annotation in the Action."""


class OciBuilderError(Exception):
    """A failure the user can act on. `subject` names the input (a flag, a file, a reference)."""

    exit_status = 1

    def __init__(self, subject: str, problem: str, *, path: Path | None = None) -> None:
        super().__init__(f"{subject}: {problem}" if subject else problem)
        self.subject = subject
        self.problem = problem
        self.path = path


class UsageError(OciBuilderError):
    """The command line or its values are malformed: nothing was read or written yet."""

    exit_status = 2


class InputError(OciBuilderError):
    """An input file is missing, unreadable or not what it claims to be."""


class OutputError(OciBuilderError):
    """The archive could not be written; any existing file at the destination is left as it was."""
