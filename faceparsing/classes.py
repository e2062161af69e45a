"""The single source of truth for class sets: names, ids, palette and left/right pairs.

A `ClassSet` is data: CelebAMask-HQ's 19 classes are the default (`CELEBAMASK_HQ`),
LaPa's 11 are built in (`LAPA`), and a user's own set is a small YAML file
(`load_class_set`). A model carries its class set in its Keras config, so
evaluation, overlays and exports need nothing but the checkpoint.

The CelebAMask-HQ facts follow the dataset's official preprocessing scripts
(`g_mask.py` for ids and merge order, `g_color.py` for the palette); the
module-level constants (`CLASS_NAMES`, `PALETTE`, `FLIP_PERMUTATION`, ...)
are that set's, for code that only knows CelebAMask-HQ.
"""

import dataclasses
from pathlib import Path

import numpy as np
import yaml

from faceparsing.errors import ConfigError, first_line

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
MAX_CLASSES = 256  # label maps are uint8 PNGs

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


def _voc_colour(index):
    """PASCAL VOC's colour map (bit-interleaved ids), for classes without a known colour."""
    red = green = blue = 0
    for shift in range(7, -1, -1):
        red |= ((index >> 0) & 1) << shift
        green |= ((index >> 1) & 1) << shift
        blue |= ((index >> 2) & 1) << shift
        index >>= 3
    return red, green, blue


@dataclasses.dataclass(frozen=True, eq=False)
class ClassSet:
    """The classes of a dataset or a model: names (id = position), palette, flip pairs.

    Args:
        name: str. What the set is called ("celebamask_hq", "lapa", a user's name).
        names: tuple of str. Class names; id 0 is the background.
        palette: (C, 3) uint8 array. Colour of each id in overlays and legends.
        flip_pairs: tuple of (int, int). Ids that trade places in a mirrored face.
        display_names: tuple of str. Names for legends and tables.
            Defaults to the names with underscores as spaces.
    """

    name: str
    names: tuple
    palette: np.ndarray
    flip_pairs: tuple = ()
    display_names: tuple = None

    def __post_init__(self):
        object.__setattr__(self, "names", tuple(self.names))
        object.__setattr__(self, "palette", np.asarray(self.palette, dtype=np.uint8))
        object.__setattr__(self, "flip_pairs", tuple(tuple(pair) for pair in self.flip_pairs))
        if self.display_names is None:
            object.__setattr__(
                self, "display_names", tuple(name.replace("_", " ") for name in self.names)
            )

    def __eq__(self, other):
        return isinstance(other, ClassSet) and self.to_config() == other.to_config()

    def __hash__(self):
        return hash((self.name, self.names))

    @property
    def num_classes(self):
        return len(self.names)

    @property
    def ids(self):
        return {name: class_id for class_id, name in enumerate(self.names)}

    @property
    def flip_permutation(self):
        """`permutation[label]` is the mirror id of every id; also reorders logits' class axis."""
        permutation = np.arange(self.num_classes, dtype=np.int32)
        for left, right in self.flip_pairs:
            permutation[left], permutation[right] = right, left
        return permutation

    def display(self, class_id):
        return self.display_names[class_id]

    def colorize(self, label_map):
        """Return the RGB image (H, W, 3) uint8 of a label map in this set's palette."""
        label_map = np.asarray(label_map)
        if label_map.min(initial=0) < 0 or label_map.max(initial=0) >= self.num_classes:
            raise ValueError(
                f"label ids must lie in 0..{self.num_classes - 1}, "
                f"got range {label_map.min()}..{label_map.max()}"
            )
        return self.palette[label_map]

    def to_config(self):
        """A plain dict (JSON/YAML/Keras config) that `class_set_from_config` reads back."""
        return {
            "name": self.name,
            "names": list(self.names),
            "palette": self.palette.tolist(),
            "flip_pairs": [list(pair) for pair in self.flip_pairs],
            "display_names": list(self.display_names),
        }


CELEBAMASK_HQ = ClassSet(
    "celebamask_hq", CLASS_NAMES, PALETTE, FLIP_PAIRS,
    tuple(DISPLAY_NAMES[name] for name in CLASS_NAMES),
)  # fmt: skip

