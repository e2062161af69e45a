"""Synthetic faces (`faceparsing.drawing`) written in the exact CelebAMask-HQ release layout.

With `layout="lapa"` the same faces are written in LaPa's layout
(`<split>/images/<stem>.jpg`, `<split>/labels/<stem>.png`) with LaPa's 11 ids: parts
LaPa has no class for become skin (ears, neck, eyeglasses), hair (hat) or background
(earring, necklace, cloth). A set is written only into an absent or empty folder, or one
holding the marker file of an earlier synthetic set (`MARKER_FILE`).

Usage:
    python data_generator.py make-demo --out data/demo --num 200 [--layout lapa]
"""

import functools
from pathlib import Path

import cv2
import numpy as np

from faceparsing.classes import CLASS_NAMES, LAPA
from faceparsing.data.folder import FOLDER_IMAGE_DIR, FOLDER_LABEL_DIR
from faceparsing.data.loader import Pool, usable_cpus
from faceparsing.data.release import (
    IMAGE_SIZE,
    MAPPING_FILE,
    TRAIN_END,
    VAL_END,
    image_path,
    official_split,
    part_path,
)
from faceparsing.drawing import draw_sample
from faceparsing.errors import ConfigError, DatasetError
from faceparsing.files import atomic_write_bytes, atomic_write_text

JPEG_QUALITY = 90
LAYOUTS = ("celebamask_hq", "lapa")
# Flat masks and labels: run-length coding without row filters is the fastest and smallest.
PNG_OPTIONS = [
    cv2.IMWRITE_PNG_COMPRESSION,
    1,
    cv2.IMWRITE_PNG_STRATEGY,
    cv2.IMWRITE_PNG_STRATEGY_RLE,
]
PNG_OPTIONS += (
    [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE]
    if hasattr(cv2, "IMWRITE_PNG_FILTER")
    else []
)
# Written first into every synthetic set: the one kind of non-empty folder it may write into.
MARKER_FILE = ".faceparsing_synthetic"

# Each CelebAMask-HQ part's LaPa class in the synthetic LaPa layout.
_AS_LAPA = {
    "background": "background", "skin": "skin", "nose": "nose", "eye_g": "skin",
    "l_eye": "left_eye", "r_eye": "right_eye", "l_brow": "left_eyebrow",
    "r_brow": "right_eyebrow", "l_ear": "skin", "r_ear": "skin", "mouth": "inner_mouth",
    "u_lip": "upper_lip", "l_lip": "lower_lip", "hair": "hair", "hat": "hair",
    "ear_r": "background", "neck_l": "background", "neck": "skin", "cloth": "background",
}  # fmt: skip
LAPA_TABLE = np.array([LAPA.ids[_AS_LAPA[name]] for name in CLASS_NAMES], dtype=np.uint8)


def orig_idx_for(image_id):
    """A CelebA index putting ~80% train, 10% val, 10% test, interleaved.

    The first ids hit the exact split thresholds: 162770 (train), 162771 and
    182637 (val), 182638 (test).
    """
    group, slot = divmod(image_id, 10)
    if slot < 8:
        return TRAIN_END - 1 - image_id
    if slot == 8:
        return TRAIN_END + group // 2 if group % 2 == 0 else VAL_END - 1 - group // 2
    return VAL_END + group


def write_mapping(root, image_ids):
    """Write the mapping file, keeping rows of ids already listed there."""
    path = Path(root) / MAPPING_FILE
    rows = {}
    if path.is_file():
        for line in path.read_text().splitlines()[1:]:
            if line.split():
                rows[int(line.split()[0])] = line
    for image_id in image_ids:
        orig_idx = orig_idx_for(image_id)
        rows[image_id] = f"{image_id} {orig_idx} {orig_idx + 1:06d}.jpg"
    lines = ["idx orig_idx orig_file"] + [rows[image_id] for image_id in sorted(rows)]
    atomic_write_text(path, "\n".join(lines) + "\n")


