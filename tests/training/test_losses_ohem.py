import keras
import numpy as np
import pytest
from keras import ops

from faceparsing.training import losses


def _per_pixel_cross_entropy(labels, logits):
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)
    return ops.convert_to_numpy(loss(labels, logits))


def test_ohem_keeps_the_hardest_pixels_of_each_image_at_their_mean():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 19, size=(2, 8, 8)).astype("int32")
    logits = rng.normal(scale=3, size=(2, 8, 8, 19)).astype("float32")
    loss = losses.OhemCrossEntropyLoss(keep_fraction=0.25)
    per_pixel = ops.convert_to_numpy(losses.OhemCrossEntropyLoss(reduction=None)(labels, logits))
    cross_entropy = _per_pixel_cross_entropy(labels, logits)
    for image in range(2):
        hardest = np.sort(cross_entropy[image].ravel())[::-1][:16]
        assert np.count_nonzero(per_pixel[image]) == 16
        assert per_pixel[image].mean() == pytest.approx(hardest.mean(), rel=1e-5)
    assert float(loss(labels, logits)) == pytest.approx(per_pixel.mean(), rel=1e-5)


def test_ohem_keeping_every_pixel_is_cross_entropy():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 19, size=(2, 5, 7)).astype("int32")
    logits = rng.normal(size=(2, 5, 7, 19)).astype("float32")
    value = float(losses.OhemCrossEntropyLoss(keep_fraction=1.0)(labels, logits))
    assert value == pytest.approx(_per_pixel_cross_entropy(labels, logits).mean(), rel=1e-5)


def test_ohem_is_built_by_name_serialises_and_checks_its_fraction():
    assert isinstance(losses.build_loss("ohem"), losses.OhemCrossEntropyLoss)
    loss = losses.OhemCrossEntropyLoss(keep_fraction=0.5, num_classes=7)
    clone = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(clone) is type(loss) and clone.get_config() == loss.get_config()
    with pytest.raises(ValueError, match="keep_fraction"):
        losses.OhemCrossEntropyLoss(keep_fraction=0.0)


def test_ohem_gradients_reach_only_the_kept_pixels_and_weights_apply():
    import tensorflow as tf

    rng = np.random.default_rng(2)
    labels = rng.integers(0, 19, size=(1, 4, 4)).astype("int32")
    logits = tf.Variable(rng.normal(scale=3, size=(1, 4, 4, 19)).astype("float32"))
    loss = losses.OhemCrossEntropyLoss(keep_fraction=0.25)
    with tf.GradientTape() as tape:
        value = loss(labels, logits)
    touched = np.abs(tape.gradient(value, logits).numpy()).sum(axis=-1) > 0
    assert touched.sum() == 4
    weights = np.zeros((1, 4, 4), "float32")
    assert float(loss(labels, logits, sample_weight=weights)) == 0.0
