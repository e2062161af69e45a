"""Aligning a face the way CelebA-HQ was cut, and mapping crops back onto the photo.

CelebA-HQ (Karras et al., ICLR 2018, appendix C) cut every image as an oriented
square found from five landmarks (eye centres, nose tip, mouth corners): its
horizontal axis follows the eyes and the eye-to-mouth direction together, its
half side is the larger of twice the eye distance and 1.8 times the
eye-to-mouth distance, and its centre lies a tenth of the way from the eyes to
the mouth. A model trained on CelebAMask-HQ has only seen faces framed like
that, so a face in any photo is parsed best through the same square.

Coordinates are continuous pixel coordinates (x right, y down): pixel (row i,
column j) covers [j, j + 1] x [i, i + 1], which is the convention of Pillow's
transforms. Landmarks are given as pixel positions, as detectors and CelebA's
annotations give them, and moved to the pixel centre (+0.5) as the release
script does.

Everything here is NumPy and Pillow, so it imports without Keras.
"""

import numpy as np
from PIL import Image

from faceparsing.errors import ConfigError

NUM_LANDMARKS = 5
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
# The CelebA-HQ recipe: half side = max(EYE_SPAN * eye distance, MOUTH_SPAN *
# eye-to-mouth distance); centre = eyes + CENTRE_SHIFT * (mouth - eyes).
EYE_SPAN = 2.0
MOUTH_SPAN = 1.8
CENTRE_SHIFT = 0.1
# Sampling a crop from a region more than this many times larger first shrinks
# the region with a box filter, as the release script did, so it does not alias.
MAX_BILINEAR_SHRINK = 2


def rot90(vector):
    """The vector turned by +90 degrees in image coordinates (x right, y down)."""
    return np.array([-vector[1], vector[0]])


def check_landmarks(landmarks):
    """Return `landmarks` as float64 (5, 2), or raise ValueError saying what was received."""
    points = np.asarray(landmarks, dtype=np.float64)
    if points.shape != (NUM_LANDMARKS, 2) or not np.isfinite(points).all():
        raise ConfigError(
            f"landmarks must be 5 finite (x, y) points {LANDMARK_NAMES}, got shape {points.shape}"
        )
    return points


def celebahq_square(landmarks, crop_scale=1.0):
    """Centre and half axes of the CelebA-HQ square of a face.

    Args:
        landmarks: array-like (5, 2). Pixel positions (x, y) of the left eye,
            right eye, nose tip, left and right mouth corners; "left" is the one
            on the left of the image for an upright face, as in CelebA.
        crop_scale: float. Side of the square relative to CelebA-HQ's; above 1
            shows more around the face. Defaults to 1.0 (CelebA-HQ).

    Returns:
        (centre, x_axis, y_axis): three (2,) arrays in continuous coordinates;
        the square's corners are centre -/+ x_axis -/+ y_axis.
    """
    points = check_landmarks(landmarks) + 0.5
    eye_avg = (points[0] + points[1]) / 2
    mouth_avg = (points[3] + points[4]) / 2
    eye_to_eye = points[1] - points[0]
    eye_to_mouth = mouth_avg - eye_avg
    x_axis = eye_to_eye - rot90(eye_to_mouth)
    length = np.hypot(*x_axis)
    if length == 0:
        raise ConfigError(f"landmarks {points.tolist()} are degenerate: eyes and mouth coincide")
    half_side = max(np.hypot(*eye_to_eye) * EYE_SPAN, np.hypot(*eye_to_mouth) * MOUTH_SPAN)
    x_axis = x_axis / length * half_side * crop_scale
    # The release script also adds half a pixel to the quad it hands to Pillow: under 0.2%
    # of the crop at CelebA's resolution, left out so the square depends only on geometry.
    return eye_avg + eye_to_mouth * CENTRE_SHIFT, x_axis, rot90(x_axis)


def crop_to_photo_matrix(landmarks, size, crop_scale=1.0):
    """The 2x3 affine matrix taking crop coordinates (u, v) to photo coordinates (x, y).

    The crop is `size` x `size` pixels and shows the face's CelebA-HQ square
    (see `celebahq_square`); [x, y] = matrix @ [u, v, 1].
    """
    centre, x_axis, y_axis = celebahq_square(landmarks, crop_scale)
    top_left = centre - x_axis - y_axis
    return np.stack([2 * x_axis / size, 2 * y_axis / size, top_left], axis=1)


def invert_affine(matrix):
    """The inverse of a 2x3 affine matrix."""
    linear = np.linalg.inv(matrix[:, :2])
    return np.concatenate([linear, -linear @ matrix[:, 2:]], axis=1)


def apply_affine(matrix, points):
    """Map (N, 2) points by a 2x3 affine matrix."""
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def crop_corners(matrix, size):
    """The crop's four corners in the photo: top-left, bottom-left, bottom-right, top-right."""
    corners = np.array([[0, 0], [0, size], [size, size], [size, 0]], dtype=np.float64)
    return apply_affine(matrix, corners)


