"""How a batch is made: the sample and batch logic of `CelebAMaskHQ`, without Keras.

`SampleBatches` holds everything a batch depends on (ids, sizes, seed, class
weights, the layout or the label cache), so a worker process can build the
same batches as the dataset it was copied from (`CelebAMaskHQ.batch_maker`)
without importing Keras, TensorFlow or JAX.
"""

import logging
import math

import numpy as np

from faceparsing.data.augment import augment_sample
from faceparsing.data.class_weights import per_image_pixel_weights, pixel_weights
from faceparsing.data.samples import encode_targets, load_image, load_label, resize_label
from faceparsing.errors import DatasetError

logger = logging.getLogger(__name__)

# What a batch depends on: the attributes a worker process's copy carries.
STATE_KEYS = (
    "root", "split", "ids", "batch_size", "image_size", "target", "class_weights",
    "max_weight", "augment", "shuffle", "seed", "skip_bad_samples", "drop_remainder",
    "epoch", "bad_samples", "_label_cache", "_class_weight_vector", "layout", "class_set",
    "num_classes", "_label_table",
)  # fmt: skip


class SampleBatches:
    """Batches as a pure function of (seed, epoch, batch index); see `CelebAMaskHQ`.

    A bare instance (`from_state`) is what a worker process runs: called with
    `(index, epoch)` it returns the batch and the bad samples it met.
    """

    @classmethod
    def from_state(cls, state):
        maker = cls.__new__(cls)
        maker.__dict__.update(state)
        maker._order_cache = None
        return maker

    @property
    def is_packed(self):
        """True when the samples come from a packed folder."""
        return self.layout.kind == "packed"

    def state(self):
        """The attributes a copy needs (see `STATE_KEYS`); picklable."""
        return {key: getattr(self, key) for key in STATE_KEYS}

    def __call__(self, request):
        index, epoch = request
        known = len(self.bad_samples)
        batch = self.batch(index, epoch)
        return batch, self.bad_samples[known:]

    def receive(self, reply):
        """The batch of a worker's `reply`, recording the bad samples it met here."""
        batch, bad_samples = reply
        for image_id, message in bad_samples:
            self._record_bad_sample(image_id, message)
        return batch

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

    def __len__(self):
        if self.drop_remainder:
            return len(self.ids) // self.batch_size
        return math.ceil(len(self.ids) / self.batch_size)

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
        targets = encode_targets(labels, self.target, self.num_classes)
        if self.class_weights is None:
            return images, targets
        return images, targets, self._pixel_weights(labels)

    def load_sample(self, image_id, epoch=None):
        """Return one `(image, label)` pair as uint8 arrays (S, S, 3) and (S, S).

        Augmented with the generator of (seed, epoch, image_id); `epoch`
        defaults to the current one.
        """
        if self.is_packed:  # one record, two small decodes (the fast one when augmenting)
            image, label = self.layout.load_sample(image_id, self.image_size, self.augment)
        else:
            image = load_image(self.layout, image_id, self.image_size)
            label = resize_label(
                load_label(self.layout, image_id, self._label_cache), self.image_size
            )
        if self._label_table is not None:  # class_map: nearest resizing and remapping commute
            label = self._label_table[label]
        if self.augment:
            epoch = self.epoch if epoch is None else int(epoch)
            rng = np.random.default_rng((self.seed, epoch, image_id))
            image, label = augment_sample(image, label, rng, self.class_set)
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
            return per_image_pixel_weights(labels, self.max_weight, self.num_classes)
        return pixel_weights(labels, self._class_weight_vector)
