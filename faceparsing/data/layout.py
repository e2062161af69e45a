"""Dataset layouts: CelebAMask-HQ's release and LaPa's (any labelled folder), and their splits.

CelebAMask-HQ, as the user unzips it:

```
root/CelebA-HQ-img/{k}.jpg                                  1024x1024 RGB JPEG
root/CelebAMask-HQ-mask-anno/{k // 2000}/{k:05d}_{part}.png  512x512 part masks
root/CelebA-HQ-to-CelebA-mapping.txt                        idx orig_idx orig_file
```

LaPa as released, and a user's own data in the same layout plus a class-set file
(`classes.yaml` in the root; landmarks and other folders are ignored):

```
root/{train,val,test}/images/{stem}.jpg     any size
root/{train,val,test}/labels/{stem}.png     one class id per pixel, the image's size
```

Paths, sizes and the split rule only: no image decoding and no Keras, so the
synthetic-face writer and the dataset checks share these facts cheaply.
"""

import os
from pathlib import Path

from faceparsing.classes import (
    CELEBAMASK_HQ,
    LAPA,
    PART_NAMES,
    class_set_from_config,
    load_class_set,
)
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

# LaPa's layout: one folder per split, images and label PNGs of the same stem.
FOLDER_SPLITS = ("train", "val", "test")
FOLDER_IMAGE_DIR = "images"
FOLDER_LABEL_DIR = "labels"
FOLDER_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
CLASS_SET_FILE = "classes.yaml"  # a user's own classes, beside the split folders
# "auto" detects the layout from what data_root holds; the others force it.
DATASETS = ("auto", "celebamask_hq", "lapa", "folder")


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


# ---------------------------------------------------------------------------
# Layout detection and the layout objects the dataset reads through
# ---------------------------------------------------------------------------


def detect_dataset(root, dataset="auto"):
    """ "celebamask_hq", "lapa" or "folder" for `root` (`dataset` other than "auto" forces it).

    Split folders with `images/` are LaPa's layout: "folder" when the root holds
    `classes.yaml`, else "lapa". Anything else is read as CelebAMask-HQ, whose
    errors then name the files that are missing.
    """
    if dataset not in DATASETS:
        raise ConfigError(f"dataset must be one of {'|'.join(DATASETS)}, got {dataset!r}")
    if dataset != "auto":
        return dataset
    root = Path(root)
    if (root / MAPPING_FILE).is_file() or (root / IMAGE_DIR).is_dir():
        return "celebamask_hq"
    if any((root / split / FOLDER_IMAGE_DIR).is_dir() for split in FOLDER_SPLITS):
        return "folder" if (root / CLASS_SET_FILE).is_file() else "lapa"
    return "celebamask_hq"


def open_layout(root, dataset="auto", classes=""):
    """The layout object of `root`: `CelebAMaskHQLayout`, `FolderLayout`, or a packed
    folder's `PackedLayout` (recognised by its manifest).

    Args:
        root: str or Path. The dataset root.
        dataset: str. One of `DATASETS`. Defaults to "auto".
        classes: str. The data's class set (built-in name or YAML file); ""
            means the layout's own (`classes.yaml` for "folder", LaPa's 11 for "lapa").
    """
    if hasattr(root, "split_ids"):  # a layout object already
        return root
    from faceparsing.data import packed  # imports this module

    if packed.is_packed(root):  # whatever it was packed from: the manifest says
        return PackedLayout(root)
    kind = detect_dataset(root, dataset)
    if kind == "celebamask_hq":
        if classes and load_class_set(classes) != CELEBAMASK_HQ:
            raise ConfigError(
                f"classes {classes!r}: CelebAMask-HQ's release layout holds its own 19 classes"
            )
        return CelebAMaskHQLayout(root)
    if not classes and kind == "folder":
        classes = Path(root) / CLASS_SET_FILE
        if not classes.is_file():
            raise DatasetError(
                f"dataset 'folder' needs a class set: {classes} not found (or set the classes key)"
            )
    return FolderLayout(root, load_class_set(classes) if classes else LAPA, kind)


