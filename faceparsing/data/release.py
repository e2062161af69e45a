"""CelebAMask-HQ as the user unzips it: paths, the official split, merged labels.

```
root/CelebA-HQ-img/{k}.jpg                                  1024x1024 RGB JPEG
root/CelebAMask-HQ-mask-anno/{k // 2000}/{k:05d}_{part}.png  512x512 part masks
root/CelebA-HQ-to-CelebA-mapping.txt                        idx orig_idx orig_file
```

A label map is merged from the part masks exactly as the official `g_mask.py` does
(`merge_masks`); `LabelCache` stores each merged map once, so that later epochs skip
the 18 mask reads. `ReleaseLayout` reads samples through both (see `layout.Layout`).
"""

import hashlib
import json
import logging
import os
from pathlib import Path

import cv2
import numpy as np

from faceparsing.classes import CELEBAMASK_HQ, NUM_CLASSES, PART_NAMES
from faceparsing.data.packed import decode_label, encode_label
from faceparsing.data.splits import check_split
from faceparsing.errors import DatasetError, ImageNotFoundError, ImageReadError
from faceparsing.files import atomic_write_bytes
from faceparsing.images import decode, open_image, read_file, read_rgb_resized, resize_nearest

logger = logging.getLogger(__name__)

IMAGE_DIR = "CelebA-HQ-img"
MASK_DIR = "CelebAMask-HQ-mask-anno"
# The official g_mask.py reads this misspelt folder and silently writes blank
# labels; errors name it so the user sees why nothing was found.
MISSPELT_MASK_DIR = "CelebAMaskHQ-mask-anno"
MAPPING_FILE = "CelebA-HQ-to-CelebA-mapping.txt"
IMAGE_SIZE = 1024
MASK_SIZE = 512
IMAGES_PER_MASK_FOLDER = 2000
# Official g_partition.py thresholds on orig_idx (CelebA's 1-based file numbers
# applied to 0-based indices; kept so results compare with the literature).
TRAIN_END = 162771
VAL_END = 182638
# Bumped whenever the cached label format changes, so old entries are merged again.
CACHE_VERSION = "2"


def image_path(root, image_id):
    return Path(root) / IMAGE_DIR / f"{image_id}.jpg"