# LaPa (Liu et al., "A New Dataset and Boundary-Attention Semantic Segmentation for
# Face Parsing", AAAI 2020): ids as released. Its colours are CelebAMask-HQ's
# official ones for the same part (g_color.py), so a part looks the same in both.
LAPA_NAMES = (
    "background", "skin", "left_eyebrow", "right_eyebrow", "left_eye", "right_eye",
    "nose", "upper_lip", "inner_mouth", "lower_lip", "hair",
)  # fmt: skip
_LAPA_AS_CELEBAMASK_HQ = (
    "background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "nose", "u_lip", "mouth",
    "l_lip", "hair",
)  # fmt: skip
LAPA = ClassSet(
    "lapa", LAPA_NAMES, PALETTE[[CLASS_IDS[name] for name in _LAPA_AS_CELEBAMASK_HQ]],
    ((2, 3), (4, 5)),
)  # fmt: skip

BUILTIN_CLASS_SETS = {class_set.name: class_set for class_set in (CELEBAMASK_HQ, LAPA)}

# CelebAMask-HQ's constants in the ClassSet's terms, for code that only knows that set.
FLIP_PERMUTATION = CELEBAMASK_HQ.flip_permutation


def colorize(label_map):
    """Return the official-palette RGB image (H, W, 3) uint8 of a CelebAMask-HQ label map."""
    return CELEBAMASK_HQ.colorize(label_map)


def known_colour(name, index):
    """The colour of a class called `name`: a built-in set's, else PASCAL VOC's for `index`."""
    for class_set in BUILTIN_CLASS_SETS.values():
        if name in class_set.names:
            return tuple(int(value) for value in class_set.palette[class_set.ids[name]])
    return _voc_colour(index)


# ---------------------------------------------------------------------------
# Reading a class set: a built-in name, a YAML file, or a saved config
# ---------------------------------------------------------------------------


def load_class_set(value):
    """A ClassSet from a built-in name ("celebamask_hq", "lapa") or a YAML file.

    The YAML file holds `names` (background first), and optionally `name`,
    `palette` (one [r, g, b] per class) and `flip_pairs` ([left, right] names or ids):

    ```yaml
    names: [background, skin, hair]
    flip_pairs: []
    ```

    Raises:
        ConfigError: one line naming the file and the problem.
    """
    if isinstance(value, ClassSet):
        return value
    if str(value) in BUILTIN_CLASS_SETS:
        return BUILTIN_CLASS_SETS[str(value)]
    path = Path(value)
    if not path.is_file():
        raise ConfigError(
            f"class set {value!r} is neither a built-in set ({'|'.join(BUILTIN_CLASS_SETS)}) "
            "nor a YAML file"
        )
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"class set {path} is not valid YAML: {first_line(error)}") from None
    return class_set_from_config(data, source=str(path), default_name=path.stem)


