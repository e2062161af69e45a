"""The project's error types: user mistakes that scripts report in one line."""


class ConfigError(ValueError):
    """A user mistake in a config file or on the command line."""


class DatasetError(ValueError):
    """A dataset file is missing, unreadable or has the wrong size or layout."""


class ImageReadError(DatasetError):
    """A file that cannot be decoded as an image; the message names the file."""


class ImageNotFoundError(ImageReadError):
    """The image file does not exist (so callers need no separate existence check)."""


class CheckpointError(ValueError):
    """A checkpoint that is missing, cannot be loaded or is not a face-parsing model."""