def write_face(root, image_id, seed):
    """Draw face `image_id` from its own generator and write image and part masks: white
    on black RGB PNGs and a 1024x1024 JPEG, as released."""
    image, masks, _ = draw_sample(image_id, seed)
    for part, mask in masks.items():
        white = cv2.cvtColor(np.where(mask, 255, 0).astype(np.uint8), cv2.COLOR_GRAY2BGR)
        _write(part_path(root, image_id, part), white, PNG_OPTIONS)
    full_size = cv2.resize(image, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_LINEAR)
    _write(
        image_path(root, image_id), full_size[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    )


def write_lapa_face(root, image_id, seed):
    """Draw face `image_id` and write it in LaPa's layout: 512x512 image and label PNG."""
    image, _, label = draw_sample(image_id, seed)
    folder = Path(root) / official_split(orig_idx_for(image_id))
    stem = f"synthetic_{image_id:05d}"
    _write(folder / FOLDER_IMAGE_DIR / f"{stem}.jpg", image[..., ::-1],
           [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])  # fmt: skip
    _write(
        folder / FOLDER_LABEL_DIR / f"{stem}.png",
        LAPA_TABLE[label],
        [cv2.IMWRITE_PNG_COMPRESSION, 1],
    )


def _write(path, pixels, options):
    # A synthetic set is made again in seconds: atomic writes without fsyncs (the mapping
    # file, written last, is durable).
    ok, data = cv2.imencode(path.suffix, np.ascontiguousarray(pixels), options)
    if not ok:
        raise DatasetError(f"cannot encode {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data.tobytes(), durable=False)


def check_demo_target(root):
    """Refuse to write a synthetic set into a folder holding anything but an earlier one.

    Raises:
        DatasetError: `root` is a file, or a non-empty folder without `MARKER_FILE`.
    """
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise DatasetError(f"cannot write a synthetic set to {root}: it is a file")
    if root.is_dir() and any(root.iterdir()) and not (root / MARKER_FILE).is_file():
        raise DatasetError(
            f"refusing to write a synthetic set into {root}: the folder holds other files "
            "(give an absent or empty folder, or drop demo_images to train on what it holds)"
        )


def make_demo_dataset(root, num_images, seed=0, start_id=0, workers=None, layout="celebamask_hq"):
    """Write `num_images` synthetic faces in the CelebAMask-HQ release layout (or LaPa's).

    Args:
        root: str or Path. Output dataset root: absent, empty, or an earlier
            synthetic set (see `check_demo_target`).
        num_images: int. Number of images, ids `start_id .. start_id + num_images - 1`.
        seed: int. The same seed gives the same files. Defaults to 0.
        start_id: int. First image id (to extend an existing set). Defaults to 0.
        workers: int or None. Processes drawing faces; every face has its own
            generator, so the files do not depend on it. Defaults to one per CPU
            for 64 images or more, else 1.
        layout: str. "celebamask_hq" or "lapa". Defaults to "celebamask_hq".

    Raises:
        DatasetError: `root` holds files of something else.
    """
    if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1:
        raise ConfigError(f"num_images must be a positive integer, got {num_images!r}")
    if not isinstance(start_id, int) or start_id < 0:
        raise ConfigError(f"start_id must be a non-negative integer, got {start_id!r}")
    if layout not in LAYOUTS:
        raise ConfigError(f"layout must be one of {'|'.join(LAYOUTS)}, got {layout!r}")
    check_demo_target(root)
    Path(root).mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(root) / MARKER_FILE, f"synthetic faces, layout {layout}\n")
    writer = write_face if layout == "celebamask_hq" else write_lapa_face
    image_ids = range(start_id, start_id + num_images)
    if workers is None:
        workers = usable_cpus() if num_images >= 64 else 1
    if workers > 1:
        with Pool(functools.partial(writer, root, seed=seed), workers, "processes") as pool:
            for _ in pool.map(image_ids):
                pass
    else:
        for image_id in image_ids:
            writer(root, image_id, seed)
    if layout == "celebamask_hq":
        write_mapping(root, image_ids)
