"""LaPa's layout, and your own labelled faces in it: one label PNG beside each image.

```
root/{train,val,test}/images/{stem}.jpg     any size
root/{train,val,test}/labels/{stem}.png     one class id per pixel, the image's size
root/classes.yaml                           your own class set (LaPa's 11 are built in)
```
"""

import os
from pathlib import Path

import cv2
import numpy as np

from faceparsing.data.splits import check_split
from faceparsing.errors import DatasetError, ImageNotFoundError, ImageReadError
from faceparsing.images import decode, open_image, read_file, read_rgb_resized, resize_nearest

FOLDER_SPLITS = ("train", "val", "test")
FOLDER_IMAGE_DIR = "images"
FOLDER_LABEL_DIR = "labels"
FOLDER_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
CLASS_SET_FILE = "classes.yaml"  # a user's own classes, beside the split folders


class FolderLayout:
    """LaPa's layout: `<split>/images/<stem>.jpg` with `<split>/labels/<stem>.png`.

    Samples are numbered 0..N-1 over train, val and test in sorted file order, so the
    dataset, caches and seeds work with integer ids as for CelebAMask-HQ.

    Args:
        root: str or Path. The dataset root.
        class_set: ClassSet. The classes the label PNGs hold.
        kind: str. "lapa" or "folder", for messages.
        cache_dir: str, Path or None. Where the class counts of its splits are cached.
    """

    label_size = None  # labels are compared at their own size

    def __init__(self, root, class_set, kind="folder", cache_dir=None):
        self.root = Path(root)
        self.class_set = class_set
        self.kind = kind
        self.cache_dir = cache_dir
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
        check_split(split)
        return [index for index, (name, _) in enumerate(self.entries) if split in ("all", name)]

    def sample_name(self, image_id):
        return Path(self.entries[image_id][1]).stem

    def image_path(self, image_id):
        split, name = self.entries[image_id]
        return self.root / split / FOLDER_IMAGE_DIR / name

    def label_path(self, image_id):
        split, name = self.entries[image_id]
        return self.root / split / FOLDER_LABEL_DIR / f"{Path(name).stem}.png"

    def load_image(self, image_id, size):
        return read_rgb_resized(self.image_path(image_id), size)

    def load_label(self, image_id):
        """The label PNG of sample `image_id`, checked against its image.

        Raises:
            DatasetError: the label is missing, unreadable, not one id per pixel, of
                another size than its image, or holds ids beyond the class set.
        """
        path = self.label_path(image_id)
        data = read_file(path, "label")
        with open_image(path, "label", data=data) as label_file:
            size, mode = label_file.size, label_file.mode
            # OpenCV expands a palette PNG to colours; Pillow keeps its indices (the ids).
            indices = np.asarray(label_file) if mode == "P" else None
        if mode not in ("L", "P"):
            raise DatasetError(
                f"label {path} is a {mode} image; expected one class id per pixel (grey or "
                "palette PNG)"
            )
        with open_image(self.image_path(image_id), "image") as image_file:
            image_size = image_file.size
        if size != image_size:
            raise DatasetError(
                f"label {path} is {size[0]}x{size[1]}, its image {self.image_path(image_id)} is "
                f"{image_size[0]}x{image_size[1]}"
            )
        label = indices if indices is not None else decode(data, cv2.IMREAD_UNCHANGED)
        if label is None or label.ndim != 2:
            raise ImageReadError(f"cannot read label {path}: not a readable single-channel PNG")
        check_label_ids(label, self.class_set, path)
        return label.astype(np.uint8, copy=False)

    def load_sample(self, image_id, size, fast=False):
        return self.load_image(image_id, size), resize_nearest(
            self.load_label(image_id), (size, size)
        )

    def problems(self, ids, full=False):
        """Per id: image and label exist with the same size (quick: headers only), or
        both decoded (`full`)."""
        return [problem for image_id in ids for problem in self._problems(image_id, full)]

    def _problems(self, image_id, full):
        if full:
            try:
                with open_image(self.image_path(image_id)) as image:
                    image.load()
                self.load_label(image_id)
            except DatasetError as error:
                return [str(error)]
            return []
        image, label = self.image_path(image_id), self.label_path(image_id)
        sizes = []
        for path, what in ((image, "image"), (label, "label")):
            try:
                with open_image(path, what) as file:
                    sizes.append(file.size)
            except ImageNotFoundError:
                return [f"missing {what} {path}"]
            except DatasetError as error:
                return [str(error)]
        if sizes[0] != sizes[1]:
            return [
                f"label {label} is {sizes[1][0]}x{sizes[1][1]}, its image {image} is "
                f"{sizes[0][0]}x{sizes[0][1]}"
            ]
        return []


def check_label_ids(label, class_set, path):
    """Raise DatasetError naming `path` if `label` holds an id beyond `class_set`."""
    largest = int(label.max(initial=0))
    if largest >= class_set.num_classes:
        raise DatasetError(
            f"label {path} holds id {largest}, beyond the {class_set.num_classes} classes of "
            f"{class_set.name} (ids 0..{class_set.num_classes - 1})"
        )
