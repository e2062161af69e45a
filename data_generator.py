"""CelebAMask-HQ data: merged label maps, the official split and a Keras PyDataset.

The module reads the release exactly as it is unzipped (see README, "Dataset"):

```
root/CelebA-HQ-img/{k}.jpg                                  1024x1024 RGB JPEG
root/CelebAMask-HQ-mask-anno/{k // 2000}/{k:05d}_{part}.png  512x512 part masks
root/CelebA-HQ-to-CelebA-mapping.txt                        idx orig_idx orig_file
```

Usage:
    python data_generator.py make-demo --out data/demo --num 200 [--seed 0]
    python data_generator.py check --data_root data/CelebAMask-HQ [--split all]
"""

import argparse
import hashlib
import json
import logging
import math
import os
import sys
from pathlib import Path

# Keep TensorFlow's C++ start-up chatter out of the output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
from PIL import Image, ImageEnhance, ImageStat, PngImagePlugin

from face_classes import FLIP_PERMUTATION, NUM_CLASSES, PART_NAMES
from io_utils import atomic_path, atomic_write_text

logger = logging.getLogger(__name__)

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

TARGETS = ("integer", "onehot")
WEIGHT_SCHEMES = ("inverse_frequency", "median_frequency", "per_image", "enet")
# Bumped whenever the cached label format changes, so old entries are re-merged.
CACHE_VERSION = "1"


class DatasetError(ValueError):
    """A dataset file is missing, unreadable or has the wrong size or layout."""


# What Pillow raises for a file it cannot decode. DecompressionBombError is not
# an OSError: without it here a bomb would end a run with a traceback.
UNREADABLE_IMAGE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def _refuse_bombs(image, path):
    # Pillow only warns between 1x and 2x its limit; a dataset file that large is
    # never a genuine sample, so refuse it before decoding.
    width, height = image.size
    if width * height > Image.MAX_IMAGE_PIXELS:
        raise DatasetError(
            f"{path} is {width}x{height} pixels, over the {Image.MAX_IMAGE_PIXELS}-pixel "
            "limit (possible decompression bomb)"
        )


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
    return mask_folder(root, image_id) / f"{image_id:05d}_{part}.png"


def existing_parts(root, image_id):
    """Return `[(class_id, path, stat), ...]` for the part files that exist, in merge order."""
    parts = []
    for class_id, part in enumerate(PART_NAMES, start=1):
        path = part_path(root, image_id, part)
        try:
            parts.append((class_id, path, path.stat()))
        except FileNotFoundError:
            continue  # an absent part is simply not visible in this image
    return parts


def _no_parts_message(root, image_id):
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
# Label maps
# ---------------------------------------------------------------------------


