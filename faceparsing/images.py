"""Decoding images safely: one pixel limit, errors that name the file, EXIF-aware photos.

Every image the project reads, dataset file or user photo, is opened through
`open_image`, so all of them are refused above the same pixel limit before
decoding and fail with an `ImageReadError` that names the file.
"""

import contextlib
import glob
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from faceparsing.errors import ImageNotFoundError, ImageReadError
from faceparsing.files import atomic_path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")


def pixel_limit():
    """Pillow's `Image.MAX_IMAGE_PIXELS` (about 89 Mpx unless changed), read at call time."""
    return Image.MAX_IMAGE_PIXELS


@contextlib.contextmanager
def open_image(path, what="image", max_pixels=None):
    """Open `path` with Pillow, refusing it before decoding above the pixel limit.

    Any failure while the file is open, decoding inside the `with` block
    included, raises `ImageReadError("cannot read <what> <path>: <reason>")`.

    Args:
        path: str or Path. The file to open.
        what: str. What the file is, for the message ("image", "mask", ...).
        max_pixels: int or None. Largest width x height accepted. Defaults to
            `pixel_limit()`.
    """
    path = Path(path)
    limit = pixel_limit() if max_pixels is None else max_pixels
    try:
        with Image.open(path) as image:
            width, height = image.size
            if limit and width * height > limit:
                reason = (
                    f"{width}x{height} pixels exceeds the {limit}-pixel limit "
                    "(possible decompression bomb)"
                )
                raise ImageReadError(f"cannot read {what} {path}: {reason}")
            yield image
    except ImageReadError:
        raise
    except FileNotFoundError:
        raise ImageNotFoundError(f"cannot read {what} {path}: file not found") from None
    except UnidentifiedImageError:
        raise ImageReadError(f"cannot read {what} {path}: not a readable image") from None
    except Image.DecompressionBombError as error:  # not an OSError: a traceback without this
        reason = f"not a readable image, too large to decode safely ({error})"
        raise ImageReadError(f"cannot read {what} {path}: {reason}") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageReadError(f"cannot read {what} {path}: {error}") from None


def read_rgb(path, max_pixels=None):
    """Return the photo at `path` as uint8 RGB (H, W, 3), upright per its EXIF tag.

    Grayscale, palette, RGBA (composited on white), 16-bit and CMYK images are
    converted. Files that are not images, are truncated, or have more than
    `max_pixels` pixels raise ImageReadError naming the file.
    """
    with open_image(path, "photo", max_pixels) as image:
        return _to_rgb(ImageOps.exif_transpose(image))


def read_rgb_resized(path, size):
    """Decode an image as a (size, size, 3) uint8 RGB array, bilinear.

    JPEG draft mode decodes at a reduced scale (1/2, 1/4, 1/8) no smaller than
    `size`, which is much faster than decoding 1024x1024 and downsizing.
    """
    with open_image(path) as image:
        image.draft("RGB", (size, size))
        image = image.convert("RGB")
        if image.size != (size, size):
            image = image.resize((size, size), Image.BILINEAR)
        return np.asarray(image)


def _to_rgb(image):
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    elif image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        scale = 255.0 / max(array.max(), 1.0)
        image = Image.fromarray((array * scale).astype(np.uint8), mode="L")
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def resize_bilinear(image, size):
    """Resize a uint8 (H, W, C) array to `size` = (height, width), bilinear."""
    height, width = size
    if image.shape[:2] == (height, width):
        return image
    return np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))


def resize_nearest(label, size):
    """Resize a label map to `size` = (height, width) with nearest neighbour, which never
    invents ids."""
    height, width = size
    if label.shape[:2] == (height, width):
        return label
    return np.asarray(Image.fromarray(label).resize((width, height), Image.NEAREST))


def list_images(pattern):
    """Files named by a file path, a folder (its images, sorted) or a glob pattern."""
    path = Path(pattern)
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if path.is_file():
        return [path]
    return sorted(Path(p) for p in glob.glob(str(pattern), recursive=True) if Path(p).is_file())


def save_png(array, path):
    """Write a uint8 array (H, W) or (H, W, 3) as a PNG, atomically."""
    with atomic_path(path) as temp_path:
        Image.fromarray(np.asarray(array, dtype=np.uint8)).save(temp_path, format="PNG")
