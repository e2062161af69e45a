"""The Keras dataset: batches of face images and label maps, which `model.fit` reads."""

import logging
import threading

import keras
import numpy as np

from faceparsing.classes import remap
from faceparsing.data.batches import TARGETS, BatchMaker, BatchOptions
from faceparsing.data.class_weights import (
    WEIGHT_SCHEMES,
    check_weight_vector,
    class_weights_from_counts,
    training_class_counts,
)
from faceparsing.data.layout import open_layout
from faceparsing.data.loader import Pool, Prefetcher
from faceparsing.errors import ConfigError, DatasetError, record_batch_errors

logger = logging.getLogger(__name__)


class CelebAMaskHQ(keras.utils.PyDataset):
    """Batches of face images and label maps for `model.fit`, from any layout.

    Batches are `(x, y)`, or `(x, y, w)` with `class_weights` or `pad`: x uint8 (B, S, S, 3)
    RGB in [0, 255] (the model does its own preprocessing); y uint8 (B, S, S) ids
    ("integer") or (B, S, S, C) one-hot; w float32 (B, S, S) pixel weights. A batch is a
    pure function of (seed, epoch, index) (`batches.BatchMaker`), so a resumed run reads
    what an uninterrupted one would. `dataset[i]` is batch i of `epoch`, which
    `on_epoch_end` advances; `FollowEpochs` keeps it equal to `fit`'s. With `workers`,
    the next batches of the epoch build while the model trains on this one (Keras'
    enqueuer stays off: read in order, `fit(..., shuffle=False)`); `close()` stops them.

    Args:
        root: str, Path or layout. CelebAMask-HQ's release, LaPa's layout or your own
            labelled folder, or a packed folder (see `faceparsing.data.layout`).
        split: str. "train", "val", "test" or "all" (the official split). Defaults to "train".
        batch_size: int. Images per batch (per process with `num_processes`). Defaults to 8.
        image_size: int. Side S of the square inputs. Defaults to 512.
        target: str. "integer" or "onehot". Defaults to "integer".
        class_weights: None, one of `WEIGHT_SCHEMES`, or one float per class. Frequency
            schemes turn the pixel counts of `ids` (computed once, cached in `cache_dir`)
            into one weight per class, scaled so that the average pixel weight is 1, then
            clipped at `max_weight`; "per_image" weighs each image by its own counts.
            Defaults to None.
        augment: bool. Random flip (with left/right swap), scale, crop/pad, rotation and
            colour jitter. Defaults to False.
        shuffle: bool. A new order every epoch. Defaults to True.
        seed: int. Seed of the order and the augmentation. Defaults to 0.
        cache_dir: str, Path or None. Where merged labels and class counts are cached.
            Defaults to None.
        ids: list of int or None. Overrides the split's ids.
        skip_bad_samples: bool. An unreadable sample is logged, recorded in `bad_samples`
            and replaced by the next readable one; otherwise `DatasetError`. Defaults to False.
        max_weight: float or None. Upper bound of every pixel weight. Defaults to None.
        drop_remainder: bool. Leave out the last, smaller batch. Defaults to False.
        class_map: dict, str or None. Merges or drops the data's classes
            (`faceparsing.classes.remap`); `class_set` is the result. Defaults to None.
        workers: int. Threads or processes building batches ahead; 0: each batch in the
            thread that asks. Defaults to 0.
        worker_type: str. "threads" or "processes". Defaults to "threads".
        steps_per_epoch: int or None. Batches per epoch, if not one pass: epochs then go
            on through the passes, with no sample skipped or repeated. Defaults to None.
        num_processes: int. Processes of a multi-host job; each loads its own slice
            of every global batch of `batch_size * num_processes`. Defaults to 1.
        process_id: int. This process's slice. Defaults to 0.
        pad: bool. Every batch full, padding of weight 0 (see `batches.BatchOptions`).
            Defaults to False.

    Example:
    ```python
    train = CelebAMaskHQ("data/demo", "train", batch_size=8, image_size=128, augment=True)
    x, y = train[0]  # (8, 128, 128, 3) uint8, (8, 128, 128) uint8
    ```
    """

    def __init__(
        self, root, split="train", batch_size=8, image_size=512, target="integer",
        class_weights=None, augment=False, shuffle=True, seed=0, cache_dir=None, ids=None,
        skip_bad_samples=False, max_weight=None, drop_remainder=False, class_map=None,
        workers=0, worker_type="threads", steps_per_epoch=None, num_processes=1, process_id=0,
        pad=False, **kwargs,
    ):  # fmt: skip
        if kwargs.get("use_multiprocessing"):
            raise ConfigError(
                "use_multiprocessing is not supported: set worker_type='processes' (spawned "
                "workers; forked ones can hang JAX and TensorFlow)"
            )
        super().__init__()
        for name, value in (("batch_size", batch_size), ("image_size", image_size),
                            ("num_processes", num_processes)):  # fmt: skip
            _check_positive_int(name, value)
        if target not in TARGETS:
            raise ConfigError(f"target must be one of {TARGETS}, got {target!r}")
        if not 0 <= process_id < num_processes:
            raise ConfigError(f"process_id must lie in 0..{num_processes - 1}, got {process_id!r}")
        self.layout = open_layout(root, cache_dir=cache_dir)
        self.root, self.split = self.layout.root, split
        self.cache_dir = cache_dir or self.layout.cache_dir
        self.ids = list(self.layout.split_ids(split) if ids is None else ids)
        if not self.ids:
            raise DatasetError(f"split {split!r} of {self.root} has no images")
        if self.layout.kind == "packed":  # fail now, not in a worker, on a damaged shard
            problems = self.layout.problems(self.ids)
            if problems:
                raise DatasetError(problems[0])
        self.class_set, label_table = self.layout.class_set, None
        if class_map:
            self.class_set, label_table = remap(self.layout.class_set, class_map)
        self.num_classes = self.class_set.num_classes
        self.class_weight_vector = self._resolve_class_weights(
            class_weights, max_weight, label_table
        )
        weights = "per_image" if class_weights == "per_image" else self.class_weight_vector
        self.options = BatchOptions(
            batch_size, image_size, target, augment, shuffle, seed, drop_remainder, pad,
            skip_bad_samples, weights, max_weight, label_table, self.class_set, num_processes,
            process_id,
        )  # fmt: skip
        self.maker = BatchMaker(self.layout, self.ids, self.options)
        if not len(self.maker):
            raise DatasetError(
                f"split {split!r} of {self.root} has {len(self.ids)} images, fewer than one batch of "
                f"{self.maker.global_batch_size}; lower batch_size"
            )
        self.steps_per_epoch = steps_per_epoch
        # Not Keras' `workers`, which would start its own enqueuer on top of these.
        self.num_workers, self.worker_type = int(workers), worker_type
        self.epoch = 0
        self.bad_samples = []
        self._prefetcher, self._last_read, self._recent, self._closed = None, None, {}, False
        self._lock = threading.Lock()

    batch_size = property(lambda self: self.options.batch_size)
    image_size = property(lambda self: self.options.image_size)
    skip_bad_samples = property(lambda self: self.options.skip_bad_samples)

    def __len__(self):
        return self.steps_per_epoch or len(self.maker)

    @property
    def num_batches(self):
        return len(self)

    def set_epoch(self, epoch):
        """Set the epoch that `dataset[index]` reads (e.g. when resuming)."""
        self.epoch = int(epoch)

    def on_epoch_end(self):
        self.set_epoch(self.epoch + 1)

    def order(self, epoch):
        """Positions in `ids` in the order of `epoch`."""
        return self.maker.order(epoch)

    def batch(self, index, epoch):
        """Batch `index` of pass `epoch` over the data, built in this thread."""
        return self._receive(self.maker.make(index, epoch))

    @record_batch_errors  # Keras may read it through tf.data, which wraps errors
    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(f"batch index {index} out of range 0..{len(self) - 1}")
        request = self._locate(self.epoch, index)
        if request in self._recent:  # Keras reads the first two batches twice
            return self._recent[request]
        if self.num_workers < 1:
            return self._remember(request, self.batch(*request))
        with self._lock:
            if self._prefetcher is None:
                if self._closed:  # tf.data's thread may still ask once fit has returned
                    raise RuntimeError(f"batch {index} asked after the dataset was closed")
                pool = Pool(self.maker, self.num_workers, self.worker_type)
                self._prefetcher = Prefetcher(pool, depth=2 * self.num_workers)
            # Read in order, the next batches of the epoch build ahead; read out of order
            # (Keras' first peek, a shuffled fit), nothing is built ahead.
            in_order = index == 0 or self._last_read == (self.epoch, index - 1)
            self._last_read = (self.epoch, index)
            ahead = range(index + 1, min(len(self), index + 1 + self._prefetcher.depth))
        upcoming = [self._locate(self.epoch, later) for later in ahead] if in_order else []
        return self._remember(request, self._receive(self._prefetcher.get(request, upcoming)))

    def _remember(self, request, batch):
        # `fit` reads batches 0 and 1 for their shapes before its epoch reads them again.
        self._recent = {**dict(list(self._recent.items())[-1:]), request: batch}
        return batch

    def _locate(self, epoch, index):
        """The (batch index, pass) over the data of batch `index` of epoch `epoch`: with
        `steps_per_epoch`, epochs run on through the passes."""
        return self.maker.locate(epoch * len(self) + index)

    def _receive(self, reply):
        batch, bad = reply
        with self._lock:
            known = {image_id for image_id, _ in self.bad_samples}
            for image_id, message in bad:
                if image_id not in known:
                    logger.warning("skipping bad sample %d: %s", image_id, message)
                    self.bad_samples.append((image_id, message))
                    known.add(image_id)
        return batch

    def close(self):
        """Stop the workers (batches built ahead are dropped); later reads raise."""
        with self._lock:
            self._closed = True
        if self._prefetcher is not None:
            self._prefetcher.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def _resolve_class_weights(self, class_weights, max_weight, label_table):
        if class_weights is None or class_weights == "per_image":
            return None
        if isinstance(class_weights, str):
            if class_weights not in WEIGHT_SCHEMES:
                raise ConfigError(
                    f"class_weights must be None, one of {WEIGHT_SCHEMES} or "
                    f"{self.num_classes} floats, got {class_weights!r}"
                )
            counts = training_class_counts(
                self.layout, self.ids, self.cache_dir, label_table, self.num_classes
            )
            return class_weights_from_counts(counts, class_weights, max_weight)
        vector = check_weight_vector(class_weights, self.num_classes)
        return vector if max_weight is None else np.minimum(vector, max_weight)


class FollowEpochs(keras.callbacks.Callback):
    """Keeps `dataset.epoch` equal to the epoch `fit` begins (counted from the run's
    start, `initial_epoch` included), however often Keras calls `on_epoch_end`."""

    def __init__(self, dataset):
        super().__init__()
        self.dataset = dataset

    def on_epoch_begin(self, epoch, logs=None):
        self.dataset.set_epoch(epoch)


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
