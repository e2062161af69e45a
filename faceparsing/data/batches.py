"""How a batch is made, without Keras: `BatchOptions` and `BatchMaker`.

A batch is a pure function of (seed, epoch, batch index): the epoch's order is a
permutation seeded by (seed, epoch), each sample's augmentation draws from a generator
seeded by (seed, epoch, image id), and a bad sample is replaced by the next readable
one in `ids`. So any thread or process builds the same arrays, in any order, and a
resumed run gets the batches an uninterrupted one would. A maker is picklable: a worker
process receives it once.
"""

import dataclasses
import math

import numpy as np

from faceparsing.classes import CELEBAMASK_HQ, ClassSet
from faceparsing.data.augment import augment_sample
from faceparsing.data.class_weights import per_image_pixel_weights, pixel_weights
from faceparsing.errors import DatasetError

# Target encodings of a label map: integer ids (sparse cross-entropy) or one-hot.
TARGETS = ("integer", "onehot")
# Batch arrays start at a multiple of this many bytes: TensorFlow takes an array aligned so
# without an element-by-element copy, which cost more than building the batch
# (docs/performance.md, "What fit receives").
ALIGNMENT = 64


@dataclasses.dataclass(frozen=True, eq=False)
class BatchOptions:
    """Everything a batch depends on besides the layout and the ids: the arguments of
    `CelebAMaskHQ` of the same names, resolved (`class_weights`: None, "per_image" or
    one float32 weight per class; `label_table`: None or the (256,) uint8 id map of
    `class_map`; `class_set`: the classes after it). `pad` fills every batch up to
    `batch_size` with copies of weight 0, the real images weighted so that Keras' mean
    over batches is the mean over images (validation over several devices or processes).
    """

    batch_size: int = 8
    image_size: int = 512
    target: str = "integer"
    augment: bool = False
    shuffle: bool = True
    seed: int = 0
    drop_remainder: bool = False
    pad: bool = False
    skip_bad_samples: bool = False
    class_weights: object = None
    max_weight: float = None
    label_table: np.ndarray = None
    class_set: ClassSet = CELEBAMASK_HQ
    num_processes: int = 1
    process_id: int = 0


