"""Crash-safe file writes: a kill or a power cut at any moment leaves the old file or the new one.

A file is written to a temporary name beside it, flushed to disk (fsync),
renamed over the old one, and the rename itself is flushed by an fsync of
the folder.
"""

import contextlib
import errno
import os
import tempfile
from pathlib import Path

from faceparsing.errors import NoSpaceError, UnwritablePathError

# Errors of a full file system: the write is retried by rerunning once space is freed.
NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


@contextlib.contextmanager
def atomic_path(path, suffix=None, durable=True):
    """Yield a temporary path beside `path`; on success it replaces `path` atomically.

    The temporary file lives in the same folder (so `os.replace` is atomic) and
    keeps the final suffix, which Keras uses to choose the file format. Its
    content is fsynced before the rename and the folder after it, so the new
    file survives a power cut once this returns; `durable=False` leaves the
    fsyncs out, for files that are cheap to make again (caches, synthetic faces:
    a killed process still leaves the old file or the new one). A full file system raises
    `NoSpaceError` naming `path` and leaves the old file; write through Python
    file objects (not h5py straight to disk, whose failed writes crash the
    process later), so that the error arrives here.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = suffix if suffix is not None else "".join(path.suffixes)
    handle, temp_name = tempfile.mkstemp(
        prefix=f".{path.stem}.", suffix=f".tmp{suffix}", dir=path.parent
    )
    os.close(handle)
    os.unlink(temp_name)  # writers such as Keras refuse to overwrite without asking
    try:
        yield Path(temp_name)
        if durable:
            fsync_path(temp_name)
        os.replace(temp_name, path)
        if durable:
            fsync_path(path.parent)
    except OSError as error:
        if error.errno not in NO_SPACE_ERRNOS:
            raise
        # Named after the file the user knows, not the temporary one.
        raise NoSpaceError(error.errno, os.strerror(error.errno), str(path)) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)


def fsync_path(path):
    """Flush a file's content, or a folder's entries (renames), to the disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def remove_stale_temp_files(folder):
    """Delete temporary files that `atomic_path` left behind in `folder` when killed.

    Call it only when no other process is writing to `folder`.
    """
    for stale in Path(folder).glob(".*.tmp*"):
        if stale.is_file():
            stale.unlink(missing_ok=True)


def atomic_write_bytes(path, data, durable=True):
    """Write `data` to `path` so that readers see the old file or all of the new one."""
    with atomic_path(path, durable=durable) as temp_path:
        with open(temp_path, "wb") as handle:
            handle.write(data)


def atomic_write_text(path, text):
    atomic_write_bytes(path, text.encode("utf-8"))


def check_writable_dir(path):
    """Create `path` if needed and prove it is writable; raise a one-line OSError if not."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".write_probe", delete=True)
        probe.close()
    except OSError as error:
        raise UnwritablePathError(f"run_dir {path} is not writable: {error.strerror}") from None
