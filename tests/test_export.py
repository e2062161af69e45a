"""export.py's command line (the conversions are tested in tests/inference/test_exporting.py)."""

import sys

import numpy as np
import pytest

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
    arguments = [f"--checkpoint={trained_run / 'best.keras'}", "--format=coreml", "--out=x"]
    try:
        export.main(arguments)
    except SystemExit as exit_:
        assert exit_.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "invalid choice: 'coreml'" in error


@pytest.mark.slow
def test_onnx_with_a_fixed_size_from_the_command_line(trained_run, tmp_path, capsys):
    import onnxruntime

    out = tmp_path / "model.onnx"
    checkpoint = trained_run / "best.keras"
    arguments = [f"--checkpoint={checkpoint}", "--format=onnx", f"--out={out}", "--image_size=48"]
    assert export.main(arguments) == 0
    assert f"as onnx to {out}" in capsys.readouterr().out
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == ["batch", 48, 48, 3]
    assert session.get_modelmeta().custom_metadata_map["image_size"] == "48"
    images = np.random.default_rng(4).uniform(0, 255, (2, 48, 48, 3)).astype("float32")
    (logits,) = session.run(["logits"], {"images": images})
    expected = load_checkpoint(checkpoint).predict_on_batch(images)
    assert np.abs(logits - expected).max() <= 1e-3 * np.abs(expected).max()


def test_missing_onnx_exporter_is_one_line_exit_2(trained_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # makes `import onnx` fail
    out = tmp_path / "model.onnx"
    arguments = [f"--checkpoint={trained_run / 'best.keras'}", "--format=onnx", f"--out={out}"]
    assert export.main(arguments) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "needs the package 'onnx'" in error and "pip install" in error
    assert not out.exists()


def test_image_size_must_be_positive(trained_run, tmp_path, capsys):
    arguments = [f"--checkpoint={trained_run / 'best.keras'}", "--format=onnx",
                 f"--out={tmp_path / 'm.onnx'}", "--image_size=0"]  # fmt: skip
    assert export.main(arguments) == 2
    assert "--image_size must be a positive number of pixels, got 0" in capsys.readouterr().err


def test_dynamic_size_and_image_size_conflict_is_one_line_exit_2(trained_run, tmp_path, capsys):
    arguments = [f"--checkpoint={trained_run / 'best.keras'}", "--format=onnx",
                 f"--out={tmp_path / 'm.onnx'}", "--image_size=64", "--dynamic_size"]  # fmt: skip
    assert export.main(arguments) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "--image_size and --dynamic_size exclude each other" in error
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.slow
def test_lapa_run_exports_onnx_with_11_named_channels(lapa_run, tmp_path):
    import json

    from faceparsing.classes import LAPA

    onnx = pytest.importorskip("onnx")
    out = tmp_path / "lapa.onnx"
    assert (
        export.main([f"--checkpoint={lapa_run / 'best.keras'}", "--format=onnx", f"--out={out}"])
        == 0
    )
    proto = onnx.load(str(out))
    assert proto.graph.output[0].type.tensor_type.shape.dim[3].dim_value == 11
    metadata = {prop.key: prop.value for prop in proto.metadata_props}
    assert metadata["class_names"].split(",") == list(LAPA.names)
    assert json.loads(metadata["class_set"])["flip_pairs"] == [[2, 3], [4, 5]]
