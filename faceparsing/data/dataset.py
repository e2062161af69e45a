"""The Keras dataset: batches of CelebAMask-HQ images and targets for `model.fit`."""

import keras
import numpy as np

from faceparsing.classes import remap
from faceparsing.data.batches import SampleBatches
from faceparsing.data.class_weights import (
    WEIGHT_SCHEMES,
    check_weight_vector,
    class_weights_from_counts,
    training_class_counts,
)
from faceparsing.data.layout import open_layout
from faceparsing.data.samples import TARGETS, LabelCache
from faceparsing.errors import ConfigError, DatasetError, record_batch_errors


class CelebAMaskHQ(SampleBatches, keras.utils.PyDataset):
    """Batches of CelebAMask-HQ images and label maps for `model.fit`.

    Batches are `(x, y)`, or `(x, y, w)` when `class_weights` is set:
    x uint8 (B, S, S, 3) RGB in [0, 255] (the model casts and does its own
    preprocessing); y uint8 (B, S, S) ids for target="integer" or uint8
    (B, S, S, 19) for target="onehot"; w float32 (B, S, S) per-pixel class
    weights (see `class_weights`). The last batch may be smaller unless
    `drop_remainder` is set.

    Shuffling and augmentation are a pure function of (seed, epoch, batch
    index): each sample has its own generator seeded by (seed, epoch,
    image_id), so `batch(index, epoch)` gives the same arrays in any thread or
    process, in any order. `dataset[index]` uses the current `epoch`, which
    `on_epoch_end` advances (for a plain `fit` on this dataset); training runs
    feed `fit` through `faceparsing.data.stream.TrainingStream`, which numbers
    epochs itself.

    Args:
        root: str, Path or layout object. Dataset root in CelebAMask-HQ's
            release layout or LaPa's, or a packed folder (`data_generator.py
            pack`, recognised by its manifest); see `faceparsing.data.layout`.
        split: str. "train", "val", "test" or "all" (official split).
            Defaults to "train".
        batch_size: int. Defaults to 8.
        image_size: int. Side S of the square inputs. Defaults to 512.
        target: str. "integer" or "onehot". Defaults to "integer".
        class_weights: None, one of `WEIGHT_SCHEMES`, or 19 floats. Frequency
            schemes turn the pixel counts of this dataset's `ids` (computed
            once, cached in `cache_dir`) into one fixed weight per class,
            scaled so the average pixel weight over those ids is 1 and then
            clipped at `max_weight`; a pixel's weight is its class's weight,
            whatever its batch-mates. "per_image" weighs each image by its own
            counts. Defaults to None (no weights).
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
        max_weight: float or None. Upper bound of every pixel weight.
            Defaults to None.
        drop_remainder: bool. Leave out the last, smaller batch (training:
            every step has the same shape). Defaults to False.
        class_map: dict, str or None. Merges or drops the data's classes
            (`faceparsing.classes.remap`); `class_set` is the result.
            Defaults to None (the data's own classes).
        **kwargs: `workers`, `use_multiprocessing`, `max_queue_size` of
            `keras.utils.PyDataset`.

    Example:
    ```python
    train = CelebAMaskHQ("data/demo", "train", batch_size=8, image_size=128, augment=True)
    x, y = train[0]  # (8, 128, 128, 3) uint8, (8, 128, 128) uint8
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
        drop_remainder=False,
        class_map=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        _check_positive_int("batch_size", batch_size)
        _check_positive_int("image_size", image_size)
        if target not in TARGETS:
            raise ConfigError(f"target must be one of {TARGETS}, got {target!r}")
        self.layout = open_layout(root)
        self.root = self.layout.root
        self.split = split
        self.ids = list(self.layout.split_ids(split) if ids is None else ids)
        if not self.ids:
            raise DatasetError(f"split {split!r} of {root} has no images")
        self.batch_size = batch_size
        self.image_size = image_size
        self.class_map = class_map
        self.class_set, self._label_table = self.layout.class_set, None
        if class_map:
            self.class_set, self._label_table = remap(self.layout.class_set, class_map)
        self.num_classes = self.class_set.num_classes
        self.target = target
        self.class_weights = class_weights
        self.max_weight = max_weight
        self.augment = augment
        self.shuffle = shuffle
        self.seed = seed
        self.cache_dir = cache_dir
        self.skip_bad_samples = skip_bad_samples
        self.drop_remainder = bool(drop_remainder)
        if self.drop_remainder and len(self.ids) < batch_size:
            raise DatasetError(
                f"split {split!r} of {root} has {len(self.ids)} images, fewer than one batch of "
                f"{batch_size}; lower batch_size"
            )
        self.bad_samples = []
        self._pydataset_kwargs = kwargs
        if self.layout.kind == "packed":  # fail now, not in a worker, on a damaged shard
            self.layout.pack.check_ids(self.ids)
        # Only CelebAMask-HQ merges its labels (18 part files): a packed folder
        # or a label PNG is read as it is.
        merged_labels = cache_dir and self.layout.kind == "celebamask_hq"
        self._label_cache = LabelCache(self.root, cache_dir) if merged_labels else None
        self._class_weight_vector = self._resolve_class_weights(class_weights)
        self._order_cache = None
        self.set_epoch(0)

    def shard(self, num_shards, index):
        """Return a dataset over every `num_shards`-th id starting at `index`."""
        _check_positive_int("num_shards", num_shards)
        if not 0 <= index < num_shards:
            raise ConfigError(f"index must lie in 0..{num_shards - 1}, got {index!r}")
        # A shard keeps the whole dataset's class weights (counted over all its ids).
        weights = self.class_weights
        if self._class_weight_vector is not None:
            weights = self._class_weight_vector
        return CelebAMaskHQ(
            self.layout, self.split, self.batch_size, self.image_size, self.target,
            weights, self.augment, self.shuffle, self.seed, self.cache_dir,
            ids=self.ids[index::num_shards], skip_bad_samples=self.skip_bad_samples,
            max_weight=self.max_weight, drop_remainder=self.drop_remainder,
            class_map=self.class_map, **self._pydataset_kwargs,
        )  # fmt: skip

    def set_epoch(self, epoch):
        """Set the epoch that `dataset[index]` uses (e.g. when resuming)."""
        self.epoch = int(epoch)

    def on_epoch_end(self):
        self.set_epoch(self.epoch + 1)

    @record_batch_errors  # Keras may read it through tf.data, which wraps errors
    def __getitem__(self, index):
        return self.batch(index, self.epoch)

    def batch_maker(self):
        """A Keras-free copy that builds the same batches (for worker processes)."""
        return SampleBatches.from_state(self.state())

    def _resolve_class_weights(self, class_weights):
        if class_weights is None or class_weights == "per_image":
            return None
        if isinstance(class_weights, str):
            if class_weights not in WEIGHT_SCHEMES:
                raise ConfigError(
                    f"class_weights must be None, one of {WEIGHT_SCHEMES} or "
                    f"{self.num_classes} floats, got {class_weights!r}"
                )
            counts = training_class_counts(
                self.layout, self.ids, self.cache_dir, self._label_table, self.num_classes
            )
            return class_weights_from_counts(counts, class_weights, self.max_weight)
        vector = check_weight_vector(class_weights, self.num_classes)
        return vector if self.max_weight is None else np.minimum(vector, self.max_weight)


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
