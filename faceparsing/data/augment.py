"""Augmentation that keeps labels valid: flips swap left/right ids, labels warp nearest.

Each sample draws from its own generator, seeded by the dataset with
(seed, epoch, image_id), so results never depend on worker scheduling.
Every step over the pixels is one OpenCV call (which releases the GIL, so
worker threads run in parallel): one warp for the image and one for the label,
with the flip folded into the warp's matrix, then one colour pass.
"""

import functools

import cv2
import numpy as np

from faceparsing.classes import CELEBAMASK_HQ
from faceparsing.images import warp_affine

SCALE_RANGE = (0.75, 1.25)
MAX_ROTATION_DEGREES = 10.0
COLOR_JITTER = 0.2  # brightness, contrast and saturation factors in 1 +- 0.2


def horizontal_flip(image, label, class_set=CELEBAMASK_HQ):
    """Mirror an image (H, W, C) and its label (H, W), swapping left/right ids.

    After mirroring, the left eye sits where the right one was, so ids go
    through the class set's `flip_permutation` (CelebAMask-HQ: eyes, brows and
    ears trade places; lips don't).
    """
    image = np.ascontiguousarray(np.asarray(image)[:, ::-1])
    label = np.asarray(label)
    label = class_set.flip_permutation.astype(label.dtype)[label[:, ::-1]]
    return image, label


def augment_sample(image, label, rng, class_set=CELEBAMASK_HQ):
    """Randomly flip, scale, crop/pad, rotate and colour-jitter one sample.

    Geometry is one affine warp: bilinear for the image, nearest for the label
    (no invented ids); uncovered areas become black image and background label.
    A flipped label's ids then go through the class set's `flip_permutation`.

    Args:
        image: (H, W, 3) uint8 array.
        label: (H, W) uint8 array.
        rng: numpy Generator; seeding it per sample makes results independent
            of worker scheduling.
        class_set: ClassSet. Whose left/right pairs a flip swaps.
            Defaults to CelebAMask-HQ's.

    Returns:
        The augmented (H, W, 3) uint8 image and (H, W) uint8 label.
    """
    flip = rng.random() < 0.5
    size = label.shape[:2]
    scale = rng.uniform(*SCALE_RANGE)
    angle = np.deg2rad(rng.uniform(-MAX_ROTATION_DEGREES, MAX_ROTATION_DEGREES))
    # A zoomed-in face is cropped, a zoomed-out one padded, at a random place.
    shift = rng.uniform(-1, 1, size=2) * abs(scale - 1) * np.array(size[::-1]) / 2
    matrix = sampling_matrix(size, scale, angle, shift, flip)
    image = warp_affine(image, matrix, size)
    label = warp_affine(label, matrix, size, nearest=True)
    if flip:
        label = cv2.LUT(label, flip_table(class_set))
    return _jitter_colour(image, rng), label


def sampling_matrix(size, scale, angle, shift, flip):
    """(2, 3) matrix taking an output pixel to the input pixel it samples.

    The output is the input mirrored (if `flip`), then rotated by `angle`
    (radians) and scaled by `scale` about the centre, then moved by `shift`
    = (dx, dy) pixels. Pixel centres sit at integer coordinates.
    """
    height, width = size
    centre = np.array([(width - 1) / 2, (height - 1) / 2])
    cos, sin = np.cos(angle), np.sin(angle)
    inverse = np.array([[cos, sin], [-sin, cos]]) / scale
    if flip:
        inverse[0] = -inverse[0]  # mirror the input's x about the centre
    offset = centre - inverse @ (centre + shift)
    return np.column_stack([inverse, offset])


@functools.lru_cache(maxsize=16)
def flip_table(class_set):
    """cv2.LUT table mapping each id of a uint8 label map to its mirror id."""
    table = np.arange(256, dtype=np.uint8)
    table[: class_set.num_classes] = class_set.flip_permutation
    return table


# ITU-R 601-2 luma, the grey of Pillow's "L" mode and of cv2.COLOR_RGB2GRAY.
_LUMA = np.array([0.299, 0.587, 0.114])


def _jitter_colour(image, rng):
    """Brightness, contrast and saturation factors in 1 +- COLOR_JITTER, applied in turn.

    As Pillow's `ImageEnhance`: brightness scales values, contrast blends with
    the mean grey level, saturation blends each pixel with its own grey. All
    three are affine maps of a pixel's colour, so their composition is one
    3x4 colour matrix: one pass over the image, clipped to 0..255 at the end.
    """
    brightness, contrast, saturation = rng.uniform(1 - COLOR_JITTER, 1 + COLOR_JITTER, 3)
    # Every 4th row estimates the mean grey level well enough (a view: OpenCV reads it in place).
    mean = min(_LUMA @ cv2.mean(image[::4])[:3] * brightness, 255.0)
    # Rows of `saturate` sum to 1 (so do the luma weights): it keeps greys grey.
    saturate = saturation * np.eye(3) + (1 - saturation) * _LUMA[None, :]
    matrix = np.column_stack([contrast * brightness * saturate, np.full(3, (1 - contrast) * mean)])
    return cv2.transform(image, matrix)
