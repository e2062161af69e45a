"""Class-weighting schemes: ordering, finiteness and mean-1 scaling on a toy histogram, exact
values, clipping, per-image balance, the synthetic set."""

import numpy as np
import pytest

from faceparsing.classes import CLASS_NAMES, NUM_CLASSES
from faceparsing.data import class_weights

RARE_CLASSES = ("eye_g", "hat", "ear_r", "neck_l")
COUNTS = np.array([5000, 2000, 800, 300, 120, 40, 9, 1] + [0] * (NUM_CLASSES - 8))


def test_weights_follow_the_published_formulas():
    present = COUNTS > 0
    frequency = COUNTS[present] / COUNTS.sum()
    expected = {
        "inverse_frequency": 1 / frequency,
        "per_image": 1 / frequency,
        "median_frequency": np.median(frequency) / frequency,
        "enet": 1 / np.log(1.02 + frequency),
    }
    for scheme, raw in expected.items():
        weights = class_weights.class_weights_from_counts(COUNTS, scheme)[present]
        # The schemes differ only up to the common scale that makes the pixel mean 1.
        np.testing.assert_allclose(weights / weights[0], raw / raw[0], rtol=1e-5, err_msg=scheme)


def test_enet_weights_are_bounded_unlike_inverse_frequency():
    enet = class_weights.class_weights_from_counts(COUNTS, "enet")
    inverse = class_weights.class_weights_from_counts(COUNTS, "inverse_frequency")
    assert enet.max() / enet.min() <= 1 / np.log(1.02) + 1e-3  # ~50.5, whatever the histogram
    assert inverse.max() / inverse.min() > 1000


@pytest.mark.parametrize("scheme", class_weights.WEIGHT_SCHEMES)
@pytest.mark.parametrize("max_weight", [0.5, 2.0, 10.0])
def test_clipping_caps_only_the_large_weights_and_keeps_the_order(scheme, max_weight):
    unclipped = class_weights.class_weights_from_counts(COUNTS, scheme)
    clipped = class_weights.class_weights_from_counts(COUNTS, scheme, max_weight=max_weight)
    assert np.all(np.isfinite(clipped)) and clipped.max() <= max_weight
    np.testing.assert_array_equal(clipped, np.minimum(unclipped, max_weight))
    present = COUNTS > 0
    assert np.all(np.diff(clipped[present]) >= 0)  # rarer (later) classes never get less


@pytest.mark.parametrize("max_weight", [0, -1.0, float("nan")])
def test_bad_max_weight_is_named(max_weight):
    with pytest.raises(ValueError, match="max_weight"):
        class_weights.class_weights_from_counts(COUNTS, "enet", max_weight=max_weight)


def test_per_image_weights_give_every_present_class_the_same_total():
    labels = np.zeros((2, 8, 8), np.uint8)
    labels[0, :2, :2] = 3  # 4 pixels of a rare class among 60 background pixels
    labels[1, :, 4:] = 14  # a different image with a different balance
    weights = class_weights.per_image_pixel_weights(labels)
    for image_labels, image_weights in zip(labels, weights, strict=True):
        totals = [
            image_weights[image_labels == class_id].sum() for class_id in np.unique(image_labels)
        ]
        np.testing.assert_allclose(totals, totals[0], rtol=1e-5)
    clipped = class_weights.per_image_pixel_weights(labels, max_weight=2.0)
    assert clipped[0][labels[0] == 3].max() < weights[0][labels[0] == 3].max()


def test_synthetic_training_split_has_rare_classes_that_get_the_largest_weights(demo_root):
    counts = class_weights.training_class_counts(demo_root)
    frequency = counts / counts.sum()
    skin = CLASS_NAMES.index("skin")
    rare = [CLASS_NAMES.index(name) for name in RARE_CLASSES]
    assert np.all(frequency[rare] < 0.01) and frequency[skin] > 0.05
    for scheme in ("inverse_frequency", "median_frequency", "enet"):
        weights = class_weights.class_weights_from_counts(counts, scheme)
        assert np.all(weights[rare] > weights[skin]), scheme


HISTOGRAM = np.array([1000, 500, 100, 10] + [0] * (NUM_CLASSES - 4))


@pytest.mark.parametrize("scheme", class_weights.WEIGHT_SCHEMES)
def test_rarer_classes_get_larger_weights(scheme):
    weights = class_weights.class_weights_from_counts(HISTOGRAM, scheme)
    assert weights.shape == (NUM_CLASSES,) and np.all(np.isfinite(weights))
    assert weights.min() > 0
    assert weights[0] < weights[1] < weights[2] < weights[3]
    assert np.all(weights[4:] == weights[:4].max())  # absent classes: finite, no division by 0
    assert np.isclose(np.sum(HISTOGRAM * weights) / HISTOGRAM.sum(), 1.0, rtol=1e-5)


def test_max_weight_clips_and_empty_counts_give_ones():
    assert (
        class_weights.class_weights_from_counts(
            HISTOGRAM, "inverse_frequency", max_weight=3.0
        ).max()
        == 3.0
    )
    np.testing.assert_array_equal(
        class_weights.class_weights_from_counts(np.zeros(NUM_CLASSES), "enet"), 1
    )
    with pytest.raises(ValueError, match="scheme"):
        class_weights.class_weights_from_counts(HISTOGRAM, "focal")


@pytest.mark.parametrize("present", [[0], [0, 1], [0, 3, 18]])
def test_pixel_weights_are_the_class_weights_and_per_image_ones_average_one(present):
    labels = np.array(present * 64)[:64].reshape(2, 4, 8).astype(np.uint8)
    vector = class_weights.class_weights_from_counts(HISTOGRAM, "median_frequency")
    weights = class_weights.pixel_weights(labels, vector)
    assert weights.dtype == np.float32 and weights.shape == labels.shape
    np.testing.assert_array_equal(weights, vector[labels])
    per_image = class_weights.per_image_pixel_weights(labels)
    assert per_image.dtype == np.float32 and per_image.shape == labels.shape
    assert np.all(np.isfinite(per_image)) and per_image.min() > 0
    np.testing.assert_allclose(per_image.mean(axis=(1, 2)), 1.0, rtol=1e-5)


def test_a_class_weighs_the_same_whatever_its_batch_mates():
    vector = class_weights.class_weights_from_counts(HISTOGRAM, "inverse_frequency", 5.0)
    alone = np.full((1, 4, 4), 2, np.uint8)
    with_skin = np.concatenate([alone, np.ones((1, 4, 4), np.uint8)])
    first = class_weights.pixel_weights(alone, vector)[0]
    second = class_weights.pixel_weights(with_skin, vector)[0]
    np.testing.assert_array_equal(first, second)
    assert class_weights.pixel_weights(with_skin, vector).max() <= 5.0  # a true bound


def test_counts_cover_exactly_the_ids_asked_for(demo_root, tmp_path):
    from faceparsing.data.release import merge_masks

    ids = [0, 5, 7]
    counts = class_weights.training_class_counts(demo_root, ids, tmp_path)
    expected = sum(class_weights.class_pixel_counts(merge_masks(demo_root, i)) for i in ids)
    np.testing.assert_array_equal(counts, expected)
    assert len(list(tmp_path.glob("class_counts_*.json"))) == 1
    other = class_weights.training_class_counts(demo_root, [1, 2], tmp_path)
    assert not np.array_equal(other, counts)
    assert len(list(tmp_path.glob("class_counts_*.json"))) == 2
