"""The CelebAMask-HQ release layout and the official split, as the user unzips it.

```
root/CelebA-HQ-img/{k}.jpg                                  1024x1024 RGB JPEG
root/CelebAMask-HQ-mask-anno/{k // 2000}/{k:05d}_{part}.png  512x512 part masks
root/CelebA-HQ-to-CelebA-mapping.txt                        idx orig_idx orig_file
```

Paths, sizes and the split rule only: no image decoding and no Keras, so the
synthetic-face writer and the dataset checks share these facts cheaply.
"""

import os
from pathlib import Path

from faceparsing.classes import PART_NAMES
from faceparsing.errors import ConfigError, DatasetError

IMAGE_DIR = "CelebA-HQ-img"
MASK_DIR = "CelebAMask-HQ-mask-anno"
# The official g_mask.py reads this misspelt folder and silently writes blank
# labels; we name it in errors so the user sees why nothing was found.
MISSPELT_MASK_DIR = "CelebAMaskHQ-mask-anno"
MAPPING_FILE = "CelebA-HQ-to-CelebA-mapping.txt"
IMAGE_SIZE = 1024
MASK_SIZE = 512
IMAGES_PER_MASK_FOLDER = 2000

# Official g_partition.py thresholds on orig_idx (CelebA's 1-based file numbers
# applied to 0-based indices; kept so results compare with the literature).
TRAIN_END = 162771
VAL_END = 182638
SPLITS = ("train", "val", "test", "all")


# ---------------------------------------------------------------------------
# Paths
# ---------------------------------------------------------------------------


def image_path(root, image_id):
    """Return the path of image `image_id` in the release layout."""
    return Path(root) / IMAGE_DIR / f"{image_id}.jpg"


def mask_folder(root, image_id):
    """Return the folder holding the part masks of image `image_id`."""
    return Path(root) / MASK_DIR / str(image_id // IMAGES_PER_MASK_FOLDER)


def part_path(root, image_id, part):
    """Return the path of one part mask (`part` is a name from `PART_NAMES`)."""
    return mask_folder(root, image_id) / _part_name(image_id, part)


def _part_name(image_id, part):
    return f"{image_id:05d}_{part}.png"


def existing_parts(root, image_id):
    """Return `[(class_id, path, stat), ...]` for the part files that exist, in merge order."""
    # Called for every sample (the label cache's fingerprint): plain strings for the 18
    # stat calls, a Path only for the files found; Python here holds the GIL.
    folder = str(mask_folder(root, image_id))
    parts = []
    for class_id, part in enumerate(PART_NAMES, start=1):
        path = os.path.join(folder, _part_name(image_id, part))
        try:
            parts.append((class_id, Path(path), os.stat(path)))
        except FileNotFoundError:
            continue  # an absent part is simply not visible in this image
    return parts


def no_parts_message(root, image_id):
    folder = mask_folder(root, image_id)
    message = (
        f"no part masks found for image {image_id} in {folder} (expected files like "
        f"{image_id:05d}_skin.png inside the folder '{MASK_DIR}')"
    )
    if (Path(root) / MISSPELT_MASK_DIR).is_dir():
        message += (
            f"; {root} contains '{MISSPELT_MASK_DIR}' (the misspelling of an official "
            f"script): rename it to '{MASK_DIR}'"
        )
    elif not (Path(root) / MASK_DIR).is_dir():
        message += f"; the folder {Path(root) / MASK_DIR} does not exist"
    return message


# ---------------------------------------------------------------------------
# Official split
# ---------------------------------------------------------------------------


def official_split(orig_idx):
    """Return "train", "val" or "test" for a CelebA `orig_idx` (official rule)."""
    if orig_idx < TRAIN_END:
        return "train"
    if orig_idx < VAL_END:
        return "val"
    return "test"


def read_mapping(root):
    """Return `{image_id: orig_idx}` from `CelebA-HQ-to-CelebA-mapping.txt`."""
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


def split_ids(root, split):
    """Return the sorted image ids of one official split.

    Args:
        root: str or Path. The dataset root (holding the mapping file) or a packed folder.
        split: str. One of "train", "val", "test", "all".

    Returns:
        A sorted list of int image ids (24183 / 2993 / 2824 on the release).
    """
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")
    from faceparsing.data import packed  # imports this module

    if packed.is_packed(root):
        return packed.open_pack(root).split_ids(split)
    mapping = read_mapping(root)
    return sorted(
        image_id
        for image_id, orig_idx in mapping.items()
        if split == "all" or official_split(orig_idx) == split
    )
