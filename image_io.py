"""Reading user photos safely: any mode, EXIF orientation, bounded decoding."""

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Pillow's own default bound (about 89 Mpx); larger files are treated as
# decompression bombs rather than decoded.
MAX_IMAGE_PIXELS = 89_478_485
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")


class ImageReadError(ValueError):
    """A file that cannot be used as a photo; the message names the file."""


def read_rgb(path, max_pixels=MAX_IMAGE_PIXELS):
    """Return the photo at `path` as uint8 RGB (H, W, 3), upright per its EXIF tag.

    Grayscale, palette, RGBA (composited on white), 16-bit and CMYK images are
    converted. Files that are not images, are truncated, or would decode to
    more than `max_pixels` raise ImageReadError naming the file.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise ImageReadError(
                        f"{path}: {width}x{height} pixels exceeds the {max_pixels}-pixel limit "
                        "(possible decompression bomb)"
                    )
                image = ImageOps.exif_transpose(image)
                return _to_rgb(image)
    except ImageReadError:
        raise
    except FileNotFoundError:
        raise ImageReadError(f"{path}: file not found") from None
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageReadError(f"{path}: not a readable image (or too large to decode safely)") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageReadError(f"{path}: cannot decode image ({error})") from None


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


def list_images(pattern):
    """Files named by a file path, a folder (its images, sorted) or a glob pattern."""
    import glob

    path = Path(pattern)
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if path.is_file():
        return [path]
    return sorted(Path(p) for p in glob.glob(str(pattern), recursive=True) if Path(p).is_file())
