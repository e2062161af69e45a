import numpy as np
import pytest
from PIL import Image

from faceparsing.inference import alignment

# An upright face: eyes 40 px apart at y=100, mouth corners 30 px apart 40 px lower.
UPRIGHT = np.array([[80, 100], [120, 100], [100, 120], [85, 140], [115, 140]], dtype=float)


def similarity(angle_degrees, scale, shift):
    angle = np.deg2rad(angle_degrees)
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return lambda points: np.asarray(points) @ rotation.T + shift


def test_upright_face_square_by_hand():
    # eye_to_eye = (40, 0), eye_to_mouth = (0, 40): x = (40, 0) - rot90(0, 40) = (80, 0),
    # half side max(2 * 40, 1.8 * 40) = 80; centre = eyes + 0.1 * 40 down, +0.5 to pixel centres.
    centre, x_axis, y_axis = alignment.celebahq_square(UPRIGHT)
    np.testing.assert_allclose(centre, [100.5, 104.5])
    np.testing.assert_allclose(x_axis, [80, 0])
    np.testing.assert_allclose(y_axis, [0, 80])
    matrix = alignment.crop_to_photo_matrix(UPRIGHT, 64)
    np.testing.assert_allclose(
        alignment.crop_corners(matrix, 64),
        [[20.5, 24.5], [20.5, 184.5], [180.5, 184.5], [180.5, 24.5]],
    )


def test_long_faces_are_framed_by_the_mouth_distance():
    # Eyes 20 px apart, mouth 50 px below: 1.8 * 50 = 90 > 2 * 20 sets the half side.
    landmarks = np.array([[90, 100], [110, 100], [100, 125], [92, 150], [108, 150]], dtype=float)
    _, x_axis, _ = alignment.celebahq_square(landmarks)
    assert np.hypot(*x_axis) == pytest.approx(90)
    _, wider, _ = alignment.celebahq_square(landmarks, crop_scale=1.5)
    assert np.hypot(*wider) == pytest.approx(135)


@pytest.mark.parametrize(
    ("angle", "scale", "shift"), [(30, 1.0, (0, 0)), (-75, 2.5, (40, -15)), (180, 0.4, (300, 200))]
)
def test_rotation_scale_and_translation_are_recovered(angle, scale, shift):
    # Landmarks moved by a similarity (in pixel-centre coordinates) give the square moved by it.
    move = similarity(angle, scale, np.array(shift, dtype=float))
    moved = move(UPRIGHT + 0.5) - 0.5
    matrix = alignment.crop_to_photo_matrix(moved, 100)
    crop_x_axis = matrix[:, 0] * 100  # the crop's top edge, in photo pixels
    direction = np.deg2rad(angle)
    np.testing.assert_allclose(
        crop_x_axis / np.hypot(*crop_x_axis), [np.cos(direction), np.sin(direction)], atol=1e-12
    )
    assert np.hypot(*crop_x_axis) == pytest.approx(160 * scale)
    centre = alignment.apply_affine(matrix, [[50, 50]])[0]
    np.testing.assert_allclose(centre, move([[100.5, 104.5]])[0], atol=1e-9)


def test_matrix_inverse_round_trip():
    matrix = alignment.crop_to_photo_matrix(similarity(20, 1.7, np.array([5.0, 9.0]))(UPRIGHT), 77)
    points = np.random.default_rng(0).uniform(0, 77, (10, 2))
    back = alignment.apply_affine(
        alignment.invert_affine(matrix), alignment.apply_affine(matrix, points)
    )
    np.testing.assert_allclose(back, points)


@pytest.mark.parametrize("landmarks", [np.zeros((4, 2)), np.full((5, 2), np.nan), np.zeros((5, 2))])
def test_bad_landmarks_are_refused(landmarks):
    with pytest.raises(ValueError, match="landmarks"):
        alignment.crop_to_photo_matrix(landmarks, 64)


