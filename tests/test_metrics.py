import keras
import numpy as np
import pytest

from faceparsing import metrics


def test_confusion_matrix_counts_rows_as_truth():
    labels = np.array([0, 0, 1, 2])
    predictions = np.array([0, 1, 1, 1])
    confusion = metrics.confusion_matrix(labels, predictions, num_classes=3)
    assert confusion.tolist() == [[1, 1, 0], [0, 1, 0], [0, 1, 0]]


def test_scores_match_hand_computed_example():
    # class 0: tp 1, fn 1, fp 0 -> iou 1/2, f1 2/3
    # class 1: tp 1, fn 0, fp 2 -> iou 1/3, f1 2/4
    # class 2: tp 0, fn 1, fp 0 -> iou 0, f1 0
    # class 3: absent everywhere -> excluded
    confusion = metrics.confusion_matrix([0, 0, 1, 2], [0, 1, 1, 1], num_classes=4)
    scores = metrics.scores_from_confusion(confusion, class_names=["bg", "a", "b", "c"])
    assert scores["per_class"]["bg"]["iou"] == pytest.approx(0.5)
    assert scores["per_class"]["a"]["iou"] == pytest.approx(1 / 3)
    assert scores["per_class"]["a"]["f1"] == pytest.approx(0.5)
    assert scores["per_class"]["b"]["f1"] == 0.0
    assert scores["per_class"]["c"]["iou"] is None
    assert scores["absent_classes"] == ["c"]
    assert scores["miou"] == pytest.approx((0.5 + 1 / 3 + 0) / 3)
    assert scores["mean_f1"] == pytest.approx((0.5 + 0) / 2)  # background excluded
    assert scores["pixel_accuracy"] == pytest.approx(2 / 4)


def test_out_of_range_ids_are_rejected():
    with pytest.raises(ValueError, match="0..2"):
        metrics.confusion_matrix([0, 3], [0, 1], num_classes=3)


def _random_batch(seed, num_classes=19, shape=(2, 8, 8)):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes - 3, size=shape)  # some classes never occur
    logits = rng.normal(size=shape + (num_classes,)).astype("float32")
    return labels, logits


@pytest.mark.parametrize("target", ["integer", "onehot"])
def test_keras_metric_equals_numpy_and_keras_mean_iou(target):
    metric = metrics.SegmentationMeanIoU()
    reference = keras.metrics.MeanIoU(num_classes=19)
    confusion = np.zeros((19, 19), dtype=np.int64)
    for seed in range(3):
        labels, logits = _random_batch(seed)
        y_true = labels if target == "integer" else np.eye(19, dtype="float32")[labels]
        metric.update_state(y_true, logits, sample_weight=np.full(labels.shape, 7.0, "float32"))
        reference.update_state(labels, logits.argmax(-1))
        confusion += metrics.confusion_matrix(labels, logits.argmax(-1))
    expected = metrics.scores_from_confusion(confusion)["miou"]
    np.testing.assert_array_equal(metric.confusion_matrix(), confusion)  # exact integer counts
    assert metrics.scores_from_confusion(metric.confusion_matrix())["miou"] == expected
    assert float(metric.result()) == pytest.approx(expected, abs=1e-6)
    assert float(reference.result()) == pytest.approx(expected, abs=1e-6)
    metric.reset_state()
    assert np.isnan(float(metric.result()))  # nothing counted: NaN, as evaluate.py says
    assert np.isnan(metrics.scores_from_confusion(metric.confusion_matrix())["miou"])


def test_metric_counts_stay_exact_past_the_carry(monkeypatch):
    # float32 counts lose single pixels past 2**24; the int32 pair carries instead.
    monkeypatch.setattr(metrics.SegmentationMeanIoU, "CARRY", 16)
    metric = metrics.SegmentationMeanIoU()
    confusion = np.zeros((19, 19), dtype=np.int64)
    for seed in range(6):
        labels, logits = _random_batch(seed)
        logits[..., 0] += 2.0  # mostly "background": a few cells fill up fast
        metric.update_state(labels, logits)
        confusion += metrics.confusion_matrix(labels, logits.argmax(-1))
    assert confusion.max() > 16 and int(np.asarray(metric.high).max()) > 0
    np.testing.assert_array_equal(metric.confusion_matrix(), confusion)


def test_weight_zero_pixels_are_not_counted_and_others_count_once():
    labels, logits = _random_batch(6)
    weights = np.random.default_rng(1).uniform(0.1, 10, size=labels.shape).astype("float32")
    weights[1] = 0.0  # the second image is padding
    metric = metrics.SegmentationMeanIoU()
    metric.update_state(labels, logits, sample_weight=weights)
    expected = metrics.confusion_matrix(labels[:1], logits[:1].argmax(-1))
    np.testing.assert_array_equal(metric.confusion_matrix(), expected)


def test_metric_ignores_sample_weight():
    labels, logits = _random_batch(5)
    weighted, unweighted = metrics.SegmentationMeanIoU(), metrics.SegmentationMeanIoU()
    weights = np.random.default_rng(0).uniform(0.1, 10, size=labels.shape).astype("float32")
    weighted.update_state(labels, logits, sample_weight=weights)
    unweighted.update_state(labels, logits)
    assert float(weighted.result()) == float(unweighted.result())


def test_metric_does_not_count_pixels_of_weight_zero():
    labels, logits = _random_batch(6)
    padded_labels = np.concatenate([labels, np.zeros_like(labels[:1])])
    padded_logits = np.concatenate([logits, logits[:1]])
    weights = np.ones(padded_labels.shape, "float32")
    weights[-1] = 0.0  # the appended image is padding
    padded, plain = metrics.SegmentationMeanIoU(), metrics.SegmentationMeanIoU()
    padded.update_state(padded_labels, padded_logits, sample_weight=weights)
    plain.update_state(labels, logits)
    np.testing.assert_array_equal(padded.confusion_matrix(), plain.confusion_matrix())
    assert float(padded.result()) == float(plain.result())


def test_metric_config_round_trip():
    metric = metrics.SegmentationMeanIoU(num_classes=5, name="val_thing")
    clone = metrics.SegmentationMeanIoU.from_config(metric.get_config())
    assert clone.num_classes == 5 and clone.name == "val_thing"


def test_metric_compiles_under_jax_jit(repo):
    """Regressions: bincount under jax.jit and zeros_like(variable) broke training on JAX."""
    import os
    import subprocess
    import sys

    code = """
import jax, numpy as np
from faceparsing import metrics
metric = metrics.SegmentationMeanIoU()
labels = np.random.default_rng(0).integers(0, 19, (2, 8, 8))
logits = np.random.default_rng(1).normal(size=(2, 8, 8, 19)).astype("float32")
state = jax.jit(metric.stateless_update_state)([v.value for v in metric.variables], labels, logits)
expected = metrics.scores_from_confusion(metrics.confusion_matrix(labels, logits.argmax(-1)))["miou"]
assert abs(float(metric.stateless_result(state)) - expected) < 1e-6
metric.update_state(labels, logits)
assert (metric.confusion_matrix() == metrics.confusion_matrix(labels, logits.argmax(-1))).all()
metric.reset_state()  # regression: zeros_like(variable) failed on JAX
assert np.isnan(float(metric.result()))
"""
    environment = {**os.environ, "KERAS_BACKEND": "jax"}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=repo,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-1500:]
