"""The project's error types: user mistakes that scripts report in one line.

Every script turns a `UserError` into one `error: ...` line and exit status 2;
any other exception (a bug here or in Keras/TensorFlow/JAX) keeps its
traceback. The subclasses also derive from `ValueError` or `OSError`, so code
that catches those keeps working.
"""


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
