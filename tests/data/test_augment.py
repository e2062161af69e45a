import numpy as np
import pytest
from tiny_celebamask import write_tiny_root

from faceparsing.classes import CLASS_IDS
from faceparsing.data import augment


@pytest.fixture
def tiny_root(tmp_path):
    """Six images: ids 0-3 train, 4 val, 5 test."""
    return write_tiny_root(tmp_path)


def test_flip_swaps_left_right_but_not_lips():
    label = np.zeros((4, 6), np.uint8)
    label[0, :2] = CLASS_IDS["l_eye"]
    label[1, :2] = CLASS_IDS["l_brow"]
    label[2, :2] = CLASS_IDS["r_ear"]
    label[3, :2] = CLASS_IDS["u_lip"]
    image = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    flipped_image, flipped = augment.horizontal_flip(image, label)
    np.testing.assert_array_equal(flipped_image, image[:, ::-1])
    assert flipped[0, -1] == CLASS_IDS["r_eye"]
    assert flipped[1, -1] == CLASS_IDS["r_brow"]
    assert flipped[2, -1] == CLASS_IDS["l_ear"]
    assert flipped[3, -1] == CLASS_IDS["u_lip"]
    twice_image, twice = augment.horizontal_flip(flipped_image, flipped)
    np.testing.assert_array_equal(twice, label)
    np.testing.assert_array_equal(twice_image, image)
    assert twice.dtype == label.dtype


def test_augmentation_keeps_ids_valid_and_swaps_sides(tiny_root):
    label = np.zeros((40, 40), np.uint8)
    label[10:20, 5:15] = CLASS_IDS["l_eye"]
    label[25:35, 5:35] = CLASS_IDS["u_lip"]
    image = np.full((40, 40, 3), 128, np.uint8)
    for seed in range(8):
        _, augmented = augment.augment_sample(image, label, np.random.default_rng(seed))
        assert set(np.unique(augmented)) <= {0, CLASS_IDS["l_eye"], CLASS_IDS["r_eye"], 11}
    flips = [augment.augment_sample(image, label, np.random.default_rng(s))[1] for s in range(8)]
    assert any((f == CLASS_IDS["r_eye"]).any() for f in flips)
