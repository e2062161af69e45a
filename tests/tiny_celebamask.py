"""Tiny datasets in the CelebAMask-HQ release layout, drawn box by box, for tests/data/ and
test_data_generator.py: functions that tests call with their own ids, parts and mask modes,
imported by name. The six-image set of `write_tiny_root` is also the fixture `tiny_root`."""

import numpy as np
from PIL import Image

from faceparsing.data import release

SIZE = release.MASK_SIZE


def box(top, left, bottom, right):
    mask = np.zeros((SIZE, SIZE), dtype=bool)
    mask[top:bottom, left:right] = True
    return mask


def save_mask(path, mask, mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    grey = Image.fromarray(np.where(mask, 255, 0).astype(np.uint8))
    if mode == "P":
        grey.convert("P").save(path)
    elif mode == "RGBA":
        rgba = grey.convert("RGBA")
        rgba.putalpha(255)
        rgba.save(path)
    else:
        grey.convert(mode).save(path)


def write_sample(root, image_id, parts, mode="RGB", image=True):
    for part, mask in parts.items():
        save_mask(release.part_path(root, image_id, part), mask, mode)
    if image:
        path = release.image_path(root, image_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = np.full((release.IMAGE_SIZE, release.IMAGE_SIZE, 3), 40 + image_id % 200, np.uint8)
        Image.fromarray(pixels).save(path, quality=90)


def write_mapping(root, orig_by_id):
    lines = ["idx orig_idx orig_file"]
    lines += [f"{k} {orig} {orig + 1:06d}.jpg" for k, orig in orig_by_id.items()]
    (root / release.MAPPING_FILE).write_text("\n".join(lines) + "\n")


FACE_PARTS = {
    "skin": box(100, 100, 400, 400),
    "l_eye": box(180, 150, 220, 230),
    "r_eye": box(180, 280, 220, 360),
    "u_lip": box(300, 200, 320, 300),
    "l_lip": box(320, 200, 340, 300),
    "hair": box(40, 80, 120, 420),
}


def write_tiny_root(root):
    """Six images: ids 0-3 train, 4 val, 5 test."""
    for image_id in range(6):
        parts = dict(FACE_PARTS)
        if image_id % 2:
            parts["l_ear"] = box(200, 60, 280, 100 + image_id)
        write_sample(root, image_id, parts)
    write_mapping(root, {0: 10, 1: 20, 2: 30, 3: 162770, 4: 162771, 5: 182638})
    return root