def class_set_from_config(data, source="class set", default_name="custom"):
    """A ClassSet from a dict (a YAML file or a saved `to_config()`); errors name `source`."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping with 'names', got {type(data).__name__}")
    unknown = set(data) - {"name", "names", "palette", "flip_pairs", "display_names"}
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {sorted(unknown)}; valid: name, names, palette, flip_pairs"
        )
    names = _check_names(data.get("names"), source)
    palette = _check_palette(data.get("palette"), names, source)
    pairs = _check_flip_pairs(data.get("flip_pairs") or [], names, source)
    display = data.get("display_names")
    if display is not None and (not isinstance(display, list) or len(display) != len(names)):
        raise ConfigError(f"{source}: display_names must list {len(names)} names")
    return ClassSet(str(data.get("name") or default_name), names, palette, pairs,
                    tuple(display) if display else None)  # fmt: skip


def _check_names(names, source):
    if not isinstance(names, list) or not 2 <= len(names) <= MAX_CLASSES:
        raise ConfigError(
            f"{source}: 'names' must list 2 to {MAX_CLASSES} class names (background first), "
            f"got {names!r}"
        )
    for name in names:
        if not isinstance(name, str) or not name.strip() or "," in name:
            raise ConfigError(
                f"{source}: class names must be non-empty text without commas, got {name!r}"
            )
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ConfigError(f"{source}: class names must be unique, repeated: {repeated}")
    return tuple(names)


def _check_palette(palette, names, source):
    if palette is None:
        return [known_colour(name, index) for index, name in enumerate(names)]
    if not isinstance(palette, list) or len(palette) != len(names):
        raise ConfigError(
            f"{source}: 'palette' must hold {len(names)} [r, g, b] colours, one per class"
        )
    for colour in palette:
        if (
            not isinstance(colour, list | tuple)
            or len(colour) != 3
            or not all(
                isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in colour
            )
        ):
            raise ConfigError(
                f"{source}: palette colours must be [r, g, b] integers in 0..255, got {colour!r}"
            )
    return palette


def _check_flip_pairs(pairs, names, source):
    if not isinstance(pairs, list):
        raise ConfigError(f"{source}: 'flip_pairs' must be a list of [left, right] pairs")
    ids, checked = {name: index for index, name in enumerate(names)}, []
    for pair in pairs:
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            raise ConfigError(f"{source}: each flip pair must be [left, right], got {pair!r}")
        pair_ids = []
        for member in pair:
            class_id = (
                member
                if isinstance(member, int) and not isinstance(member, bool)
                else ids.get(member)
            )
            if class_id is None or not 0 <= class_id < len(names):
                raise ConfigError(f"{source}: flip pair {pair!r} names an unknown class {member!r}")
            pair_ids.append(class_id)
        checked.append(tuple(pair_ids))
    used = [class_id for pair in checked for class_id in pair]
    if len(used) != len(set(used)):
        raise ConfigError(f"{source}: a class may be in one flip pair only, and not with itself")
    return tuple(checked)


def class_set_of(model):
    """The ClassSet a model predicts: its own, else CelebAMask-HQ's for 19 channels
    (checkpoints from before class sets) or for a stand-in callable without an output
    shape, else numbered classes."""
    class_set = getattr(model, "class_set", None)
    if class_set is not None:
        return class_set
    channels = getattr(model, "output_shape", (NUM_CLASSES,))[-1]
    if channels == NUM_CLASSES:
        return CELEBAMASK_HQ
    names = ["background"] + [f"class_{index}" for index in range(1, channels)]
    return class_set_from_config({"name": "unnamed", "names": names})


# ---------------------------------------------------------------------------
# Remapping: merge or drop classes (`class_map`, `--classes`)
# ---------------------------------------------------------------------------


def parse_class_map(value, source="class_map"):
    """`{target: [source classes]}` from a dict, YAML text or a YAML file's path.

    A target given one name may be written `hair: hair`; "hair,skin" (the
    `--classes` form) keeps those classes under their own names.
    """
    if isinstance(value, str):
        text = value.strip()
        if text.endswith((".yaml", ".yml")) or Path(text).is_file():
            path = Path(text)
            if not path.is_file():
                raise ConfigError(f"{source} file not found: {path}")
            source, text = str(path), path.read_text()
        if text and ":" not in text and not text.startswith(("{", "[", "-")):
            value = {name.strip(): [name.strip()] for name in text.split(",") if name.strip()}
        else:
            try:
                value = yaml.safe_load(text)
            except yaml.YAMLError as error:
                raise ConfigError(f"{source} is not valid YAML: {first_line(error)}") from None
    if not isinstance(value, dict) or not value:
        raise ConfigError(
            f"{source}: expected a mapping {{target class: [source classes]}}, got {value!r}"
        )
    mapping = {}
    for target, sources in value.items():
        sources = [sources] if isinstance(sources, str) else sources
        if (
            not isinstance(target, str)
            or not isinstance(sources, list)
            or not all(isinstance(name, str) for name in sources)
        ):
            raise ConfigError(
                f"{source}: entry {target!r}: expected a class name or a list of names"
            )
        mapping[target] = sources
    return mapping


def remap(class_set, class_map, source="class_map"):
    """Merge `class_set` through `class_map`; return (merged ClassSet, id lookup table).

    Id 0 keeps the background's name and takes every class no target lists
    (dropped classes become background). `table[old_id]` is the new id, a
    (256,) uint8 array for `cv2.LUT`/indexing. Left/right pairs survive when
    their two sides go to two different targets.
    """
    mapping = parse_class_map(class_map, source)
    background = class_set.names[0]
    targets = [background] + [target for target in mapping if target != background]
    table = np.zeros(256, dtype=np.uint8)
    claimed = {}
    for target, sources in mapping.items():
        for name in sources:
            if name not in class_set.ids:
                raise ConfigError(
                    f"{source}: {name!r} is not a class of {class_set.name} "
                    f"({', '.join(class_set.names)})"
                )
            if name in claimed and claimed[name] != target:
                raise ConfigError(
                    f"{source}: {name!r} is mapped to both {claimed[name]!r} and {target!r}"
                )
            claimed[name] = target
            table[class_set.ids[name]] = targets.index(target)
    palette = [
        _merged_colour(class_set, target, mapping.get(target, [background])) for target in targets
    ]
    pairs = {
        tuple(sorted((int(table[left]), int(table[right]))))
        for left, right in class_set.flip_pairs
        if table[left] != table[right] and 0 not in (table[left], table[right])
    }
    merged = ClassSet(f"{class_set.name}_merged", targets, palette, sorted(pairs))
    return merged, table


def _merged_colour(class_set, target, sources):
    name = target if target in class_set.ids else sources[0]
    return class_set.palette[class_set.ids[name]]
