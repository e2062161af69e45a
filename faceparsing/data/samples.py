"""One sample from disk: the image at the model's size and its label map.

CelebAMask-HQ's label is merged from part masks: `merge_masks` follows the
official `g_mask.py` exactly; `LabelCache` stores its result once per image so
that later epochs skip the 18 mask reads. LaPa's layout holds one label PNG per
image (`read_folder_label`). `source` arguments are a CelebAMask-HQ root or a
layout object of `faceparsing.data.layout`.
"""

import hashlib
import json
import logging
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, PngImagePlugin

from faceparsing.classes import NUM_CLASSES
from faceparsing.data import packed
from faceparsing.data.layout import (
    MASK_SIZE,
    PackedLayout,
    existing_parts,
    image_path,
    no_parts_message,
)
from faceparsing.errors import DatasetError, ImageNotFoundError, ImageReadError
from faceparsing.files import atomic_path
from faceparsing.images import (
    decode,
    open_image,
    png_header,
    read_file,
    read_rgb_resized,
    resize_nearest,
)

logger = logging.getLogger(__name__)

# Target encodings of a label map: integer ids (sparse cross-entropy) or one-hot.
TARGETS = ("integer", "onehot")
# Bumped whenever the cached label format changes, so old entries are re-merged.
CACHE_VERSION = "1"
_PNG_GREY = 0  # PNG colour type of the cache entries (8-bit grey)


def load_image(source, image_id, size):
    """Decode image `image_id` of a dataset as a (size, size, 3) uint8 RGB array.

    Raises:
        DatasetError: the file is missing, unreadable or over the pixel limit.
    """
    source = _packed_layout(source)
    if hasattr(source, "load_image"):  # a packed folder: one record, one small decode
        return source.load_image(image_id, size)
    return read_rgb_resized(_image_path(source, image_id), size)


def _packed_layout(source):
    """A packed folder given by its path as its layout; anything else unchanged."""
    if isinstance(source, str | Path) and packed.is_packed(source):
        return PackedLayout(source)
    return source


def _image_path(source, image_id):
    if hasattr(source, "image_path"):
        return source.image_path(image_id)
    return image_path(source, image_id)


def resize_label(label, size):
    """Resize a square label map to (size, size) with nearest neighbour (no invented ids)."""
    return resize_nearest(label, (size, size))


def encode_targets(labels, target, num_classes=NUM_CLASSES):
    """Integer labels (B, H, W) as the model's targets: uint8 ids or uint8 one-hot.

    Keras' losses and the metric cast them; uint8 keeps batches small.
    """
    if target == "onehot":
        return np.eye(num_classes, dtype=np.uint8)[labels]
    return labels.astype(np.uint8, copy=False)


def read_mask(path):
    """Read one part mask as a (512, 512) uint8 array, as the official script sees it.

    `g_mask.py` uses `cv2.imread` (3-channel BGR) and keeps channel 0, the blue
    channel; grey files give their only channel. Non-zero means foreground.
    Pillow checks the header first (pixel limit, size, errors naming the file).

    Args:
        path: str or Path. A 512x512 PNG mask.

    Returns:
        A (512, 512) uint8 array.
    """
    data = read_file(path, "mask")
    with open_image(path, "mask", data=data) as mask:
        if mask.size != (MASK_SIZE, MASK_SIZE):
            raise DatasetError(
                f"mask {path} is {mask.size[0]}x{mask.size[1]}, expected {MASK_SIZE}x{MASK_SIZE}"
            )
    pixels = decode(data, cv2.IMREAD_COLOR)
    if pixels is None or pixels.shape[:2] != (MASK_SIZE, MASK_SIZE):
        raise ImageReadError(f"cannot read mask {path}: not a readable image")
    return cv2.extractChannel(pixels, 0)


def merge_masks(root, image_id):
    """Merge the part masks of one image into a label map, as `g_mask.py` does.

    Parts are painted in `PART_NAMES` order, later parts overwriting earlier
    ones; part `i` of that list gets id `i + 1` and background stays 0.

    Args:
        root: str or Path. The dataset root (holding `CelebAMask-HQ-mask-anno`).
        image_id: int. The CelebA-HQ image number.

    Returns:
        A (512, 512) uint8 label map with ids in 0..18.

    Raises:
        DatasetError: no part file exists, or a mask is unreadable or not 512x512.
    """
    parts = existing_parts(root, image_id)
    if not parts:
        raise DatasetError(no_parts_message(root, image_id))
    label = np.zeros((MASK_SIZE, MASK_SIZE), dtype=np.uint8)
    for class_id, path, _ in parts:
        label[read_mask(path) != 0] = class_id
    return label


def parts_fingerprint(parts):
    """Return a hash of the part files' (name, size, mtime_ns); any change alters it."""
    entries = [(path.name, stat.st_size, stat.st_mtime_ns) for _, path, stat in parts]
    return hashlib.sha1(json.dumps([CACHE_VERSION, entries]).encode()).hexdigest()


