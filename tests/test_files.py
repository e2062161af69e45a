import pytest

from faceparsing.files import atomic_path, atomic_write_text, check_writable_dir


def test_atomic_write_replaces_whole_file(tmp_path):
    path = tmp_path / "metrics.csv"
    atomic_write_text(path, "old")
    atomic_write_text(path, "new")
    assert path.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "best.keras"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as temp_path:
            assert temp_path.name.endswith(".keras")
            temp_path.write_text("half")
            raise RuntimeError("killed")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["best.keras"]


def test_run_dir_under_a_file_is_not_writable(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError, match="is not writable"):
        check_writable_dir(blocker / "run")


def test_content_is_fsynced_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    import os

    from faceparsing import files

    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(descriptor):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{descriptor}")))
        return real_fsync(descriptor)

    def replace(source, destination):
        events.append(("replace", str(destination)))
        return real_replace(source, destination)

    monkeypatch.setattr(files.os, "fsync", fsync)
    monkeypatch.setattr(files.os, "replace", replace)
    path = tmp_path / "last.keras"
    with files.atomic_path(path) as temp_path:
        temp_path.write_bytes(b"weights")  # written by another library (Keras, matplotlib)
    assert events == [
        ("fsync", str(temp_path)),  # the content reaches the disk before it gets the name
        ("replace", str(path)),
        ("fsync", str(tmp_path)),  # and the rename itself
    ]


def test_full_file_system_names_the_final_path_and_leaves_no_temp(tmp_path):
    import errno

    from faceparsing.cli import is_user_error
    from faceparsing.errors import NoSpaceError

    target = tmp_path / "last.keras"
    target.write_text("old")
    with pytest.raises(NoSpaceError) as caught:
        with atomic_path(target) as temp_path:
            temp_path.write_text("half")
            raise OSError(errno.ENOSPC, "No space left on device", str(temp_path))
    assert str(caught.value) == f"[Errno 28] No space left on device: '{target}'"
    assert is_user_error(caught.value) and caught.value.errno == errno.ENOSPC
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["last.keras"]