def read_mask(path):
    """Read one part mask as a (512, 512) uint8 array, as the official script sees it.

    `g_mask.py` uses `cv2.imread` (3-channel BGR) and keeps channel 0, the blue
    channel; grey files give their only channel. Non-zero means foreground.

    Args:
        path: str or Path. A 512x512 PNG mask.

    Returns:
        A (512, 512) uint8 array.
    """
    try:
        with Image.open(path) as mask:
            if mask.size != (MASK_SIZE, MASK_SIZE):
                raise DatasetError(
                    f"mask {path} is {mask.size[0]}x{mask.size[1]}, expected {MASK_SIZE}x{MASK_SIZE}"
                )
            if mask.mode in ("L", "1"):
                channel = mask.convert("L")
            elif mask.mode == "RGB":
                channel = mask.getchannel("B")  # no conversion copy for the usual case
            else:
                channel = mask.convert("RGB").getchannel("B")
            return np.asarray(channel)
    except DatasetError:
        raise
    except UNREADABLE_IMAGE_ERRORS as error:
        raise DatasetError(f"cannot read mask {path}: {error}") from error


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
        raise DatasetError(_no_parts_message(root, image_id))
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
            raise DatasetError(_no_parts_message(self.root, image_id))
        fingerprint = parts_fingerprint(parts)
        label = self._read_entry(image_id, fingerprint)
        if label is None:
            label = merge_masks(self.root, image_id)
            self._write_entry(image_id, label, fingerprint)
        return label

    def _read_entry(self, image_id, fingerprint):
        path = self.entry_path(image_id)
        try:
            with Image.open(path) as entry:
                entry.load()
                if entry.text.get("fingerprint") != fingerprint:
                    return None
                label = np.asarray(entry)
        except FileNotFoundError:
            return None
        except UNREADABLE_IMAGE_ERRORS as error:
            logger.warning("ignoring corrupt label cache entry %s: %s", path, error)
            return None
        if label.shape != (MASK_SIZE, MASK_SIZE) or label.max() >= NUM_CLASSES:
            return None
        return label

    def _write_entry(self, image_id, label, fingerprint):
        path = self.entry_path(image_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        info = PngImagePlugin.PngInfo()
        info.add_text("fingerprint", fingerprint)
        with atomic_path(path) as temp_path:
            Image.fromarray(label, mode="L").save(temp_path, format="PNG", pnginfo=info)


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
        root: str or Path. The dataset root (holding the mapping file).
        split: str. One of "train", "val", "test", "all".

    Returns:
        A sorted list of int image ids (24183 / 2993 / 2824 on the release).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    mapping = read_mapping(root)
    return sorted(
        image_id
        for image_id, orig_idx in mapping.items()
        if split == "all" or official_split(orig_idx) == split
    )


# ---------------------------------------------------------------------------
# Images, resizing, flip
# ---------------------------------------------------------------------------


def load_image(root, image_id, size):
    """Decode one image as a (size, size, 3) uint8 RGB array.

    JPEG draft mode decodes at a reduced scale (1/2, 1/4, 1/8) no smaller than
    `size`, which is much faster than decoding 1024x1024 and downsizing.
    """
    path = image_path(root, image_id)
    try:
        with Image.open(path) as image:
            _refuse_bombs(image, path)
            image.draft("RGB", (size, size))
            image = image.convert("RGB")
            if image.size != (size, size):
                image = image.resize((size, size), Image.BILINEAR)
            return np.asarray(image)
    except DatasetError:
        raise
    except UNREADABLE_IMAGE_ERRORS as error:
        raise DatasetError(f"cannot read image {path}: {error}") from error


def resize_label(label, size):
    """Resize a label map with nearest neighbour, which never invents ids."""
    if label.shape == (size, size):
        return label
    return np.asarray(Image.fromarray(label).resize((size, size), Image.NEAREST))


def horizontal_flip(image, label):
    """Mirror an image (H, W, C) and its label (H, W), swapping left/right ids.

    After mirroring, the left eye sits where the right one was, so ids go
    through `FLIP_PERMUTATION` (eyes, brows and ears trade places; lips don't).
    """
    image = np.ascontiguousarray(np.asarray(image)[:, ::-1])
    label = np.asarray(label)
    label = FLIP_PERMUTATION.astype(label.dtype)[label[:, ::-1]]
    return image, label


# ---------------------------------------------------------------------------
# Class weights
# ---------------------------------------------------------------------------


def class_pixel_counts(labels, num_classes=NUM_CLASSES):
    """Return the int64 pixel count of each class id in `labels` (any shape)."""
    return np.bincount(np.asarray(labels).ravel(), minlength=num_classes)[:num_classes]


def class_weights_from_counts(counts, scheme, max_weight=None):
    """Turn class pixel counts into a weight per class.

    Schemes: "inverse_frequency" (and "per_image", the same rule applied to one
    image's counts) 1 / p; "median_frequency" median(p) / p (Eigen & Fergus
    2015); "enet" 1 / ln(1.02 + p) (Paszke et al. 2016), with p a class's pixel
    frequency. Classes with zero count get the largest weight of the present
    classes, so nothing divides by zero. The vector is scaled so the average
    weight over the counted pixels is 1, then clipped at `max_weight`.

    Args:
        counts: array-like of 19 non-negative numbers.
        scheme: str. One of `WEIGHT_SCHEMES`.
        max_weight: float or None. Upper bound on any weight (after scaling).

    Returns:
        A float32 array of 19 finite, positive weights.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.shape != (NUM_CLASSES,) or not np.all(np.isfinite(counts)) or counts.min() < 0:
        raise ValueError(f"counts must be {NUM_CLASSES} non-negative numbers, got {counts!r}")
    if scheme not in WEIGHT_SCHEMES:
        raise ValueError(f"scheme must be one of {WEIGHT_SCHEMES}, got {scheme!r}")
    if max_weight is not None and not max_weight > 0:
        raise ValueError(f"max_weight must be positive or None, got {max_weight!r}")
    total = counts.sum()
    if total == 0:
        return np.ones(NUM_CLASSES, dtype=np.float32)
    frequency = counts / total
    present = frequency > 0
    weights = np.zeros(NUM_CLASSES)
    if scheme in ("inverse_frequency", "per_image"):
        weights[present] = 1.0 / frequency[present]
    elif scheme == "median_frequency":
        weights[present] = np.median(frequency[present]) / frequency[present]
    else:
        weights[present] = 1.0 / np.log(1.02 + frequency[present])
    weights[~present] = weights[present].max()
    weights /= np.sum(frequency * weights)
    if max_weight is not None:
        weights = np.minimum(weights, max_weight)
    return weights.astype(np.float32)


def pixel_weights(labels, class_weight_vector):
    """Return float32 per-pixel weights for `labels`, scaled to mean 1.

    Args:
        labels: int array of any shape with ids in 0..18.
        class_weight_vector: 19 finite positive weights.
    """
    vector = _check_weight_vector(class_weight_vector)
    weights = vector[np.asarray(labels)]
    return (weights / weights.mean()).astype(np.float32)


def per_image_pixel_weights(labels, max_weight=None):
    """Per-pixel weights where each image (first axis) uses its own class counts."""
    weights = np.stack(
        [
            class_weights_from_counts(class_pixel_counts(label), "per_image", max_weight)[label]
            for label in labels
        ]
    )
    return (weights / weights.mean()).astype(np.float32)


def _check_weight_vector(class_weight_vector):
    vector = np.asarray(class_weight_vector, dtype=np.float32)
    if vector.shape != (NUM_CLASSES,) or not np.all(np.isfinite(vector)) or vector.min() <= 0:
        raise ValueError(
            f"class weights must be {NUM_CLASSES} finite positive numbers, "
            f"got {class_weight_vector!r}"
        )
    return vector


_TRAIN_COUNTS_MEMORY = {}


def training_class_counts(root, cache_dir=None):
    """Return the pixel count of each class over the training split (512x512 labels).

    Computed once: stored in `cache_dir/class_counts_train.json` if given (keyed
    by the training id list), otherwise kept in memory for this process.
    """
    train_ids = split_ids(root, "train")
    key = hashlib.sha1(json.dumps([str(Path(root).resolve()), train_ids]).encode()).hexdigest()
    if key in _TRAIN_COUNTS_MEMORY:
        return _TRAIN_COUNTS_MEMORY[key]
    counts_path = Path(cache_dir) / "class_counts_train.json" if cache_dir else None
    counts = _read_counts_file(counts_path, key) if counts_path else None
    if counts is None:
        label_cache = LabelCache(root, cache_dir) if cache_dir else None
        counts = np.zeros(NUM_CLASSES, dtype=np.int64)
        for image_id in train_ids:
            label = label_cache.load(image_id) if label_cache else merge_masks(root, image_id)
            counts += class_pixel_counts(label)
        if counts_path:
            atomic_write_text(counts_path, json.dumps({"key": key, "counts": counts.tolist()}))
    _TRAIN_COUNTS_MEMORY[key] = counts
    return counts


def _read_counts_file(path, key):
    try:
        content = json.loads(path.read_text())
        if content["key"] == key and len(content["counts"]) == NUM_CLASSES:
            return np.asarray(content["counts"], dtype=np.int64)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


# ---------------------------------------------------------------------------
# Augmentation
# ---------------------------------------------------------------------------

SCALE_RANGE = (0.75, 1.25)
MAX_ROTATION_DEGREES = 10.0
COLOR_JITTER = 0.2  # brightness, contrast and saturation factors in 1 +- 0.2


def augment_sample(image, label, rng):
    """Randomly flip, scale, crop/pad, rotate and colour-jitter one sample.

    Geometry is one affine warp: bilinear for the image, nearest for the label
    (no invented ids); uncovered areas become black image and background label.

    Args:
        image: (S, S, 3) uint8 array.
        label: (S, S) uint8 array.
        rng: numpy Generator; seeding it per sample makes results independent
            of worker scheduling.
    """
    # Everything runs on PIL images: its C loops are several times faster
    # than numpy's strided copies for flips and per-pixel tables.
    image, label = Image.fromarray(image), Image.fromarray(label)
    if rng.random() < 0.5:
        image, label = _flip_images(image, label)
    size = label.height
    scale = rng.uniform(*SCALE_RANGE)
    angle = np.deg2rad(rng.uniform(-MAX_ROTATION_DEGREES, MAX_ROTATION_DEGREES))
    # A zoomed-in face is cropped, a zoomed-out one padded, at a random place.
    shift = rng.uniform(-1, 1, size=2) * abs(scale - 1) * size / 2
    coefficients = _affine_coefficients(size, scale, angle, shift)
    image = image.transform(
        (size, size), Image.AFFINE, coefficients, resample=Image.BILINEAR, fillcolor=(0, 0, 0)
    )
    label = label.transform(
        (size, size), Image.AFFINE, coefficients, resample=Image.NEAREST, fillcolor=0
    )
    image = _jitter_colour(image, rng)
    return np.asarray(image), np.asarray(label)


# `Image.point` table mapping each id of an "L" label image to its mirror id.
_FLIP_TABLE = [int(i) for i in FLIP_PERMUTATION] + list(range(len(FLIP_PERMUTATION), 256))


def _flip_images(image, label):
    """`horizontal_flip` for a PIL image and its uint8 ("L") PIL label."""
    mirror = Image.Transpose.FLIP_LEFT_RIGHT
    return image.transpose(mirror), label.transpose(mirror).point(_FLIP_TABLE)


def _jitter_colour(image, rng):
    """`ImageEnhance` Brightness, Contrast and Color with factors in 1 +- COLOR_JITTER.

    Brightness and contrast blend with a constant image, so they are per-value
    tables, built by `Image.blend` itself on a ramp: the result is exactly
    that of `ImageEnhance`, without two full-size blends.
    """
    factor = rng.uniform(1 - COLOR_JITTER, 1 + COLOR_JITTER)
    image = image.point(_blend_table(0, factor) * len(image.getbands()))
    factor = rng.uniform(1 - COLOR_JITTER, 1 + COLOR_JITTER)
    mean = int(ImageStat.Stat(image.convert("L")).mean[0] + 0.5)  # as ImageEnhance.Contrast
    image = image.point(_blend_table(mean, factor) * len(image.getbands()))
    factor = rng.uniform(1 - COLOR_JITTER, 1 + COLOR_JITTER)
    return ImageEnhance.Color(image).enhance(factor)


_RAMP = Image.frombytes("L", (256, 1), bytes(range(256)))


def _blend_table(constant, factor):
    """`Image.blend(constant, value, factor)` for every uint8 value, as a list."""
    return list(Image.blend(Image.new("L", (256, 1), constant), _RAMP, factor).getdata())


def _affine_coefficients(size, scale, angle, shift):
    # PIL maps each output pixel back to an input pixel: input = A @ output + b.
    center = np.array([size / 2, size / 2])
    cos, sin = np.cos(angle), np.sin(angle)
    inverse = np.array([[cos, sin], [-sin, cos]]) / scale
    offset = center - inverse @ (center + shift)
    return (inverse[0, 0], inverse[0, 1], offset[0], inverse[1, 0], inverse[1, 1], offset[1])


# ---------------------------------------------------------------------------
# Keras dataset
# ---------------------------------------------------------------------------


class CelebAMaskHQ(keras.utils.PyDataset):
    """Batches of CelebAMask-HQ images and label maps for `model.fit`.

    Batches are `(x, y)`, or `(x, y, w)` when `class_weights` is set:
    x float32 (B, S, S, 3) RGB in [0, 255] (the model does its own
    preprocessing); y int32 (B, S, S) ids for target="integer" or float32
    (B, S, S, 19) for target="onehot"; w float32 (B, S, S) pixel weights with
    mean 1 over the batch. The last batch may be smaller.

    Shuffling and augmentation are deterministic for a given `seed` and epoch:
    each sample has its own generator seeded by (seed, epoch, image_id).
    `epoch` counts `on_epoch_end` calls; Keras 3.15's `fit` makes one before
    its first epoch too, so fit's first epoch uses epoch 1. Call `set_epoch`
    to resume a run with the same order and augmentation.

    Args:
        root: str or Path. Dataset root in the release layout.
        split: str. "train", "val", "test" or "all" (official split).
            Defaults to "train".
        batch_size: int. Defaults to 8.
        image_size: int. Side S of the square inputs. Defaults to 512.
        target: str. "integer" or "onehot". Defaults to "integer".
        class_weights: None, one of `WEIGHT_SCHEMES`, or 19 floats. Frequency
            schemes use the training split's pixel counts (computed once).
            Defaults to None (no weights).
        augment: bool. Random flip (with left/right swap), scale, crop/pad,
            rotation and colour jitter. Defaults to False.
        shuffle: bool. Reshuffle the order every epoch. Defaults to True.
        seed: int. Seed of shuffling and augmentation. Defaults to 0.
        cache_dir: str, Path or None. Where merged labels (and the training
            class counts) are cached. Defaults to None (merge every time).
        ids: list of int or None. Overrides the split's ids (see `shard`).
        skip_bad_samples: bool. If True, an unreadable sample is logged,
            recorded in `bad_samples` and replaced by the next readable one
            of the split; if False it raises `DatasetError`. Defaults to False.
        max_weight: float or None. Clip of the class weights. Defaults to None.
        **kwargs: `workers`, `use_multiprocessing`, `max_queue_size` of
            `keras.utils.PyDataset`.

    Example:
    ```python
    train = CelebAMaskHQ("data/demo", "train", batch_size=8, image_size=128, augment=True)
    x, y = train[0]  # (8, 128, 128, 3) float32, (8, 128, 128) int32
    ```
    """

    def __init__(
        self,
        root,
        split="train",
        batch_size=8,
        image_size=512,
        target="integer",
        class_weights=None,
        augment=False,
        shuffle=True,
        seed=0,
        cache_dir=None,
        ids=None,
        skip_bad_samples=False,
        max_weight=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        _check_positive_int("batch_size", batch_size)
        _check_positive_int("image_size", image_size)
        if target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
        self.root = Path(root)
        self.split = split
        self.ids = list(split_ids(root, split) if ids is None else ids)
        if not self.ids:
            raise DatasetError(f"split {split!r} of {root} has no images")
        self.batch_size = batch_size
        self.image_size = image_size
        self.num_classes = NUM_CLASSES
        self.target = target
        self.class_weights = class_weights
        self.max_weight = max_weight
        self.augment = augment
        self.shuffle = shuffle
        self.seed = seed
        self.cache_dir = cache_dir
        self.skip_bad_samples = skip_bad_samples
        self.bad_samples = []
        self._pydataset_kwargs = kwargs
        self._label_cache = LabelCache(root, cache_dir) if cache_dir else None
        self._class_weight_vector = self._resolve_class_weights(class_weights)
        self.set_epoch(0)

    def shard(self, num_shards, index):
        """Return a dataset over every `num_shards`-th id starting at `index`."""
        _check_positive_int("num_shards", num_shards)
        if not 0 <= index < num_shards:
            raise ValueError(f"index must lie in 0..{num_shards - 1}, got {index!r}")
        return CelebAMaskHQ(
            self.root, self.split, self.batch_size, self.image_size, self.target,
            self.class_weights, self.augment, self.shuffle, self.seed, self.cache_dir,
            ids=self.ids[index::num_shards], skip_bad_samples=self.skip_bad_samples,
            max_weight=self.max_weight, **self._pydataset_kwargs,
        )  # fmt: skip

    def set_epoch(self, epoch):
        """Set the epoch that seeds the order and augmentation (e.g. when resuming)."""
        self.epoch = epoch
        self._order = np.arange(len(self.ids))
        if self.shuffle:
            np.random.default_rng((self.seed, epoch)).shuffle(self._order)

    def on_epoch_end(self):
        self.set_epoch(self.epoch + 1)

    def __len__(self):
        return math.ceil(len(self.ids) / self.batch_size)

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(f"batch index {index} out of range 0..{len(self) - 1}")
        positions = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        samples = [self._load_readable_sample(position) for position in positions]
        # One float32 buffer filled in place: no intermediate uint8 batch copy.
        images = np.empty((len(samples), *samples[0][0].shape), np.float32)
        for row, (image, _) in enumerate(samples):
            images[row] = image
        labels = np.stack([label for _, label in samples])
        targets = self._targets(labels)
        if self.class_weights is None:
            return images, targets
        return images, targets, self._pixel_weights(labels)

    def load_sample(self, image_id):
        """Return one `(image, label)` pair as uint8 arrays (S, S, 3) and (S, S)."""
        image = load_image(self.root, image_id, self.image_size)
        label = self._label_cache.load(image_id) if self._label_cache else None
        if label is None:
            label = merge_masks(self.root, image_id)
        label = resize_label(label, self.image_size)
        if self.augment:
            rng = np.random.default_rng((self.seed, self.epoch, image_id))
            image, label = augment_sample(image, label, rng)
        return image, label

    def _load_readable_sample(self, position):
        # A bad sample is replaced by the next readable one in split order, so
        # the substitution is the same whatever worker loads it.
        for attempt in range(len(self.ids)):
            image_id = self.ids[(position + attempt) % len(self.ids)]
            try:
                return self.load_sample(image_id)
            except DatasetError as error:
                if not self.skip_bad_samples:
                    raise
                self._record_bad_sample(image_id, error)
        raise DatasetError(f"no readable sample left in split {self.split!r} of {self.root}")

    def _record_bad_sample(self, image_id, error):
        if image_id not in {bad_id for bad_id, _ in self.bad_samples}:
            logger.warning("skipping bad sample %d: %s", image_id, error)
            self.bad_samples.append((image_id, str(error)))

    def _targets(self, labels):
        if self.target == "onehot":
            return np.eye(NUM_CLASSES, dtype=np.float32)[labels]
        return labels.astype(np.int32)

    def _pixel_weights(self, labels):
        if self.class_weights == "per_image":
            return per_image_pixel_weights(labels, self.max_weight)
        return pixel_weights(labels, self._class_weight_vector)

    def _resolve_class_weights(self, class_weights):
        if class_weights is None or class_weights == "per_image":
            return None
        if isinstance(class_weights, str):
            if class_weights not in WEIGHT_SCHEMES:
                raise ValueError(
                    f"class_weights must be None, one of {WEIGHT_SCHEMES} or "
                    f"{NUM_CLASSES} floats, got {class_weights!r}"
                )
            counts = training_class_counts(self.root, self.cache_dir)
            return class_weights_from_counts(counts, class_weights, self.max_weight)
        return _check_weight_vector(class_weights)


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


# ---------------------------------------------------------------------------
# Dataset checks
# ---------------------------------------------------------------------------


def layout_problems(root):
    """Return problems with the dataset root's layout (missing folders or mapping file)."""
    root = Path(root)
    if not root.is_dir():
        return [f"dataset root {root} does not exist"]
    problems = []
    if not (root / MAPPING_FILE).is_file():
        problems.append(f"mapping file not found: {root / MAPPING_FILE}")
    if not (root / IMAGE_DIR).is_dir():
        problems.append(f"image folder not found: {root / IMAGE_DIR}")
    if not (root / MASK_DIR).is_dir():
        message = f"mask folder not found: {root / MASK_DIR}"
        if (root / MISSPELT_MASK_DIR).is_dir():
            message += f" (found the misspelt '{MISSPELT_MASK_DIR}': rename it to '{MASK_DIR}')"
        problems.append(message)
    return problems


def image_problems(root, image_id):
    """Fully decode one image; return problems (unreadable, truncated, wrong size)."""
    path = image_path(root, image_id)
    if not path.is_file():
        return [f"missing image {path}"]
    try:
        with Image.open(path) as image:
            _refuse_bombs(image, path)
            image.load()  # decodes everything, so truncated files fail here
            if image.size != (IMAGE_SIZE, IMAGE_SIZE):
                return [
                    f"image {path} is {image.size[0]}x{image.size[1]}, "
                    f"expected {IMAGE_SIZE}x{IMAGE_SIZE}"
                ]
    except UNREADABLE_IMAGE_ERRORS as error:
        return [f"unreadable image {path}: {error}"]
    return []


def mask_problems(root, image_id):
    """Read every part mask of one image; return problems (none, unreadable, wrong size)."""
    parts = existing_parts(root, image_id)
    if not parts:
        return [_no_parts_message(root, image_id)]
    problems = []
    for _, path, _ in parts:
        try:
            read_mask(path)
        except DatasetError as error:
            problems.append(str(error))
    return problems


def check_dataset(root, split="all", progress=True):
    """Scan a dataset and return every problem found, each naming its file.

    Args:
        root: str or Path. Dataset root in the release layout.
        split: str. Which official split to scan. Defaults to "all".
        progress: bool. Show a tqdm progress bar. Defaults to True.

    Returns:
        A list of problem strings (empty when the dataset is sound).
    """
    problems = layout_problems(root)
    if not (Path(root) / MAPPING_FILE).is_file():
        return problems
    try:
        image_ids = split_ids(root, split)
    except DatasetError as error:
        return problems + [str(error)]
    masks_present = (Path(root) / MASK_DIR).is_dir()
    for image_id in _progress(image_ids, progress, f"checking {split}"):
        problems += image_problems(root, image_id)
        if masks_present:
            problems += mask_problems(root, image_id)
    return problems


def validate_split(root, ids, max_listed=5):
    """Quickly check that images and masks of `ids` exist with the right sizes.

    Reads only file headers (no decoding) of each image and its first part
    mask, so it is cheap enough to run before every training. Use
    `check_dataset` for a full scan.

    Raises:
        DatasetError: one line listing the first `max_listed` problems and their count.
    """
    problems = layout_problems(root)
    for image_id in ids if not problems else ():
        problems += _header_problems(root, image_id)
    if problems:
        listed = "; ".join(problems[:max_listed])
        more = f"; ... and {len(problems) - max_listed} more" if len(problems) > max_listed else ""
        raise DatasetError(
            f"{len(problems)} problem(s) in {root}: {listed}{more} (run `python data_generator.py "
            f"check --data_root {root}` for a full scan)"
        )


def _header_problems(root, image_id):
    parts = existing_parts(root, image_id)
    if not parts:
        return [_no_parts_message(root, image_id)]
    expected = [(image_path(root, image_id), IMAGE_SIZE), (parts[0][1], MASK_SIZE)]
    problems = []
    for path, size in expected:
        try:
            with Image.open(path) as file:
                if file.size != (size, size):
                    problems.append(
                        f"{path} is {file.size[0]}x{file.size[1]}, expected {size}x{size}"
                    )
        except FileNotFoundError:
            problems.append(f"missing file {path}")
        except UNREADABLE_IMAGE_ERRORS as error:
            problems.append(f"unreadable file {path}: {error}")
    return problems


def _progress(items, enabled, description):
    if not enabled:
        return items
    from tqdm import tqdm  # only the CLI needs it

    return tqdm(items, desc=description, unit="image")


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message):
        # One line, exit status 2, no usage dump or traceback.
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _parse_args(argv):
    parser = _ArgumentParser(description="CelebAMask-HQ data tools.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_ArgumentParser)
    demo = commands.add_parser("make-demo", help="write a synthetic face set in the release layout")
    demo.add_argument("--out", required=True, help="output dataset root")
    demo.add_argument("--num", required=True, type=_positive_int, help="number of images")
    demo.add_argument("--seed", type=int, default=0, help="random seed")
    check = commands.add_parser("check", help="scan a dataset and list every problem")
    check.add_argument("--data_root", required=True, help="dataset root")
    check.add_argument("--split", default="all", choices=SPLITS, help="split to scan")
    return parser.parse_args(argv)


def _make_demo(args):
    from synthetic_faces import make_demo_dataset

    make_demo_dataset(args.out, args.num, seed=args.seed)
    counts = {split: len(split_ids(args.out, split)) for split in SPLITS[:3]}
    print(f"wrote {args.num} synthetic faces to {args.out} ({counts})")
    return 0


def _check(args):
    problems = check_dataset(args.data_root, args.split)
    for problem in problems:
        print(problem)
    print(f"{len(problems)} problem(s) found in {args.data_root} (split {args.split})")
    return 1 if problems else 0


def main(argv=None):
    args = _parse_args(argv)
    return _make_demo(args) if args.command == "make-demo" else _check(args)


if __name__ == "__main__":
    sys.exit(main())
