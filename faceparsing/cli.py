"""What every command-line script shares: one-line errors and exit codes.

A user mistake (a wrong path, a bad value, an unreadable file) is printed as one
`error: ...` line on stderr with exit status 2; FACEPARSING_DEBUG=1 raises it
again with its traceback. Any other exception keeps its traceback: a bug in
this project or in Keras/TensorFlow/JAX must not look like a usage error.
"""

import argparse
import errno
import os
import sys

from faceparsing.errors import UserError, take_recorded_batch_error

# What counts as the user's mistake: the project's own `UserError`s, and the file
# system refusing a path the user gave (missing, not allowed, full, read-only).
USER_ERRORS = (UserError, FileNotFoundError, PermissionError, IsADirectoryError,
               NotADirectoryError, FileExistsError)  # fmt: skip
USER_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EDQUOT}


def is_user_error(error):
    """Whether `error` is a user mistake (one line, exit 2) rather than a bug (traceback)."""
    if isinstance(error, USER_ERRORS):
        return True
    return isinstance(error, OSError) and error.errno in USER_ERRNOS


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad command line in one line (exit status 2), no usage dump."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def report_user_error(error, exit_code=2):
    """Print a user mistake as one `error: ...` line on stderr and return `exit_code`.

    With FACEPARSING_DEBUG=1 the exception is raised again, traceback and all.
    """
    if os.environ.get("FACEPARSING_DEBUG"):
        raise error
    print(f"error: {error}", file=sys.stderr)
    return exit_code


def run_command(command, *args, exit_codes=()):
    """Return `command(*args)`; a user error becomes one stderr line and an exit status.

    Args:
        command: callable returning the exit status.
        *args: its arguments (typically the parsed command line).
        exit_codes: sequence of (exception type, exit status) checked before
            the user errors (which give 2); anything else is raised again.
    """
    take_recorded_batch_error()  # forget what an earlier command in this process left
    try:
        return command(*args)
    except Exception as error:
        error = unwrapped_batch_error(error)
        for error_type, exit_code in exit_codes:
            if isinstance(error, error_type):
                return report_user_error(error, exit_code)
        if is_user_error(error):
            return report_user_error(error)
        raise


def unwrapped_batch_error(error):
    """`error`, or the user error that a batch source recorded before Keras' input
    pipeline wrapped it in another type (see `errors.record_batch_errors`)."""
    recorded = take_recorded_batch_error()
    if recorded is None or is_user_error(error):
        return error
    return recorded