def warp_to_crop(image, matrix, size):
    """Sample the `size` x `size` crop of `image` (H, W, 3 uint8) that `matrix` describes.

    Where the square leaves the photo, the photo is mirrored (CelebA-HQ padded
    its crops by reflection, so the model knows such borders). A region much
    larger than the crop is first shrunk with a box filter, which keeps the
    bilinear sampling free of aliasing.
    """
    region, matrix = _source_region(image, matrix, size)
    scale = np.hypot(*matrix[:, 0])  # photo pixels per crop pixel
    picture = Image.fromarray(region)
    if scale >= MAX_BILINEAR_SHRINK:
        shrink = int(scale)
        picture = picture.reduce(shrink)
        matrix = matrix / shrink
    coefficients = tuple(matrix.reshape(-1))
    return np.asarray(picture.transform((size, size), Image.AFFINE, coefficients, Image.BILINEAR))


def warp_label_to_crop(label, matrix, size):
    """Sample the `size` x `size` crop of a label map (H, W) with nearest neighbour, which
    never invents ids; mirrored outside the photo, as `warp_to_crop` does for images."""
    region, matrix = _source_region(label, matrix, size)
    coefficients = tuple(matrix.reshape(-1))
    picture = Image.fromarray(np.asarray(region, dtype=np.uint8))
    return np.asarray(picture.transform((size, size), Image.AFFINE, coefficients, Image.NEAREST))


def _source_region(image, matrix, size):
    """The part of `image` under the crop (mirrored where it leaves the photo), and the
    matrix from the crop to that region."""
    corners = crop_corners(matrix, size)
    border = 2  # bilinear samples reach one pixel past the corners
    left, top = np.floor(corners.min(axis=0)).astype(int) - border
    right, bottom = np.ceil(corners.max(axis=0)).astype(int) + border
    height, width = image.shape[:2]
    rows, columns = mirrored_indices(top, bottom, height), mirrored_indices(left, right, width)
    region = image[rows[:, None], columns[None, :]]
    return np.ascontiguousarray(region), matrix - np.array([[0, 0, left], [0, 0, top]])


def mirrored_indices(start, stop, length):
    """Indices start..stop-1 reflected into 0..length-1 (edge pixels repeated, any distance)."""
    period = np.mod(np.arange(start, stop), 2 * length)
    return np.where(period < length, period, 2 * length - 1 - period)


def photo_window(matrix, size, photo_shape):
    """Rows and columns (top, bottom, left, right) of the photo that the crop covers,
    clipped to the photo; empty (top == bottom) when it covers none."""
    corners = crop_corners(matrix, size)
    height, width = photo_shape[:2]
    left, top = np.clip(np.floor(corners.min(axis=0)).astype(int), 0, [width, height])
    right, bottom = np.clip(np.ceil(corners.max(axis=0)).astype(int), 0, [width, height])
    return top, max(top, bottom), left, max(left, right)


def sample_bilinear(values, u, v):
    """Values (S, S, C) of a crop at continuous crop coordinates `u`, `v` (same shapes).

    Returns (values (*u.shape, C), inside (*u.shape) bool): points outside the
    crop square get the nearest border value and `inside` False.
    """
    size_v, size_u = values.shape[:2]
    inside = (u >= 0) & (u <= size_u) & (v >= 0) & (v <= size_v)
    # Pixel centres sit at +0.5; clamp so border pixels extend to the square's edge.
    column = np.clip(u - 0.5, 0, size_u - 1)
    row = np.clip(v - 0.5, 0, size_v - 1)
    column0 = np.minimum(column.astype(int), size_u - 2)
    row0 = np.minimum(row.astype(int), size_v - 2)
    weight_u = (column - column0)[..., None]
    weight_v = (row - row0)[..., None]
    top = (1 - weight_u) * values[row0, column0] + weight_u * values[row0, column0 + 1]
    bottom = (1 - weight_u) * values[row0 + 1, column0] + weight_u * values[row0 + 1, column0 + 1]
    return (1 - weight_v) * top + weight_v * bottom, inside


def warp_from_crop(values, matrix, photo_shape, rows_per_chunk=256):
    """Map crop values (S, S, C) back onto the photo with the inverse transform, bilinear.

    Args:
        values: float array (S, S, C). What was computed on the crop (logits).
        matrix: (2, 3) array. The crop-to-photo matrix the crop was sampled with.
        photo_shape: (H, W, ...). The photo's shape.
        rows_per_chunk: int. Photo rows sampled at once, which bounds memory.
            Defaults to 256.

    Yields:
        (window, values, inside) per chunk of rows: `window` = (top, bottom,
        left, right) in the photo, `values` (bottom - top, right - left, C) and
        `inside` (bottom - top, right - left) bool, False where the photo pixel
        lies outside the crop square.
    """
    size = values.shape[0]
    top, bottom, left, right = photo_window(matrix, size, photo_shape)
    inverse = invert_affine(matrix)
    xs = np.arange(left, right) + 0.5
    for start in range(top, bottom, rows_per_chunk):
        stop = min(start + rows_per_chunk, bottom)
        grid_x, grid_y = np.meshgrid(xs, np.arange(start, stop) + 0.5)
        u = inverse[0, 0] * grid_x + inverse[0, 1] * grid_y + inverse[0, 2]
        v = inverse[1, 0] * grid_x + inverse[1, 1] * grid_y + inverse[1, 2]
        sampled, inside = sample_bilinear(values, u, v)
        yield (start, stop, left, right), sampled, inside
