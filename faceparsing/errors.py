"""The project's error types: user mistakes that scripts report in one line.

Every script turns a `UserError` into one `error: ...` line and exit status 2;
any other exception (a bug here or in Keras/TensorFlow/JAX) keeps its
traceback. The subclasses also derive from `ValueError` or `OSError`, so code
that catches those keeps working.
"""

import functools


def first_line(error, default=None):
    """The first non-empty line of `error`'s message (for one-line reports), or `default`
    (the exception's repr when None) if it has no text."""
    text = str(error).strip()
    if text:
        return text.splitlines()[0]
    return repr(error) if default is None else default


class UserError(Exception):
    """A mistake in what the user gave: an option, a path, a file, a dataset."""


class ConfigError(UserError, ValueError):
    """A user mistake in a config file, on the command line or in an argument."""


class DatasetError(UserError, ValueError):
    """A dataset file is missing, unreadable or has the wrong size or layout."""


class ImageReadError(DatasetError):
    """A file that cannot be decoded as an image; the message names the file."""


class ImageNotFoundError(ImageReadError):
    """The image file does not exist (so callers need no separate existence check)."""


class CheckpointError(UserError, ValueError):
    """A checkpoint that is missing, cannot be loaded or is not a face-parsing model."""


class RunFolderError(UserError, ValueError):
    """A run folder that cannot be resumed: another run's config, a broken resume state."""


class UnwritablePathError(UserError, OSError):
    """A folder the user named (run_dir, cache_dir, --out) that cannot be written."""


class NoSpaceError(UserError, OSError):
    """A write failed because the file system is full (or over quota); names the file."""


# A UserError raised while Keras reads a batch may reach the caller wrapped in
# another type: TensorFlow's `tf.data.Dataset.from_generator` turns it into an
# InvalidArgumentError with the original only in its message. The batch source
# records the first one before it crosses into tf.data, and the command-line
# handler (`faceparsing.cli.run_command`) reports that record instead.
_recorded_batch_errors = []


def record_batch_errors(get_batch):
    """Decorate a `__getitem__` that Keras calls: its UserErrors are recorded, then raised.

    Recording is thread-safe (list.append) and keeps the first error: later
    batches usually fail because of it, or are read after fit already stopped.
    """

    @functools.wraps(get_batch)
    def recording(*args, **kwargs):
        try:
            return get_batch(*args, **kwargs)
        except UserError as error:
            _recorded_batch_errors.append(error)
            raise

    return recording


def take_recorded_batch_error():
    """The first UserError recorded by `record_batch_errors` since the last call, or None."""
    recorded = _recorded_batch_errors[0] if _recorded_batch_errors else None
    _recorded_batch_errors.clear()
    return recorded
