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
        counts: array-like of 19 non-negative numbers.
        scheme: str. One of `WEIGHT_SCHEMES`.
        max_weight: float or None. Upper bound on any weight (after scaling).

    Returns:
        A float32 array of 19 finite, positive weights.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.shape != (NUM_CLASSES,) or not np.all(np.isfinite(counts)) or counts.min() < 0:
        raise ConfigError(f"counts must be {NUM_CLASSES} non-negative numbers, got {counts!r}")
    if scheme not in WEIGHT_SCHEMES:
        raise ConfigError(f"scheme must be one of {WEIGHT_SCHEMES}, got {scheme!r}")
    if max_weight is not None and not max_weight > 0:
        raise ConfigError(f"max_weight must be positive or None, got {max_weight!r}")
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
    """Return float32 per-pixel weights for `labels`: each pixel gets its class's weight.

    Nothing is rescaled per batch, so a class weighs the same whatever its
    batch-mates, and a clipped vector's bound holds for every pixel.

    Args:
        labels: int array of any shape with ids in 0..18.
        class_weight_vector: 19 finite positive weights.
    """
    vector = check_weight_vector(class_weight_vector)
    return vector[np.asarray(labels)]


def per_image_pixel_weights(labels, max_weight=None):
    """Per-pixel weights where each image (first axis) uses its own class counts.

    Each image's weights average 1 over its pixels before clipping at `max_weight`.
    """
    return np.stack(
        [
            class_weights_from_counts(class_pixel_counts(label), "per_image", max_weight)[label]
            for label in labels
        ]
    ).astype(np.float32)


def check_weight_vector(class_weight_vector):
    vector = np.asarray(class_weight_vector, dtype=np.float32)
    if vector.shape != (NUM_CLASSES,) or not np.all(np.isfinite(vector)) or vector.min() <= 0:
        raise ConfigError(
            f"class weights must be {NUM_CLASSES} finite positive numbers, "
            f"got {class_weight_vector!r}"
        )
    return vector


_COUNTS_MEMORY = {}


def training_class_counts(root, ids=None, cache_dir=None):
    """Return the pixel count of each class over the labels of `ids` (512x512 labels).

    These are the counts the frequency schemes turn into weights, so they cover
    exactly the images a run trains on. Computed once per id list: stored in
    `cache_dir/class_counts_<key>.json` if given (the key hashes the dataset
    root and the ids), otherwise kept in memory for this process.

    Args:
        root: str or Path. Dataset root.
        ids: list of int or None. Defaults to the official training split.
        cache_dir: str, Path or None. Label and counts cache.
    """
    ids = [int(image_id) for image_id in (split_ids(root, "train") if ids is None else ids)]
    key = hashlib.sha1(json.dumps([str(Path(root).resolve()), ids]).encode()).hexdigest()
    if key in _COUNTS_MEMORY:
        return _COUNTS_MEMORY[key].copy()
    counts_path = Path(cache_dir) / f"class_counts_{key[:16]}.json" if cache_dir else None
    counts = _read_counts_file(counts_path, key) if counts_path else None
    if counts is None:
        label_cache = LabelCache(root, cache_dir) if cache_dir else None
        counts = np.zeros(NUM_CLASSES, dtype=np.int64)
        for image_id in ids:
            label = load_label(root, image_id, label_cache)
            counts += class_pixel_counts(label)
        if counts_path:
            atomic_write_text(counts_path, json.dumps({"key": key, "counts": counts.tolist()}))
    _COUNTS_MEMORY[key] = counts
    return counts.copy()


def _read_counts_file(path, key):
    try:
        content = json.loads(path.read_text())
        if content["key"] == key and len(content["counts"]) == NUM_CLASSES:
            return np.asarray(content["counts"], dtype=np.int64)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None
