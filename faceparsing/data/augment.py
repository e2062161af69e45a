"""Augmentation that keeps labels valid: flips swap left/right ids, labels warp nearest.

Each sample draws from its own generator, seeded by the dataset with
(seed, epoch, image_id), so results never depend on worker scheduling.
"""

import numpy as np
from PIL import Image, ImageEnhance, ImageStat

from faceparsing.classes import FLIP_PERMUTATION

SCALE_RANGE = (0.75, 1.25)
MAX_ROTATION_DEGREES = 10.0
COLOR_JITTER = 0.2  # brightness, contrast and saturation factors in 1 +- 0.2


def horizontal_flip(image, label):
    """Mirror an image (H, W, C) and its label (H, W), swapping left/right ids.

    After mirroring, the left eye sits where the right one was, so ids go
    through `FLIP_PERMUTATION` (eyes, brows and ears trade places; lips don't).
    """
    image = np.ascontiguousarray(np.asarray(image)[:, ::-1])
    label = np.asarray(label)
    label = FLIP_PERMUTATION.astype(label.dtype)[label[:, ::-1]]
    return image, label


def augment_sample(image, label, rng):
    """Randomly flip, scale, crop/pad, rotate and colour-jitter one sample.

    Geometry is one affine warp: bilinear for the image, nearest for the label
    (no invented ids); uncovered areas become black image and background label.

    Args:
        image: (S, S, 3) uint8 array.
        label: (S, S) uint8 array.
        rng: numpy Generator; seeding it per sample makes results independent
            of worker scheduling.
    """
    # Everything runs on PIL images: its C loops are several times faster
    # than numpy's strided copies for flips and per-pixel tables.
    image, label = Image.fromarray(image), Image.fromarray(label)
    if rng.random() < 0.5:
        image, label = _flip_images(image, label)
    size = label.height
    scale = rng.uniform(*SCALE_RANGE)
    angle = np.deg2rad(rng.uniform(-MAX_ROTATION_DEGREES, MAX_ROTATION_DEGREES))
    # A zoomed-in face is cropped, a zoomed-out one padded, at a random place.
    shift = rng.uniform(-1, 1, size=2) * abs(scale - 1) * size / 2
    coefficients = _affine_coefficients(size, scale, angle, shift)
    image = image.transform(
        (size, size), Image.AFFINE, coefficients, resample=Image.BILINEAR, fillcolor=(0, 0, 0)
    )
    label = label.transform(
        (size, size), Image.AFFINE, coefficients, resample=Image.NEAREST, fillcolor=0
    )
    image = _jitter_colour(image, rng)
    return np.asarray(image), np.asarray(label)


# `Image.point` table mapping each id of an "L" label image to its mirror id.
_FLIP_TABLE = [int(i) for i in FLIP_PERMUTATION] + list(range(len(FLIP_PERMUTATION), 256))


def _flip_images(image, label):
    """`horizontal_flip` for a PIL image and its uint8 ("L") PIL label."""
    mirror = Image.Transpose.FLIP_LEFT_RIGHT
    return image.transpose(mirror), label.transpose(mirror).point(_FLIP_TABLE)


def _jitter_colour(image, rng):
    """`ImageEnhance` Brightness, Contrast and Color with factors in 1 +- COLOR_JITTER.

    Brightness and contrast blend with a constant image, so they are per-value
    tables, built by `Image.blend` itself on a ramp: the result is exactly
    that of `ImageEnhance`, without two full-size blends.
    """
    factor = rng.uniform(1 - COLOR_JITTER, 1 + COLOR_JITTER)
    image = image.point(_blend_table(0, factor) * len(image.getbands()))
    factor = rng.uniform(1 - COLOR_JITTER, 1 + COLOR_JITTER)
    mean = int(ImageStat.Stat(image.convert("L")).mean[0] + 0.5)  # as ImageEnhance.Contrast
    image = image.point(_blend_table(mean, factor) * len(image.getbands()))
    factor = rng.uniform(1 - COLOR_JITTER, 1 + COLOR_JITTER)
    return ImageEnhance.Color(image).enhance(factor)


_RAMP = Image.frombytes("L", (256, 1), bytes(range(256)))


def _blend_table(constant, factor):
    """`Image.blend(constant, value, factor)` for every uint8 value, as a list."""
    return list(Image.blend(Image.new("L", (256, 1), constant), _RAMP, factor).getdata())


def _affine_coefficients(size, scale, angle, shift):
    # PIL maps each output pixel back to an input pixel: input = A @ output + b.
    center = np.array([size / 2, size / 2])
    cos, sin = np.cos(angle), np.sin(angle)
    inverse = np.array([[cos, sin], [-sin, cos]]) / scale
    offset = center - inverse @ (center + shift)
    return (inverse[0, 0], inverse[0, 1], offset[0], inverse[1, 0], inverse[1, 1], offset[1])
