"""Class weights against imbalance: per-class weights from pixel counts, per-pixel maps.

Small parts (eyeglasses, hat, earring, necklace) cover well under 1% of the
pixels; these schemes give their pixels more weight in the loss.
"""

import hashlib
import json
from pathlib import Path

import numpy as np

from faceparsing.classes import NUM_CLASSES
from faceparsing.data.layout import open_layout
from faceparsing.errors import ConfigError
from faceparsing.files import atomic_write_text

WEIGHT_SCHEMES = ("inverse_frequency", "median_frequency", "per_image", "enet")


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
        counts: array-like of one non-negative number per class (19 for CelebAMask-HQ).
        scheme: str. One of `WEIGHT_SCHEMES`.
        max_weight: float or None. Upper bound on any weight (after scaling).

    Returns:
        A float32 array of one finite, positive weight per class.
    """
    counts = np.asarray(counts, dtype=np.float64)
    valid = counts.ndim == 1 and counts.size >= 2
    if not valid or not np.all(np.isfinite(counts)) or counts.min() < 0:
        raise ConfigError(f"counts must be one non-negative number per class, got {counts!r}")
    num_classes = counts.size
    if scheme not in WEIGHT_SCHEMES:
        raise ConfigError(f"scheme must be one of {WEIGHT_SCHEMES}, got {scheme!r}")
    if max_weight is not None and not max_weight > 0:
        raise ConfigError(f"max_weight must be positive or None, got {max_weight!r}")
    total = counts.sum()
    if total == 0:
        return np.ones(num_classes, dtype=np.float32)
    frequency = counts / total
    present = frequency > 0
    weights = np.zeros(num_classes)
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
    """Return float32 per-pixel weights for `labels`: each pixel gets its class's weight.

    Nothing is rescaled per batch, so a class weighs the same whatever its
    batch-mates, and a clipped vector's bound holds for every pixel.

    Args:
        labels: int array of any shape with ids in 0..C-1.
        class_weight_vector: C finite positive weights.
    """
    vector = check_weight_vector(class_weight_vector, len(np.atleast_1d(class_weight_vector)))
    return vector[np.asarray(labels)]


def per_image_pixel_weights(labels, max_weight=None, num_classes=NUM_CLASSES):
    """Per-pixel weights where each image (first axis) uses its own class counts.

    Each image's weights average 1 over its pixels before clipping at `max_weight`.
    """
    return np.stack(
        [
            class_weights_from_counts(
                class_pixel_counts(label, num_classes), "per_image", max_weight
            )[label]
            for label in labels
        ]
    ).astype(np.float32)


def check_weight_vector(class_weight_vector, num_classes=NUM_CLASSES):
    vector = np.asarray(class_weight_vector, dtype=np.float32)
    if vector.shape != (num_classes,) or not np.all(np.isfinite(vector)) or vector.min() <= 0:
        raise ConfigError(
            f"class weights must be {num_classes} finite positive numbers, "
            f"got {class_weight_vector!r}"
        )
    return vector


_COUNTS_MEMORY = {}


def training_class_counts(root, ids=None, cache_dir=None, label_table=None, num_classes=None):
    """Return the pixel count of each class over the labels of `ids` (labels at their size).

    These are the counts the frequency schemes turn into weights, so they cover
    exactly the images a run trains on. Computed once per id list: stored in
    `cache_dir/class_counts_<key>.json` if given (the key hashes the dataset
    root and the ids), otherwise kept in memory for this process.

    Args:
        root: str, Path or a layout object (`faceparsing.data.layout`). The dataset.
        ids: list of int or None. Defaults to the official training split.
        cache_dir: str, Path or None. Label and counts cache.
        label_table: (256,) uint8 array or None. Remaps ids (`class_map`) before counting.
        num_classes: int or None. Classes counted. Defaults to the dataset's.
    """
    layout = open_layout(root, cache_dir=cache_dir)
    num_classes = num_classes or layout.class_set.num_classes
    ids = [int(image_id) for image_id in (layout.split_ids("train") if ids is None else ids)]
    names = [layout.sample_name(image_id) for image_id in ids]
    table = None if label_table is None else np.asarray(label_table).tolist()
    identity = [str(layout.root.resolve()), ids, names, table, num_classes]
    key = hashlib.sha1(json.dumps(identity).encode()).hexdigest()
    if key in _COUNTS_MEMORY:
        return _COUNTS_MEMORY[key].copy()
    counts_path = Path(cache_dir) / f"class_counts_{key[:16]}.json" if cache_dir else None
    counts = _read_counts_file(counts_path, key, num_classes) if counts_path else None
    if counts is None:
        counts = np.zeros(num_classes, dtype=np.int64)
        for image_id in ids:
            label = layout.load_label(image_id)
            if label_table is not None:
                label = label_table[label]
            counts += class_pixel_counts(label, num_classes)
        if counts_path:
            atomic_write_text(counts_path, json.dumps({"key": key, "counts": counts.tolist()}))
    _COUNTS_MEMORY[key] = counts
    return counts.copy()


def _read_counts_file(path, key, num_classes):
    try:
        content = json.loads(path.read_text())
        if content["key"] == key and len(content["counts"]) == num_classes:
            return np.asarray(content["counts"], dtype=np.int64)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None
