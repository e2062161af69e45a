"""Class weights against imbalance: per-class weights from pixel counts, per-pixel maps.

Small parts (eyeglasses, hat, earring, necklace) cover well under 1% of the
pixels; these schemes give their pixels more weight in the loss.
"""

import hashlib
import json
from pathlib import Path

import numpy as np

from faceparsing.classes import NUM_CLASSES
from faceparsing.data.layout import split_ids
from faceparsing.data.samples import LabelCache, load_label
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
    vector = check_weight_vector(class_weight_vector)
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


def check_weight_vector(class_weight_vector):
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
            label = load_label(root, image_id, label_cache)
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
