"""The single source of truth for the CelebAMask-HQ classes.

Every script imports class names, ids, the official palette and the
left/right pairs from here. The facts follow the dataset's official
preprocessing scripts (`g_mask.py` for ids and merge order, `g_color.py`
for the palette).
"""

import numpy as np

# Part names in the official merge order of `g_mask.py`: a part's label id is
# its position + 1, and later parts overwrite earlier ones ("making a pizza":
# skin first, cloth last).
PART_NAMES = (
    "skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow",
    "l_ear", "r_ear", "mouth", "u_lip", "l_lip", "hair", "hat",
    "ear_r", "neck_l", "neck", "cloth",
)  # fmt: skip

BACKGROUND = "background"
CLASS_NAMES = (BACKGROUND,) + PART_NAMES
NUM_CLASSES = len(CLASS_NAMES)  # 19: background + 18 parts
CLASS_IDS = {name: class_id for class_id, name in enumerate(CLASS_NAMES)}

# Human-readable names for legends and reports.
DISPLAY_NAMES = {
    "background": "background", "skin": "skin", "nose": "nose",
    "eye_g": "eyeglasses", "l_eye": "left eye", "r_eye": "right eye",
    "l_brow": "left brow", "r_brow": "right brow", "l_ear": "left ear",
    "r_ear": "right ear", "mouth": "mouth", "u_lip": "upper lip",
    "l_lip": "lower lip", "hair": "hair", "hat": "hat", "ear_r": "earring",
    "neck_l": "necklace", "neck": "neck", "cloth": "cloth",
}  # fmt: skip

# Official palette (`g_color.py`), indexed by label id. A second official file
# differs at id 7; this is the one the published colour maps use.
PALETTE = np.array(
    [
        (0, 0, 0), (204, 0, 0), (76, 153, 0), (204, 204, 0), (51, 51, 255),
        (204, 0, 204), (0, 255, 255), (255, 204, 204), (102, 51, 0),
        (255, 0, 0), (102, 204, 0), (255, 255, 0), (0, 0, 153), (0, 0, 204),
        (255, 51, 153), (0, 204, 204), (0, 51, 0), (255, 153, 51), (0, 204, 0),
    ],
    dtype=np.uint8,
)  # fmt: skip

# Ids that trade places when a face is mirrored. Upper and lower lip are not a
# left/right pair, so they are not here.
FLIP_PAIRS = (
    (CLASS_IDS["l_eye"], CLASS_IDS["r_eye"]),
    (CLASS_IDS["l_brow"], CLASS_IDS["r_brow"]),
    (CLASS_IDS["l_ear"], CLASS_IDS["r_ear"]),
)


def _flip_permutation():
    permutation = np.arange(NUM_CLASSES, dtype=np.int32)
    for left, right in FLIP_PAIRS:
        permutation[left], permutation[right] = right, left
    return permutation


# FLIP_PERMUTATION[label] maps every id to its mirror id; it also reorders the
# class axis of logits (`logits[..., FLIP_PERMUTATION]`).
FLIP_PERMUTATION = _flip_permutation()


def colorize(label_map):
    """Return the official-palette RGB image (H, W, 3) uint8 of a label map."""
    label_map = np.asarray(label_map)
    if label_map.min(initial=0) < 0 or label_map.max(initial=0) >= NUM_CLASSES:
        raise ValueError(
            f"label ids must lie in 0..{NUM_CLASSES - 1}, "
            f"got range {label_map.min()}..{label_map.max()}"
        )
    return PALETTE[label_map]
