"""The Keras dataset: batches of CelebAMask-HQ images and targets for `model.fit`."""

import logging
import math
from pathlib import Path

import keras
import numpy as np

from faceparsing.classes import NUM_CLASSES
from faceparsing.data.augment import augment_sample
from faceparsing.data.class_weights import (
    WEIGHT_SCHEMES,
    check_weight_vector,
    class_weights_from_counts,
    per_image_pixel_weights,
    pixel_weights,
    training_class_counts,
)
from faceparsing.data.layout import split_ids
from faceparsing.data.samples import (
    TARGETS,
    LabelCache,
    encode_targets,
    load_image,
    load_label,
    resize_label,
)
from faceparsing.errors import ConfigError, DatasetError, record_batch_errors

logger = logging.getLogger(__name__)


class CelebAMaskHQ(keras.utils.PyDataset):
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
        root: str or Path. Dataset root in the release layout.
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
        **kwargs,
    ):
        super().__init__(**kwargs)
        _check_positive_int("batch_size", batch_size)
        _check_positive_int("image_size", image_size)
        if target not in TARGETS:
            raise ConfigError(f"target must be one of {TARGETS}, got {target!r}")
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
        self.drop_remainder = bool(drop_remainder)
        if self.drop_remainder and len(self.ids) < batch_size:
            raise DatasetError(
                f"split {split!r} of {root} has {len(self.ids)} images, fewer than one batch of "
                f"{batch_size}; lower batch_size"
            )
        self.bad_samples = []
        self._pydataset_kwargs = kwargs
        self._label_cache = LabelCache(root, cache_dir) if cache_dir else None
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
            self.root, self.split, self.batch_size, self.image_size, self.target,
            weights, self.augment, self.shuffle, self.seed, self.cache_dir,
            ids=self.ids[index::num_shards], skip_bad_samples=self.skip_bad_samples,
            max_weight=self.max_weight, drop_remainder=self.drop_remainder,
            **self._pydataset_kwargs,
        )  # fmt: skip

    def set_epoch(self, epoch):
        """Set the epoch that `dataset[index]` uses (e.g. when resuming)."""
        self.epoch = int(epoch)

    def order(self, epoch):
        """Positions in `ids` in the order of `epoch` (a permutation when shuffling)."""
        cached = self._order_cache  # one tuple read: safe with worker threads
        if cached is not None and cached[0] == epoch:
            return cached[1]
        order = np.arange(len(self.ids))
        if self.shuffle:
            np.random.default_rng((self.seed, int(epoch))).shuffle(order)
        self._order_cache = (epoch, order)
        return order

    def on_epoch_end(self):
        self.set_epoch(self.epoch + 1)

    def __len__(self):
        if self.drop_remainder:
            return len(self.ids) // self.batch_size
        return math.ceil(len(self.ids) / self.batch_size)

    @record_batch_errors  # Keras may read it through tf.data, which wraps errors
    def __getitem__(self, index):
        return self.batch(index, self.epoch)

    def batch(self, index, epoch):
        """Batch `index` of `epoch`: the same arrays whenever and wherever it is built."""
        if not 0 <= index < len(self):
            raise IndexError(f"batch index {index} out of range 0..{len(self) - 1}")
        positions = self.order(epoch)[index * self.batch_size : (index + 1) * self.batch_size]
        samples = [self._load_readable_sample(position, epoch) for position in positions]
        # Compact batches: a quarter of float32's bytes in host memory, between
        # threads and on the way to the device, where the model casts them.
        images = np.stack([image for image, _ in samples])
        labels = np.stack([label for _, label in samples])
        targets = encode_targets(labels, self.target)
        if self.class_weights is None:
            return images, targets
        return images, targets, self._pixel_weights(labels)

    def load_sample(self, image_id, epoch=None):
        """Return one `(image, label)` pair as uint8 arrays (S, S, 3) and (S, S).

        Augmented with the generator of (seed, epoch, image_id); `epoch`
        defaults to the current one.
        """
        image = load_image(self.root, image_id, self.image_size)
        label = resize_label(load_label(self.root, image_id, self._label_cache), self.image_size)
        if self.augment:
            epoch = self.epoch if epoch is None else int(epoch)
            rng = np.random.default_rng((self.seed, epoch, image_id))
            image, label = augment_sample(image, label, rng)
        return image, label

    def _load_readable_sample(self, position, epoch):
        # A bad sample is replaced by the next readable one in split order, so
        # the substitution is the same whatever worker loads it.
        for attempt in range(len(self.ids)):
            image_id = self.ids[(position + attempt) % len(self.ids)]
            try:
                return self.load_sample(image_id, epoch)
            except DatasetError as error:
                if not self.skip_bad_samples:
                    raise
                self._record_bad_sample(image_id, error)
        raise DatasetError(f"no readable sample left in split {self.split!r} of {self.root}")

    def _record_bad_sample(self, image_id, error):
        if image_id not in {bad_id for bad_id, _ in self.bad_samples}:
            logger.warning("skipping bad sample %d: %s", image_id, error)
            self.bad_samples.append((image_id, str(error)))

    def _pixel_weights(self, labels):
        if self.class_weights == "per_image":
            return per_image_pixel_weights(labels, self.max_weight)
        return pixel_weights(labels, self._class_weight_vector)

    def _resolve_class_weights(self, class_weights):
        if class_weights is None or class_weights == "per_image":
            return None
        if isinstance(class_weights, str):
            if class_weights not in WEIGHT_SCHEMES:
                raise ConfigError(
                    f"class_weights must be None, one of {WEIGHT_SCHEMES} or "
                    f"{NUM_CLASSES} floats, got {class_weights!r}"
                )
            counts = training_class_counts(self.root, self.ids, self.cache_dir)
            return class_weights_from_counts(counts, class_weights, self.max_weight)
        vector = check_weight_vector(class_weights)
        return vector if self.max_weight is None else np.minimum(vector, self.max_weight)


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
