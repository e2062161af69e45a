"""checkpoints: a `.keras` file loads in safe mode (its Python code never runs), a missing,
broken or wrong-class file is a CheckpointError naming it, and checkpoints of older versions
load and predict as they did."""

import json

import numpy as np
import pytest

import evaluate
from faceparsing.checkpoints import load_checkpoint
from faceparsing.classes import CELEBAMASK_HQ, CLASS_NAMES, class_set_of
from faceparsing.errors import CheckpointError


def test_a_bad_checkpoint_is_an_error_naming_it(bad_checkpoint):
    path, message = bad_checkpoint
    with pytest.raises(CheckpointError, match=message) as error:
        load_checkpoint(path)
    assert str(path) in str(error.value)


def test_keras_file_with_python_code_is_refused(tmp_path, assert_one_line_error):
    import keras

    marker = tmp_path / "code_ran"
    path = tmp_path / "lambda.keras"
    keras.Sequential([
        keras.Input((8, 8, 3)),
        keras.layers.Lambda(
            lambda x, marker=str(marker): __import__("pathlib").Path(marker).touch() or x
        ),
        keras.layers.Conv2D(19, 1),
    ]).save(path)  # fmt: skip
    marker.unlink(missing_ok=True)  # building the model ran the lambda once
    assert evaluate.main([f"--checkpoint={path}"]) == 2
    assert_one_line_error(path, "could not be loaded")
    assert not marker.exists()


@pytest.mark.slow
def test_19_class_checkpoint_of_main_loads_and_evaluates_unchanged(
    fixtures_dir, demo_root, tmp_path
):
    checkpoint = fixtures_dir / "main_7a2b71b_19class.keras"  # main before class sets
    expected = json.loads((fixtures_dir / "main_7a2b71b_19class.expected.json").read_text())
    model = load_checkpoint(checkpoint)
    assert class_set_of(model) == CELEBAMASK_HQ
    images = (np.arange(2 * 32 * 40 * 3).reshape(2, 32, 40, 3) % 256).astype("float32")
    logits = np.asarray(model.predict_on_batch(images))
    np.testing.assert_allclose(logits[0, 0, 0], expected["logits_at_0_0"], rtol=1e-4, atol=1e-4)
    assert (
        np.bincount(logits.argmax(-1).ravel(), minlength=19).tolist()
        == expected["argmax_histogram"]
    )
    arguments = [f"--checkpoint={checkpoint}", f"--data_root={demo_root}", "--split=test",
                 "--max_images=2", "--image_size=32", f"--out={tmp_path}"]  # fmt: skip
    assert evaluate.main(arguments) == 0
    assert tuple(json.loads((tmp_path / "report.json").read_text())["per_class"]) == CLASS_NAMES
