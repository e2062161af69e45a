"""What every command-line script shares: one-line errors and exit codes.

A user mistake (a wrong path, a bad value, an unreadable file) is printed as one
`error: ...` line on stderr with exit status 2; FACEPARSING_DEBUG=1 raises it
again with its traceback.
"""

import argparse
import os
import sys

# Errors that mean "the user gave something wrong"; the project's own error types
# (faceparsing.errors) derive from ValueError.
USER_ERRORS = (ValueError, OSError)


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
            the user errors (which give 2).
    """
    try:
        return command(*args)
    except Exception as error:
        for error_type, exit_code in (*exit_codes, (USER_ERRORS, 2)):
            if isinstance(error, error_type):
                return report_user_error(error, exit_code)
        raise
