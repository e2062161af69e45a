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
