"""The errors a user can fix, and how the command line shows them.

Every module's own error class for bad flags or bad files (ConfigError, DatasetError, VideoError,
...) derives from UserError; `utils.run_command` catches UserError, prints `error: <first line>`
and exits with code 2. Any other exception is a bug and keeps its traceback.
"""
from __future__ import annotations


class UserError(ValueError):
    """An error the user can fix with a flag or a file; the command line prints its first line and exits 2."""


def first_line(err: BaseException) -> str:
    """The first non-empty line of an exception's message, or its type name when the message is empty."""
    for line in str(err).splitlines():
        if line.strip():
            return line.strip()
    return type(err).__name__
