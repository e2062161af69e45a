"""cli: user mistakes become one line and an exit status; bugs keep their traceback."""

import pytest

from faceparsing import cli
from faceparsing.errors import ConfigError, DatasetError


def _raise(error):
    raise error


@pytest.mark.parametrize(
    "error", [ConfigError("bad key"), DatasetError("bad file"), OSError("gone")]
)
def test_user_errors_are_one_line_and_exit_2(error, capsys):
    assert cli.run_command(_raise, error) == 2
    assert capsys.readouterr().err == f"error: {error}\n"


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
