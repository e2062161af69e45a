"""Checkpoints load with one import, old-layout checkpoints included, and the registered
names that saved files refer to never change."""

import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from faceparsing import serialization
from faceparsing.checkpoints import load_checkpoint

# What saved .keras files call the project's classes; renaming any breaks old checkpoints.
REGISTERED_NAMES = {
    "faceparsing>AtrousConv2D", "faceparsing>AtrousDepthwiseConv2D",
    "faceparsing>AtrousSeparableConv2D", "faceparsing>ConvBNReLU", "faceparsing>DeepLabV3Plus",
    "faceparsing>DeepLabV3PlusDecoder", "faceparsing>SpatialPyramidPooling",
    "faceparsing>DiceCrossEntropyLoss", "faceparsing>FocalLoss", "faceparsing>ImagePreprocessing",
    "faceparsing>LovaszSoftmaxLoss", "faceparsing>ResizeLike", "faceparsing>SegmentationMeanIoU",
    "faceparsing>WarmupPolyDecay",
}  # fmt: skip


def _fixed_input():
    return (np.arange(2 * 32 * 40 * 3).reshape(2, 32, 40, 3) % 256).astype("float32")


def test_registered_names_are_unchanged():
    names = {keras.saving.get_registered_name(cls) for cls in serialization.REGISTERED_CLASSES}
    assert names == REGISTERED_NAMES
    for name in REGISTERED_NAMES:
        assert keras.saving.get_registered_object(name) is not None, name


@pytest.fixture
def old_checkpoint(fixtures_dir):
    """A checkpoint saved by v0.1, before the package layout of today."""
    return fixtures_dir / "old_layout_v0.1.keras"


def test_old_layout_checkpoint_loads_and_predicts_as_it_did(old_checkpoint, fixtures_dir):
    expected = json.loads((fixtures_dir / "old_layout_v0.1.expected.json").read_text())
    model = load_checkpoint(old_checkpoint)
    logits = np.asarray(model.predict_on_batch(_fixed_input()))
    assert logits.shape == (2, 32, 40, 19)
    np.testing.assert_allclose(logits[0, 0, 0], expected["logits_at_0_0"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        logits[1, 31, 39], expected["logits_at_1_31_39"], rtol=1e-4, atol=1e-4
    )
    assert float(logits.astype("float64").sum()) == pytest.approx(expected["logits_sum"], rel=1e-4)
    histogram = np.bincount(logits.argmax(-1).ravel(), minlength=19).tolist()
    assert histogram == expected["argmax_histogram"]


# A fresh interpreter, so that nothing imported by the test session registers a class.
ONE_IMPORT = """
import sys, keras
import {module}
model = keras.saving.load_model(sys.argv[1])
print(type(model).__name__, type(model.loss).__name__,
      model.optimizer.get_config()["learning_rate"]["class_name"])
"""


@pytest.mark.parametrize("module", ["deeplab", "faceparsing.serialization"])
@pytest.mark.parametrize("which", ["old_layout", "trained_run"])
def test_one_import_loads_a_training_checkpoint_with_its_compile_config(
    module, which, old_checkpoint, trained_run, repo
):
    # docs/training.md's snippet: `import deeplab`, then keras.saving.load_model. A training
    # checkpoint also holds the schedule, the loss and the metric, once a missing class.
    checkpoint = old_checkpoint if which == "old_layout" else trained_run / "best.keras"
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(ONE_IMPORT.format(module=module)), str(checkpoint)],
        cwd=repo, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    model_class, loss_class, schedule_class = result.stdout.split()[-3:]
    assert model_class == "DeepLabV3Plus"
    assert schedule_class == "WarmupPolyDecay"
    if which == "old_layout":
        assert loss_class == "FocalLoss"