class LabelCache:
    """Merged 512x512 label maps stored once as PNG files under `cache_dir`.

    Each entry carries the fingerprint of the part files it was merged from,
    so a changed part file invalidates it; an unreadable or stale entry is
    re-merged, never served. Writes are atomic (temporary file + `os.replace`),
    so parallel workers never see half-written files.

    Args:
        root: str or Path. The dataset root.
        cache_dir: str or Path. Where the entries live (created if needed).
    """

    def __init__(self, root, cache_dir):
        self.root = Path(root)
        self.cache_dir = Path(cache_dir)

    def entry_path(self, image_id):
        return self.cache_dir / "labels" / f"{image_id:05d}.png"

    def load(self, image_id):
        """Return the label map of `image_id`, merging and storing it on a miss."""
        parts = existing_parts(self.root, image_id)
        if not parts:
            raise DatasetError(no_parts_message(self.root, image_id))
        fingerprint = parts_fingerprint(parts)
        label = self._read_entry(image_id, fingerprint)
        if label is None:
            label = merge_masks(self.root, image_id)
            self._write_entry(image_id, label, fingerprint)
        return label

    def _read_entry(self, image_id, fingerprint):
        # The PNG header is parsed here and the pixels decoded by OpenCV (GIL
        # released): Pillow cannot decode without holding the GIL between chunks.
        path = self.entry_path(image_id)
        try:
            data = read_file(path, "label cache entry")
        except ImageNotFoundError:
            return None  # not cached yet
        except ImageReadError as error:
            logger.warning("ignoring unreadable label cache entry: %s", error)
            return None
        header = png_header(data)
        if header is None:
            logger.warning("ignoring corrupt label cache entry %s: no PNG header", path)
            return None
        width, height, bit_depth, colour_type, texts = header
        if (width, height, bit_depth, colour_type) != (MASK_SIZE, MASK_SIZE, 8, _PNG_GREY):
            return None  # not one of ours: merged again and overwritten
        if texts.get("fingerprint") != fingerprint:
            return None
        label = decode(data, cv2.IMREAD_UNCHANGED)
        if label is None or label.shape != (MASK_SIZE, MASK_SIZE):
            logger.warning("ignoring corrupt label cache entry %s: cannot decode it", path)
            return None
        if label.max() >= NUM_CLASSES:
            return None
        return label

    def _write_entry(self, image_id, label, fingerprint):
        path = self.entry_path(image_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        info = PngImagePlugin.PngInfo()
        info.add_text("fingerprint", fingerprint)
        with atomic_path(path) as temp_path:
            Image.fromarray(label, mode="L").save(temp_path, format="PNG", pnginfo=info)


def load_label(source, image_id, label_cache=None):
    """The label map of `image_id`: CelebAMask-HQ's merged 512x512 one (from
    `label_cache` when one is given), a folder layout's label PNG, or a packed
    folder's stored map (at the packed size)."""
    source = _packed_layout(source)
    if hasattr(source, "load_label"):
        return source.load_label(image_id)
    if hasattr(source, "label_path"):
        return read_folder_label(source, image_id)
    root = getattr(source, "root", source)
    return label_cache.load(image_id) if label_cache else merge_masks(root, image_id)


def read_folder_label(layout, image_id):
    """The label PNG of sample `image_id` of a `FolderLayout`, checked against its image.

    Raises:
        DatasetError: the label is missing, unreadable, not one id per pixel,
            of another size than its image, or holds ids beyond the class set.
    """
    path = layout.label_path(image_id)
    data = read_file(path, "label")
    with open_image(path, "label", data=data) as label_file:
        size, mode = label_file.size, label_file.mode
        # OpenCV expands a palette PNG to colours; Pillow keeps its indices (the ids).
        indices = np.asarray(label_file) if mode == "P" else None
    if mode not in ("L", "P"):
        raise DatasetError(
            f"label {path} is a {mode} image; expected one class id per pixel (grey or palette PNG)"
        )
    with open_image(layout.image_path(image_id), "image") as image_file:
        image_size = image_file.size
    if size != image_size:
        raise DatasetError(
            f"label {path} is {size[0]}x{size[1]}, its image {layout.image_path(image_id)} is "
            f"{image_size[0]}x{image_size[1]}"
        )
    label = indices if indices is not None else decode(data, cv2.IMREAD_UNCHANGED)
    if label is None or label.ndim != 2:
        raise ImageReadError(f"cannot read label {path}: not a readable single-channel PNG")
    check_label_ids(label, layout.class_set, path)
    return label.astype(np.uint8, copy=False)


def check_label_ids(label, class_set, path):
    """Raise DatasetError naming `path` if `label` holds an id beyond `class_set`."""
    largest = int(label.max(initial=0))
    if largest >= class_set.num_classes:
        raise DatasetError(
            f"label {path} holds id {largest}, beyond the {class_set.num_classes} classes of "
            f"{class_set.name} (ids 0..{class_set.num_classes - 1})"
        )