class BatchMaker:
    """The batches of `ids` of `layout` under `options`: `batch(index, epoch)`.

    Called as `maker((index, epoch))` (what a worker runs) it returns the batch and
    the bad samples it skipped, `[(image id, reason)]`, for the caller to record.
    """

    def __init__(self, layout, ids, options):
        self.layout = layout
        self.ids = list(ids)
        self.options = options
        self._order = None  # (epoch, permutation) of the last epoch asked

    def __call__(self, request):
        return self.make(*request)

    @property
    def global_batch_size(self):
        return self.options.batch_size * self.options.num_processes

    def __len__(self):
        if self.options.drop_remainder and not self.options.pad:
            return len(self.ids) // self.global_batch_size
        return math.ceil(len(self.ids) / self.global_batch_size)

    def locate(self, step):
        """`(index, epoch)` of the `step`-th batch of consecutive passes over the data
        (0-based; a run whose epochs are not one pass each, `steps_per_epoch`)."""
        data_pass, index = divmod(step, len(self))
        return index, data_pass

    def order(self, epoch):
        """Positions in `ids` in the order of `epoch` (a permutation when shuffling)."""
        cached = self._order  # one read: safe with worker threads
        if cached is not None and cached[0] == epoch:
            return cached[1]
        order = np.arange(len(self.ids))
        if self.options.shuffle:
            np.random.default_rng((self.options.seed, int(epoch))).shuffle(order)
        self._order = (epoch, order)
        return order

    def make(self, index, epoch):
        """`(batch, bad samples)`: batch `index` of `epoch`, the same arrays whenever and
        wherever it is built. A batch is `(x, y)`, or `(x, y, w)` with class weights or
        padding (see `faceparsing.data.dataset.CelebAMaskHQ`)."""
        if not 0 <= index < len(self):
            raise IndexError(f"batch index {index} out of range 0..{len(self) - 1}")
        options, bad = self.options, []
        start = index * self.global_batch_size + options.process_id * options.batch_size
        positions = self.order(epoch)[start : start + options.batch_size]
        samples = [self._readable_sample(position, epoch, bad) for position in positions]
        real = len(samples)
        if options.pad and real < options.batch_size:
            filler = samples[0] if samples else self._readable_sample(0, epoch, bad)
            samples += [filler] * (options.batch_size - real)
        # Compact batches: a quarter of float32's bytes in memory and on the way to the
        # device, where the model casts them.
        images = np.stack([image for image, _ in samples], out=aligned_empty(
            (len(samples), *samples[0][0].shape), np.uint8))  # fmt: skip
        labels = np.stack([label for _, label in samples], out=aligned_empty(
            (len(samples), *samples[0][1].shape), np.uint8))  # fmt: skip
        batch = (images, encode_targets(labels, options.target, options.class_set.num_classes))
        weights = self._pixel_weights(labels)
        if options.pad:
            image_weight = len(self) * self.global_batch_size / len(self.ids)
            per_image = np.where(np.arange(options.batch_size) < real, image_weight, 0.0)
            weights = np.ones(labels.shape, np.float32) if weights is None else weights
            weights = (weights * per_image[:, None, None]).astype(np.float32)
        batch = batch if weights is None else (*batch, weights)
        return tuple(aligned(array) for array in batch), bad

    def sample(self, image_id, epoch):
        """`(image, label)` of one id as uint8 arrays (S, S, 3) and (S, S), augmented with
        the generator of (seed, epoch, image_id)."""
        options = self.options
        image, label = self.layout.load_sample(image_id, options.image_size, options.augment)
        if options.label_table is not None:  # nearest resizing and remapping commute
            label = options.label_table[label]
        if options.augment:
            rng = np.random.default_rng((options.seed, int(epoch), image_id))
            image, label = augment_sample(image, label, rng, options.class_set)
        return image, label

    def _readable_sample(self, position, epoch, bad):
        # A bad sample is replaced by the next readable one in `ids` order, so the
        # substitution is the same whatever worker loads it.
        for attempt in range(len(self.ids)):
            image_id = self.ids[(position + attempt) % len(self.ids)]
            try:
                return self.sample(image_id, epoch)
            except DatasetError as error:
                if not self.options.skip_bad_samples:
                    raise
                bad.append((image_id, str(error)))
        raise DatasetError(
            f"no readable sample left among the {len(self.ids)} of {self.layout.root}"
        )

    def _pixel_weights(self, labels):
        weights = self.options.class_weights
        if weights is None:
            return None
        if isinstance(weights, str):  # "per_image"
            return per_image_pixel_weights(
                labels, self.options.max_weight, self.options.class_set.num_classes
            )
        return pixel_weights(labels, weights)


def encode_targets(labels, target, num_classes):
    """Integer labels (B, H, W) as the model's targets: uint8 ids or uint8 one-hot
    (Keras' losses and the metric cast them)."""
    if target == "onehot":
        return np.eye(num_classes, dtype=np.uint8)[labels]
    return labels.astype(np.uint8, copy=False)


def aligned_empty(shape, dtype):
    """An uninitialised array whose data starts at a multiple of `ALIGNMENT` bytes."""
    size = math.prod(shape) * np.dtype(dtype).itemsize
    buffer = np.empty(size + ALIGNMENT, np.uint8)
    start = -buffer.ctypes.data % ALIGNMENT
    return buffer[start : start + size].view(dtype).reshape(shape)


def aligned(array):
    """`array`, or an aligned copy of it if its data does not start at `ALIGNMENT` bytes."""
    if array.ctypes.data % ALIGNMENT == 0:
        return array
    copy = aligned_empty(array.shape, array.dtype)
    copy[...] = array
    return copy
