"""Split names, which every layout checks the same way."""

from faceparsing.errors import ConfigError

SPLITS = ("train", "val", "test", "all")


def check_split(split):
    """Raise a one-line ConfigError unless `split` is one of `SPLITS`."""
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")
