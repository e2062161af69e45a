import numpy as np
import pytest

from faceparsing.checkpoints import load_checkpoint
from faceparsing.inference import exporting


def test_keras_export_round_trips(trained_run, tmp_path):
    out = exporting.export(trained_run / "best.keras", "keras", tmp_path / "model.keras")
    image = np.random.default_rng(0).uniform(0, 255, (1, 32, 32, 3)).astype("float32")
    original = load_checkpoint(trained_run / "best.keras").predict_on_batch(image)
    np.testing.assert_allclose(load_checkpoint(out).predict_on_batch(image), original, atol=1e-5)


@pytest.mark.parametrize(("quantize", "tolerance"), [("none", 1e-3), ("float16", 0.1)])
def test_tflite_export_matches_keras(trained_run, tmp_path, quantize, tolerance):
    import tensorflow as tf

    out = exporting.export(
        trained_run / "best.keras", "tflite", tmp_path / "model.tflite", quantize=quantize
    )
    interpreter = tf.lite.Interpreter(model_path=str(out))
    interpreter.allocate_tensors()
    image = np.random.default_rng(1).uniform(0, 255, (1, 32, 32, 3)).astype("float32")
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image)
    interpreter.invoke()
    lite = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    expected = load_checkpoint(trained_run / "best.keras").predict_on_batch(image)
    assert lite.shape == expected.shape == (1, 32, 32, 19)
    np.testing.assert_allclose(lite, expected, atol=tolerance * max(1.0, np.abs(expected).max()))


def test_savedmodel_export_serves_the_same_logits(trained_run, tmp_path):
    import tensorflow as tf

    out = exporting.export(trained_run / "best.keras", "savedmodel", tmp_path / "saved")
    loaded = tf.saved_model.load(str(out))  # keep a reference: its variables live on it
    image = np.random.default_rng(2).uniform(0, 255, (1, 32, 32, 3)).astype("float32")
    expected = load_checkpoint(trained_run / "best.keras").predict_on_batch(image)
    np.testing.assert_allclose(loaded.serve(tf.constant(image)).numpy(), expected, atol=1e-4)
    assert not list(tmp_path.glob(".saved.*"))  # the staging folder is gone