class CelebAMaskHQLayout:
    """CelebAMask-HQ's release: integer image ids, labels merged from part masks (512x512)."""

    kind = "celebamask_hq"
    class_set = CELEBAMASK_HQ
    label_size = MASK_SIZE

    def __init__(self, root):
        self.root = Path(root)

    def split_ids(self, split):
        return split_ids(self.root, split)

    def image_path(self, image_id):
        return image_path(self.root, image_id)

    def sample_name(self, image_id):
        return str(image_id)


class FolderLayout:
    """LaPa's layout: `<split>/images/<stem>.jpg` with `<split>/labels/<stem>.png`.

    Samples are numbered 0..N-1 over train, val and test in sorted file order,
    so the dataset, caches and seeds work with integer ids as for CelebAMask-HQ.

    Args:
        root: str or Path. The dataset root.
        class_set: ClassSet. The classes the label PNGs hold.
        kind: str. "lapa" or "folder", for messages.
    """

    label_size = None  # labels are compared at their own size

    def __init__(self, root, class_set, kind="folder"):
        self.root = Path(root)
        self.class_set = class_set
        self.kind = kind
        self.entries = []  # (split, image file name), indexed by sample id
        for split in FOLDER_SPLITS:
            folder = self.root / split / FOLDER_IMAGE_DIR
            if folder.is_dir():
                names = sorted(
                    entry.name for entry in os.scandir(folder)
                    if entry.name.lower().endswith(FOLDER_IMAGE_SUFFIXES)
                )  # fmt: skip
                self.entries += [(split, name) for name in names]
        if not self.entries:
            raise DatasetError(
                f"no images found in {self.root}/{{train,val,test}}/{FOLDER_IMAGE_DIR} "
                f"(the LaPa layout; see docs/dataset.md)"
            )

    def split_ids(self, split):
        if split not in SPLITS:
            raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")
        return [index for index, (name, _) in enumerate(self.entries) if split in ("all", name)]

    def image_path(self, image_id):
        split, name = self.entries[image_id]
        return self.root / split / FOLDER_IMAGE_DIR / name

    def label_path(self, image_id):
        split, name = self.entries[image_id]
        return self.root / split / FOLDER_LABEL_DIR / f"{Path(name).stem}.png"

    def sample_name(self, image_id):
        return Path(self.entries[image_id][1]).stem


class PackedLayout:
    """A packed folder seen as a dataset layout (see `faceparsing.data.layout.open_layout`):
    the ids, class set and sample names of what was packed, read from the shards.

    Args:
        root: str or Path. The packed folder.
    """

    kind = "packed"

    def __init__(self, root):
        from faceparsing.data.packed import open_pack

        self.pack = open_pack(root)
        self.root = self.pack.root
        manifest = self.pack.manifest
        self.source_kind = manifest.get("layout", "celebamask_hq")
        saved = manifest.get("class_set")
        self.class_set = class_set_from_config(saved, str(self.root)) if saved else CELEBAMASK_HQ
        self.label_size = self.pack.image_size
        self._names = manifest.get("names", {})

    def split_ids(self, split):
        if split not in SPLITS:
            raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")
        return self.pack.split_ids(split)

    def sample_name(self, image_id):
        return self._names.get(str(image_id), str(image_id))

    def load_sample(self, image_id, size, fast_decode=False):
        return self.pack.load_sample(image_id, size, fast_decode)

    def load_image(self, image_id, size):
        return self.pack.load_sample(image_id, size)[0]

    def load_label(self, image_id):
        return self.pack.load_label(image_id)


def check_release_labels(layout):
    """Raise unless `layout` gives labels at their released size (a pack of CelebAMask-HQ
    at 512, or no pack at all).

    Evaluation scores at the release's label resolution; a smaller pack would
    score other (resized) labels, and a pack of a folder layout holds its labels
    resized to one square size.
    """
    if getattr(layout, "kind", None) != PackedLayout.kind:
        return
    if layout.source_kind != "celebamask_hq":
        raise DatasetError(
            f"{layout.root} packs a {layout.source_kind} folder with its labels resized to "
            f"{layout.label_size}x{layout.label_size}; score on the folder itself "
            f"({layout.pack.manifest['source']})"
        )
    if layout.label_size != MASK_SIZE:
        raise DatasetError(
            f"{layout.root} is packed at {layout.label_size}, but scoring needs the release's "
            f"{MASK_SIZE}x{MASK_SIZE} labels: pack with --image_size {MASK_SIZE}"
        )
