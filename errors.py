"""The errors a user can fix, and how the command line shows them.

Every module's own error class for bad flags or bad files (ConfigError, DatasetError, VideoError,
...) derives from UserError; `utils.run_command` catches UserError, prints `error: <first line>`
and exits with code 2. Any other exception is a bug and keeps its traceback.
"""
from __future__ import annotations

import sys
from collections.abc import Callable


class UserError(ValueError):
    """An error the user can fix with a flag or a file; the command line prints its first line and exits 2."""


def first_line(err: BaseException) -> str:
    """The first non-empty line of an exception's message, or its type name when the message is empty."""
    for line in str(err).splitlines():
        if line.strip():
            return line.strip()
    return type(err).__name__


def run_script(main: Callable[[], int | None]) -> int:
    """Exit code of an argparse script's `main()`: a UserError prints `error: <first line>` on stderr
    and gives 2 (what `utils.run_command` does for the Click commands); anything else propagates."""
    try:
        return main() or 0
    except UserError as err:
        print(f"error: {first_line(err)}", file=sys.stderr)
        return 2
