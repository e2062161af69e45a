"""export.py's command line (the conversions are tested in tests/inference/test_exporting.py)."""

import numpy as np

import export
from faceparsing.checkpoints import load_checkpoint


def test_keras_format_from_the_command_line(trained_run, tmp_path, capsys):
    out = tmp_path / "model.keras"
    arguments = [f"--checkpoint={trained_run / 'best.keras'}", "--format=keras", f"--out={out}"]
    assert export.main(arguments) == 0
    assert f"to {out}" in capsys.readouterr().out
    image = np.full((1, 32, 32, 3), 128, dtype="float32")
    expected = load_checkpoint(trained_run / "best.keras").predict_on_batch(image)
    np.testing.assert_allclose(load_checkpoint(out).predict_on_batch(image), expected, atol=1e-5)


def test_bad_format_is_one_line_exit_2(trained_run, tmp_path, capsys):
    arguments = [f"--checkpoint={trained_run / 'best.keras'}", "--format=onnx", "--out=x"]
    try:
        export.main(arguments)
    except SystemExit as exit_:
        assert exit_.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "invalid choice: 'onnx'" in error
