"""Decoding images safely: one pixel limit, errors that name the file, EXIF-aware photos.

Every image the project reads, dataset file or user photo, is opened through
`open_image`, so all of them are refused above the same pixel limit before
decoding and fail with an `ImageReadError` that names the file.

Pillow reads the headers (cheap, lazy); the data pipeline's pixels are decoded,
resized and warped by OpenCV, whose calls release the GIL, so that worker
threads decode in parallel.
"""

import contextlib
import glob
import io
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from faceparsing.errors import ImageNotFoundError, ImageReadError
from faceparsing.files import atomic_path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")

# The data pipeline runs in parallel through its worker threads (OpenCV releases
# the GIL); OpenCV's own thread pool inside every call would oversubscribe the
# cores, and it makes one thread look faster than it is.
cv2.setNumThreads(1)

# libjpeg decodes a JPEG at 1/2, 1/4 or 1/8 of its size for a fraction of the cost.
_REDUCED_JPEG_FLAGS = {
    8: cv2.IMREAD_REDUCED_COLOR_8,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    1: cv2.IMREAD_COLOR,
}
_JPEG_END = b"\xff\xd9"


def pixel_limit():
    """Pillow's `Image.MAX_IMAGE_PIXELS` (about 89 Mpx unless changed), read at call time."""
    return Image.MAX_IMAGE_PIXELS


@contextlib.contextmanager
def open_image(path, what="image", max_pixels=None, data=None):
    """Open `path` with Pillow, refusing it before decoding above the pixel limit.

    Any failure while the file is open, decoding inside the `with` block
    included, raises `ImageReadError("cannot read <what> <path>: <reason>")`.

    Args:
        path: str or Path. The file to open.
        what: str. What the file is, for the message ("image", "mask", ...).
        max_pixels: int or None. Largest width x height accepted. Defaults to
            `pixel_limit()`.
        data: bytes or None. The file's content when already read (see
            `read_file`); `path` then only names it in messages.
    """
    path = Path(path)
    limit = pixel_limit() if max_pixels is None else max_pixels
    try:
        with Image.open(path if data is None else io.BytesIO(data)) as image:
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


def read_file(path, what="image"):
    """The bytes of `path`; a missing or unreadable file is an `ImageReadError` naming it."""
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ImageNotFoundError(f"cannot read {what} {path}: file not found") from None
    except OSError as error:
        raise ImageReadError(f"cannot read {what} {path}: {error.strerror or error}") from None


def read_rgb_resized(path, size):
    """Decode an image as a (size, size, 3) uint8 RGB array (EXIF orientation ignored).

    Pillow checks the header (pixel limit, errors naming the file); OpenCV
    decodes a complete RGB or grey JPEG at the smallest of 1/8, 1/4, 1/2 or
    full scale that is still at least `size` on both sides, then resizes it to
    exactly `size` (area averaging when shrinking, bilinear when enlarging).
    Other files (PNG, CMYK, truncated, ...) are decoded by Pillow, whose errors
    name the file.

    Args:
        path: str or Path. The image file.
        size: int. Side of the square result.

    Raises:
        ImageReadError: the file is missing, unreadable or over the pixel limit.
    """
    data = read_file(path)
    with open_image(path, data=data) as image:
        width, height = image.size
        if not _complete_jpeg(image, data):
            image.draft("RGB", (size, size))
            return resize_image(np.asarray(image.convert("RGB")), (size, size))
    reduction = max(r for r in _REDUCED_JPEG_FLAGS if min(width, height) >= r * size or r == 1)
    flags = _REDUCED_JPEG_FLAGS[reduction] | cv2.IMREAD_IGNORE_ORIENTATION
    pixels = decode(data, flags)
    if pixels is None:
        raise ImageReadError(f"cannot read image {path}: not a readable image")
    return cv2.cvtColor(resize_image(pixels, (size, size)), cv2.COLOR_BGR2RGB)


def _complete_jpeg(image, data):
    # libjpeg fills a truncated file with grey and only warns: those go to Pillow,
    # which raises. A JPEG must end with its end-of-image marker.
    return image.format == "JPEG" and image.mode in ("RGB", "L") and data.endswith(_JPEG_END)


def decode(data, flags):
    """`cv2.imdecode` of file content `data` (bytes): an array, or None if unreadable."""
    return cv2.imdecode(np.frombuffer(data, np.uint8), flags)


def resize_image(image, size):
    """Resize a uint8 (H, W[, C]) image to `size` = (height, width) with OpenCV.

    Area averaging when shrinking both sides (no aliasing), bilinear otherwise.
    """
    height, width = size
    if image.shape[:2] == (height, width):
        return image
    shrinking = height <= image.shape[0] and width <= image.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interpolation)


def warp_affine(array, matrix, size, nearest=False):
    """Output pixel (x, y) of a `size` = (height, width) array samples `array` at
    `matrix @ (x, y, 1)` (pixel centres at integer coordinates).

    Bilinear, or nearest neighbour for label maps (no invented ids); outside
    the input the result is 0 (black image, background label).

    Args:
        array: uint8 (H, W) or (H, W, C) array.
        matrix: (2, 3) float array, output coordinates -> input coordinates.
        size: (height, width) of the result.
        nearest: bool. Nearest neighbour instead of bilinear. Defaults to False.
    """
    height, width = size
    interpolation = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.warpAffine(
        array, np.asarray(matrix, np.float64), (width, height),
        flags=interpolation | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT, borderValue=0,
    )  # fmt: skip


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
    invents ids. uint8 maps go through OpenCV (exact nearest, GIL released); other
    types through numpy indexing, which keeps their type."""
    height, width = size
    if label.shape[:2] == (height, width):
        return label
    if label.dtype == np.uint8:
        return cv2.resize(label, (width, height), interpolation=cv2.INTER_NEAREST_EXACT)
    rows = ((np.arange(height) + 0.5) * label.shape[0] / height).astype(np.intp)
    columns = ((np.arange(width) + 0.5) * label.shape[1] / width).astype(np.intp)
    return label[rows[:, None], columns]


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