def gradient_photo(height=60, width=80):
    rows, columns = np.mgrid[0:height, 0:width]
    return np.stack([rows * 4, columns * 3, (rows + columns) % 256], axis=-1).astype(np.uint8)


def test_crop_inside_the_photo_is_the_photo():
    photo = gradient_photo()
    translation = np.array([[1.0, 0, 10], [0, 1.0, 5]])  # crop pixel (u, v) = photo (u + 10, v + 5)
    np.testing.assert_array_equal(
        alignment.warp_to_crop(photo, translation, 40), photo[5:45, 10:50]
    )


def test_crop_leaving_the_photo_is_mirrored_not_black():
    photo = gradient_photo()
    translation = np.array([[1.0, 0, -6], [0, 1.0, 10]])  # six columns left of the photo
    crop = alignment.warp_to_crop(photo, translation, 40)
    np.testing.assert_array_equal(crop[:, 6:], photo[10:50, :34])
    np.testing.assert_array_equal(crop[:, :6], photo[10:50, 5::-1])


def test_large_regions_are_box_filtered_not_aliased():
    checkerboard = ((np.indices((256, 256)).sum(axis=0) % 2) * 255).astype(np.uint8)
    photo = np.repeat(checkerboard[..., None], 3, axis=-1)
    shrink = np.array([[4.0, 0, 0], [0, 4.0, 0]])  # 4 photo pixels per crop pixel
    crop = alignment.warp_to_crop(photo, shrink, 64).astype(float)
    assert np.abs(crop - 127.5).max() < 2


def test_label_map_round_trip_through_the_photo():
    # A crop-space label map warped onto a rotated, scaled photo and sampled back.
    size = 64
    rng = np.random.default_rng(1)
    blocks = rng.integers(0, 19, (8, 8)).astype(np.uint8)
    crop_label = np.asarray(Image.fromarray(blocks).resize((size, size), Image.NEAREST))
    landmarks = similarity(23, 0.9, np.array([130.0, 120.0]))(UPRIGHT - 100)
    matrix = alignment.crop_to_photo_matrix(landmarks, size)
    photo_shape = (260, 280)
    photo_label = np.zeros(photo_shape, np.uint8)
    covered = np.zeros(photo_shape, bool)
    one_hot = np.eye(19, dtype=np.float32)[crop_label]
    for (top, bottom, left, right), values, inside in alignment.warp_from_crop(
        one_hot, matrix, photo_shape, rows_per_chunk=50
    ):
        photo_label[top:bottom, left:right] = np.where(inside, values.argmax(-1), 0)
        covered[top:bottom, left:right] = inside
    # About side^2 photo pixels lie in the square (side = 160 * 0.9).
    assert covered.sum() == pytest.approx((160 * 0.9) ** 2, rel=0.02)
    coefficients = tuple(matrix.reshape(-1))
    back = Image.fromarray(photo_label).transform(
        (size, size), Image.AFFINE, coefficients, Image.NEAREST
    )
    agreement = (np.asarray(back) == crop_label).mean()
    assert agreement > 0.97


def test_label_crops_use_nearest_neighbour_and_mirror():
    label = np.zeros((40, 40), np.uint8)
    label[:, 20:] = 7
    label[:, 30:] = 12
    rotate = alignment.crop_to_photo_matrix(
        similarity(33, 0.35, np.array([20.0, 20.0]))(UPRIGHT - 100), 50
    )
    crop = alignment.warp_label_to_crop(label, rotate, 50)
    assert set(np.unique(crop)) <= {0, 7, 12}  # no id invented between 0, 7 and 12
    shifted = np.array([[1.0, 0, 25], [0, 1.0, 0]])  # 25 px right: columns 25..64, mirrored past 40
    crop = alignment.warp_label_to_crop(label, shifted, 40)
    np.testing.assert_array_equal(crop[:, :15], label[:, 25:40])
    np.testing.assert_array_equal(crop[:, 15:25], label[:, 39:29:-1])
