"""Dataset layouts: what one is, which one a folder holds, and the checks on it.

A layout reads one dataset's samples by integer id. `release.ReleaseLayout` (CelebAMask-HQ
as unzipped), `folder.FolderLayout` (LaPa's layout, or your own faces in it) and
`packed.PackedLayout` (any of them packed) implement `Layout` in full; `open_layout`
picks one for a folder, and everything reads datasets through it.
"""

from pathlib import Path
from typing import Protocol

from faceparsing.classes import CELEBAMASK_HQ, LAPA, load_class_set
from faceparsing.data.folder import CLASS_SET_FILE, FOLDER_IMAGE_DIR, FOLDER_SPLITS, FolderLayout
from faceparsing.data.packed import PackedLayout, is_packed, open_pack
from faceparsing.data.release import IMAGE_DIR, MAPPING_FILE, MASK_SIZE, ReleaseLayout
from faceparsing.data.splits import SPLITS  # noqa: F401  (the split names, re-exported)
from faceparsing.errors import ConfigError, DatasetError

# "auto" detects the layout from what data_root holds; the others force it.
DATASETS = ("auto", "celebamask_hq", "lapa", "folder")


class Layout(Protocol):
    """What the dataset, the checks and the scripts read a dataset through.

    Attributes:
        kind: str. "celebamask_hq", "lapa", "folder" or "packed".
        root: Path. The dataset's folder.
        class_set: ClassSet. The classes its label maps hold.
        label_size: int or None. Side of its label maps; None: each image's own size.
        cache_dir: Path or None. Where merged labels and class counts are cached.
    """

    kind: str
    root: Path

    def split_ids(self, split):
        """The sorted integer ids of `split` (one of `SPLITS`)."""

    def sample_name(self, image_id):
        """A sample's name in reports and file names."""

    def load_image(self, image_id, size):
        """The image as a (size, size, 3) uint8 RGB array."""

    def load_label(self, image_id):
        """The label map, (H, W) uint8 ids at the layout's own label size."""

    def load_sample(self, image_id, size, fast=False):
        """(image, label) at (size, size), the label resized with nearest neighbour;
        `fast` allows a slightly less exact image decode (augmented training)."""

    def problems(self, ids, full=False):
        """Problems with the samples `ids`, each naming its file: from the file headers
        alone (quick enough before every training), or with every file decoded (`full`)."""


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


def open_layout(root, dataset="auto", classes="", cache_dir=None):
    """The layout of `root`; a layout object is returned as it is.

    Args:
        root: str, Path or a layout. The dataset root, or a packed folder (recognised
            by its manifest, whatever was packed).
        dataset: str. One of `DATASETS`. Defaults to "auto".
        classes: str. The data's class set (built-in name or YAML file); "" means the
            layout's own (`classes.yaml` for "folder", LaPa's 11 for "lapa").
        cache_dir: str, Path or None. Where merged labels (CelebAMask-HQ) and class counts
            are cached.
    """
    if not isinstance(root, (str, Path)):
        return root
    if is_packed(root):
        return open_pack(root)
    kind = detect_dataset(root, dataset)
    if kind == "celebamask_hq":
        if classes and load_class_set(classes) != CELEBAMASK_HQ:
            raise ConfigError(
                f"classes {classes!r}: CelebAMask-HQ's release layout holds its own 19 classes"
            )
        return ReleaseLayout(root, cache_dir)
    if not classes and kind == "folder":
        classes = Path(root) / CLASS_SET_FILE
        if not classes.is_file():
            raise DatasetError(
                f"dataset 'folder' needs a class set: {classes} not found (or set the classes key)"
            )
    return FolderLayout(root, load_class_set(classes) if classes else LAPA, kind, cache_dir)


def split_ids(root, split):
    """The sorted ids of `split` of the dataset at `root` (24183 / 2993 / 2824 on the
    full release)."""
    return open_layout(root).split_ids(split)


def validate_split(root, ids, max_listed=5):
    """Check quickly (file headers only) that the samples `ids` are there and sized right.

    Runs before every training, so a broken download fails in seconds, not mid-epoch;
    `check_dataset` is the full scan.

    Raises:
        DatasetError: one line listing the first `max_listed` problems and their count.
    """
    layout = open_layout(root)
    problems = layout.problems(ids)
    if problems:
        listed = "; ".join(problems[:max_listed])
        more = f"; ... and {len(problems) - max_listed} more" if len(problems) > max_listed else ""
        raise DatasetError(
            f"{len(problems)} problem(s) in {layout.root}: {listed}{more} (run `python "
            f"data_generator.py check --data_root {layout.root}` for a full scan)"
        )


def check_dataset(root, split="all", progress=True):
    """Every problem of one split, each naming its file, with every file decoded
    (`python data_generator.py check`); an empty list when the dataset is sound."""
    try:
        layout = open_layout(root)
        ids = layout.split_ids(split)
    except DatasetError as error:  # a release without its mapping file: name what is missing
        release = not is_packed(root) and detect_dataset(root) == "celebamask_hq"
        return (release and ReleaseLayout(root).problems([])) or [str(error)]
    if progress:
        from tqdm import tqdm  # only the command line needs it

        ids = tqdm(ids, desc=f"checking {split}", unit="image")
    return layout.problems(ids, full=True)


def check_release_labels(layout):
    """Raise unless `layout` gives labels at the release's size (not packed, or
    CelebAMask-HQ packed at 512): evaluation scores at that resolution, and a pack of
    a folder layout holds its labels resized to one square size."""
    if layout.kind != PackedLayout.kind:
        return
    if layout.source_kind != "celebamask_hq":
        raise DatasetError(
            f"{layout.root} packs a {layout.source_kind} folder with its labels resized to "
            f"{layout.label_size}x{layout.label_size}; score on the folder itself "
            f"({layout.manifest['source']})"
        )
    if layout.label_size != MASK_SIZE:
        raise DatasetError(
            f"{layout.root} is packed at {layout.label_size}, but scoring needs the release's "
            f"{MASK_SIZE}x{MASK_SIZE} labels: pack with --image_size {MASK_SIZE}"
        )
