import numpy as np

from faceparsing.classes import CLASS_IDS, FLIP_PERMUTATION
from faceparsing.data import augment
from faceparsing.images import warp_affine


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


def _random_blocks(size=64, seed=0):
    """A label of random rectangles of many ids and a matching textured image."""
    rng = np.random.default_rng(seed)
    label = np.zeros((size, size), np.uint8)
    for class_id in rng.choice(np.arange(1, 19), size=10, replace=False):
        top, left = rng.integers(0, size - 8, size=2)
        height, width = rng.integers(4, size // 2, size=2)
        label[top : top + height, left : left + width] = class_id
    image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    return image, label


def _was_flipped(seed):
    return np.random.default_rng(seed).random() < 0.5  # the first draw of augment_sample


def test_augmentation_invents_no_ids_and_swaps_only_when_flipped():
    image, label = _random_blocks()
    present = set(np.unique(label).tolist())
    mirrored = {int(FLIP_PERMUTATION[i]) for i in present}
    for seed in range(12):
        out_image, out_label = augment.augment_sample(image, label, np.random.default_rng(seed))
        assert out_image.shape == image.shape and out_image.dtype == np.uint8
        assert out_label.shape == label.shape and out_label.dtype == np.uint8
        allowed = (mirrored if _was_flipped(seed) else present) | {0}
        assert set(np.unique(out_label).tolist()) <= allowed, seed


def test_augmentation_is_a_function_of_the_generator():
    image, label = _random_blocks(seed=1)
    first = augment.augment_sample(image, label, np.random.default_rng((3, 7, 11)))
    again = augment.augment_sample(image, label, np.random.default_rng((3, 7, 11)))
    other = augment.augment_sample(image, label, np.random.default_rng((3, 8, 11)))
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], other[0])


def test_flip_matrix_mirrors_exactly():
    image, label = _random_blocks(size=40, seed=2)
    matrix = augment.sampling_matrix((40, 40), 1.0, 0.0, np.zeros(2), flip=True)
    np.testing.assert_array_equal(
        warp_affine(label, matrix, (40, 40), nearest=True), label[:, ::-1]
    )
    np.testing.assert_array_equal(warp_affine(image, matrix, (40, 40)), image[:, ::-1])


def test_label_warp_matches_a_numpy_nearest_reference():
    # Where each output pixel reads from, computed independently of OpenCV.
    image, label = _random_blocks(size=96, seed=3)
    for seed in range(6):
        _, warped = augment.augment_sample(image, label, np.random.default_rng(seed))
        rng = np.random.default_rng(seed)
        flip = rng.random() < 0.5
        scale = rng.uniform(*augment.SCALE_RANGE)
        angle = np.deg2rad(rng.uniform(-augment.MAX_ROTATION_DEGREES, augment.MAX_ROTATION_DEGREES))
        shift = rng.uniform(-1, 1, size=2) * abs(scale - 1) * 96 / 2
        matrix = augment.sampling_matrix((96, 96), scale, angle, shift, flip)
        ys, xs = np.mgrid[0:96, 0:96]
        source = np.tensordot(matrix, np.stack([xs, ys, np.ones_like(xs)]), axes=1)
        columns, rows = np.floor(source + 0.5).astype(int)
        inside = (columns >= 0) & (columns < 96) & (rows >= 0) & (rows < 96)
        expected = np.where(inside, label[rows.clip(0, 95), columns.clip(0, 95)], 0)
        if flip:
            expected = FLIP_PERMUTATION[expected]
        # Positions exactly between two pixels may round either way.
        assert (warped == expected).mean() > 0.995, seed


def test_colour_jitter_is_brightness_then_contrast_then_saturation():
    image = np.random.default_rng(4).integers(60, 180, (32, 32, 3)).astype(np.uint8)
    rng = np.random.default_rng(5)
    brightness, contrast, saturation = np.random.default_rng(5).uniform(0.8, 1.2, 3)
    jittered = augment._jitter_colour(image, rng).astype(float)
    luma = np.array([0.299, 0.587, 0.114])
    expected = image * brightness
    grey_mean = (expected @ luma).mean()
    expected = grey_mean + contrast * (expected - grey_mean)
    grey = expected @ luma
    expected = grey[..., None] + saturation * (expected - grey[..., None])
    np.testing.assert_allclose(jittered, np.clip(expected, 0, 255), atol=2)
