"""cli: user mistakes become one line and an exit status; bugs keep their traceback."""

import pytest

from faceparsing import cli
from faceparsing.errors import ConfigError, DatasetError


def _raise(error):
    raise error


@pytest.mark.parametrize(
    "error",
    [
        ConfigError("bad key"),
        DatasetError("bad file"),
        FileNotFoundError(2, "No such file or directory", "photos/a.jpg"),
        PermissionError(13, "Permission denied", "/runs"),
        OSError(28, "No space left on device"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(error, capsys):
    assert cli.run_command(_raise, error) == 2
    assert capsys.readouterr().err == f"error: {error}\n"


@pytest.mark.parametrize(
    "error",
    [
        ValueError("Invalid dtype: object"),  # e.g. raised inside Keras: a bug, not a usage error
        OSError("Unable to synchronously open object (bad symbol table)"),  # h5py internals
        TypeError("unsupported operand"),
    ],
)
def test_plain_value_and_os_errors_keep_their_traceback(error):
    with pytest.raises(type(error)):
        cli.run_command(_raise, error)


def test_the_project_raises_its_own_error_type_for_user_mistakes():
    from faceparsing.data.layout import split_ids
    from faceparsing.errors import UserError
    from faceparsing.files import check_writable_dir

    with pytest.raises(UserError, match="split must be one of"):
        split_ids("/nonexistent", "training")
    with pytest.raises(UserError, match="is not writable"):
        check_writable_dir("/proc/forbidden")


def test_listed_exit_codes_come_first(capsys):
    assert cli.run_command(_raise, RuntimeError("diverged"), exit_codes=[(RuntimeError, 1)]) == 1
    assert capsys.readouterr().err == "error: diverged\n"


def test_other_errors_keep_their_traceback():
    with pytest.raises(KeyError):
        cli.run_command(_raise, KeyError("bug"))


def test_debug_mode_raises_user_errors_too(monkeypatch):
    monkeypatch.setenv("FACEPARSING_DEBUG", "1")
    with pytest.raises(ConfigError):
        cli.run_command(_raise, ConfigError("bad key"))


def test_return_value_is_the_exit_status():
    assert cli.run_command(lambda a, b: a + b, 1, 2) == 3


def test_argument_parser_errors_are_one_line(capsys):
    parser = cli.ArgumentParser(prog="tool")
    parser.add_argument("--size", type=int)
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["--size", "big"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == "tool: error: argument --size: invalid int value: 'big'\n"


def test_cuda_start_up_error_is_hidden_only_without_a_gpu_driver(tmp_path):
    import faceparsing

    driver = tmp_path / "version"
    assert faceparsing.default_tf_log_level(driver) == "3"  # CPU-only: nothing real to hide
    driver.write_text("NVRM version: ...")
    assert faceparsing.default_tf_log_level(driver) == "2"  # a driver: its errors are shown