def mask_folder(root, image_id):
    return Path(root) / MASK_DIR / str(image_id // IMAGES_PER_MASK_FOLDER)


def part_path(root, image_id, part):
    """The path of one part mask (`part` is a name from `PART_NAMES`)."""
    return mask_folder(root, image_id) / f"{image_id:05d}_{part}.png"


def existing_parts(root, image_id):
    """`[(class_id, path, stat), ...]` of the part files that exist, in merge order."""
    # Called for every sample (the label cache's fingerprint): plain strings for the
    # 18 stat calls, a Path only for the files found.
    folder = str(mask_folder(root, image_id))
    parts = []
    for class_id, part in enumerate(PART_NAMES, start=1):
        path = os.path.join(folder, f"{image_id:05d}_{part}.png")
        try:
            parts.append((class_id, Path(path), os.stat(path)))
        except FileNotFoundError:
            continue  # an absent part is simply not visible in this image
    return parts


def no_parts_message(root, image_id):
    message = (
        f"no part masks found for image {image_id} in {mask_folder(root, image_id)} (expected "
        f"files like {image_id:05d}_skin.png inside the folder '{MASK_DIR}')"
    )
    if (Path(root) / MISSPELT_MASK_DIR).is_dir():
        message += (
            f"; {root} contains '{MISSPELT_MASK_DIR}' (the misspelling of an official "
            f"script): rename it to '{MASK_DIR}'"
        )
    elif not (Path(root) / MASK_DIR).is_dir():
        message += f"; the folder {Path(root) / MASK_DIR} does not exist"
    return message


def official_split(orig_idx):
    """ "train", "val" or "test" for a CelebA `orig_idx` (official rule)."""
    if orig_idx < TRAIN_END:
        return "train"
    return "val" if orig_idx < VAL_END else "test"


def read_mapping(root):
    """`{image_id: orig_idx}` from `CelebA-HQ-to-CelebA-mapping.txt`."""
    path = Path(root) / MAPPING_FILE
    if not path.is_file():
        raise DatasetError(f"mapping file not found: {path} (expected in the dataset root)")
    mapping = {}
    with open(path) as file:
        next(file, None)  # header: idx orig_idx orig_file
        for line_number, line in enumerate(file, start=2):
            fields = line.split()
            if not fields:
                continue
            try:
                mapping[int(fields[0])] = int(fields[1])
            except (IndexError, ValueError) as error:
                raise DatasetError(
                    f"{path}:{line_number}: expected 'idx orig_idx orig_file', got {line.strip()!r}"
                ) from error
    return mapping


def read_mask(path):
    """One part mask as a (512, 512) uint8 array, as the official script sees it.

    `g_mask.py` uses `cv2.imread` (3-channel BGR) and keeps channel 0; grey files give
    their only channel. Non-zero means foreground. Pillow checks the header first.
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


def merge_masks(root, image_id, parts=None):
    """Merge the part masks of one image into a (512, 512) uint8 label map, as `g_mask.py`.

    Parts are painted in `PART_NAMES` order, later parts overwriting earlier ones;
    part `i` of that list gets id `i + 1` and background stays 0.

    Raises:
        DatasetError: no part file exists, or a mask is unreadable or not 512x512.
    """
    parts = existing_parts(root, image_id) if parts is None else parts
    if not parts:
        raise DatasetError(no_parts_message(root, image_id))
    label = np.zeros((MASK_SIZE, MASK_SIZE), dtype=np.uint8)
    for class_id, path, _ in parts:
        label[read_mask(path) != 0] = class_id
    return label


def parts_fingerprint(parts):
    """A hash of the part files' (name, size, mtime_ns); any change alters it."""
    entries = [(path.name, stat.st_size, stat.st_mtime_ns) for _, path, stat in parts]
    return hashlib.sha1(json.dumps([CACHE_VERSION, entries]).encode()).hexdigest()


class LabelCache:
    """Merged label maps stored once under `cache_dir`, run-length coded as in packs
    (`packed.encode_label`: rebuilt in a fraction of a PNG decode).

    Each entry starts with the fingerprint of the part files it was merged from, so a
    changed part file invalidates it; an unreadable, damaged or stale entry is merged
    again, never served. Writes are atomic, so parallel workers never see half a file.
    """

    def __init__(self, root, cache_dir):
        self.root = Path(root)
        self.cache_dir = Path(cache_dir)

    def entry_path(self, image_id):
        return self.cache_dir / "labels" / f"{image_id:05d}.rle"

    def load(self, image_id):
        """The label map of `image_id`, merged and stored on a miss."""
        parts = existing_parts(self.root, image_id)
        if not parts:
            raise DatasetError(no_parts_message(self.root, image_id))
        fingerprint = parts_fingerprint(parts).encode()
        label = self._read_entry(image_id, fingerprint)
        if label is None:
            label = merge_masks(self.root, image_id, parts)
            # A cache: an entry lost in a crash is merged again.
            atomic_write_bytes(
                self.entry_path(image_id), fingerprint + encode_label(label), durable=False
            )
        return label

    def _read_entry(self, image_id, fingerprint):
        path = self.entry_path(image_id)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None  # not cached yet
        except OSError as error:
            logger.warning("ignoring unreadable label cache entry %s: %s", path, error)
            return None
        if not data.startswith(fingerprint):
            return None  # stale: merged again and overwritten
        label = decode_label(data[len(fingerprint) :], MASK_SIZE)
        if label is None or label.max() >= NUM_CLASSES:
            logger.warning("ignoring corrupt label cache entry %s", path)
            return None
        return label


class ReleaseLayout:
    """CelebAMask-HQ's release: integer image ids, labels merged from part masks.

    Args:
        root: str or Path. The unzipped release.
        cache_dir: str, Path or None. Where merged labels are cached (`LabelCache`);
            None merges every time.
    """

    kind = "celebamask_hq"
    class_set = CELEBAMASK_HQ
    label_size = MASK_SIZE

    def __init__(self, root, cache_dir=None):
        self.root = Path(root)
        self.cache_dir = cache_dir
        self._label_cache = LabelCache(root, cache_dir) if cache_dir else None

    def split_ids(self, split):
        check_split(split)
        return sorted(
            image_id
            for image_id, orig_idx in read_mapping(self.root).items()
            if split == "all" or official_split(orig_idx) == split
        )

    def sample_name(self, image_id):
        return str(image_id)

    def image_path(self, image_id):
        return image_path(self.root, image_id)

    def load_image(self, image_id, size):
        return read_rgb_resized(self.image_path(image_id), size)

    def load_label(self, image_id):
        if self._label_cache is not None:
            return self._label_cache.load(image_id)
        return merge_masks(self.root, image_id)

    def load_sample(self, image_id, size, fast=False):
        return self.load_image(image_id, size), resize_nearest(
            self.load_label(image_id), (size, size)
        )

    def problems(self, ids, full=False):
        """Missing folders, then for each id its image and masks: their headers (quick),
        or every file decoded (`full`)."""
        found = self._folder_problems()
        for image_id in ids if not found else ():
            found += self._sample_problems(image_id, full)
        return found

    def _folder_problems(self):
        if not self.root.is_dir():
            return [f"dataset root {self.root} does not exist"]
        found = [
            f"{what} not found: {self.root / name}"
            for what, name, exists in (
                ("mapping file", MAPPING_FILE, (self.root / MAPPING_FILE).is_file()),
                ("image folder", IMAGE_DIR, (self.root / IMAGE_DIR).is_dir()),
                ("mask folder", MASK_DIR, (self.root / MASK_DIR).is_dir()),
            )
            if not exists
        ]  # fmt: skip
        if (self.root / MISSPELT_MASK_DIR).is_dir():
            found.append(f"found the misspelt '{MISSPELT_MASK_DIR}': rename it to '{MASK_DIR}'")
        return found

    def _sample_problems(self, image_id, full):
        parts = existing_parts(self.root, image_id)
        found = [] if parts else [no_parts_message(self.root, image_id)]
        files = [(self.image_path(image_id), IMAGE_SIZE)] + [(p, MASK_SIZE) for _, p, _ in parts]
        for path, size in files if full else files[:2]:
            try:
                with open_image(path, "file") as file:
                    if full:
                        file.load()  # decodes everything, so truncated files fail here
                    if file.size != (size, size):
                        found.append(
                            f"{path} is {file.size[0]}x{file.size[1]}, expected {size}x{size}"
                        )
            except ImageNotFoundError:
                found.append(f"missing file {path}")
            except DatasetError as error:
                found.append(str(error))
        return found
