"""Face-parsing metrics as the literature reports them.

One confusion matrix over a whole split, unweighted, at label resolution;
from it: per-class IoU and F1 (pixels pooled over the split), mIoU over the 19
classes, mean F1 over the 18 foreground classes and pixel accuracy. Classes
absent from both ground truth and prediction are excluded from the means.
Training's `SegmentationMeanIoU` accumulates the same matrix, exactly, and
the run folder's `val_miou` is `scores_from_confusion` of it.
"""

import keras
import numpy as np
from keras import ops

from faceparsing.classes import CLASS_NAMES, NUM_CLASSES


def confusion_matrix(labels, predictions, num_classes=NUM_CLASSES):
    """Return the (C, C) int64 matrix with rows = ground truth, columns = prediction."""
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    predictions = np.asarray(predictions).reshape(-1).astype(np.int64)
    if labels.shape != predictions.shape:
        raise ValueError(
            f"labels and predictions differ in size: {labels.size} vs {predictions.size}"
        )
    for name, values in (("labels", labels), ("predictions", predictions)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(
                f"{name} must lie in 0..{num_classes - 1}, got {values.min()}..{values.max()}"
            )
    counts = np.bincount(labels * num_classes + predictions, minlength=num_classes**2)
    return counts.reshape(num_classes, num_classes)


def scores_from_confusion(confusion, class_names=CLASS_NAMES, background_index=0):
    """Return the report dict of per-class and mean scores from a confusion matrix.

    Args:
        confusion: array (C, C). Rows are ground truth, columns predictions.
        class_names: sequence of str. Names of the C classes.
        background_index: int. Class left out of `mean_f1`, as papers do.

    Returns:
        dict with `miou`, `mean_f1`, `pixel_accuracy`, `per_class`
        (`{name: {"iou", "f1", "support", "present"}}`) and `absent_classes`.
        A class absent from ground truth and prediction has `iou`/`f1` None.
    """
    confusion = np.asarray(confusion, dtype=np.float64)
    if len(class_names) != confusion.shape[0]:
        raise ValueError(f"{len(class_names)} class names for a {confusion.shape[0]}-class matrix")
    true_positive = np.diag(confusion)
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    union = support + predicted - true_positive
    present = union > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(present, true_positive / union, np.nan)
        f1 = np.where(present, 2 * true_positive / (support + predicted), np.nan)
    foreground = present.copy()
    foreground[background_index] = False
    total = confusion.sum()
    per_class = {
        name: {
            "iou": None if not present[index] else float(iou[index]),
            "f1": None if not present[index] else float(f1[index]),
            "support": int(support[index]),
            "present": bool(present[index]),
        }
        for index, name in enumerate(class_names)
    }
    return {
        "miou": float(np.mean(iou[present])) if present.any() else float("nan"),
        "mean_f1": float(np.mean(f1[foreground])) if foreground.any() else float("nan"),
        "pixel_accuracy": float(true_positive.sum() / total) if total else float("nan"),
        "per_class": per_class,
        "absent_classes": [name for index, name in enumerate(class_names) if not present[index]],
    }


@keras.saving.register_keras_serializable(package="faceparsing")
class SegmentationMeanIoU(keras.metrics.Metric):
    """Unweighted mean IoU from logits, for training and validation in `fit`.

    Accumulates the same confusion matrix as `confusion_matrix` (rows ground
    truth, columns argmax of the logits) in exact integer counts: each step
    adds a `segment_sum` of `label * C + prediction` (static shapes, so XLA and
    JAX's jit accept it), and counts are kept as `high * 2**30 + low` in two
    int32 matrices, exact far past 2**31 pixels per cell. `confusion_matrix()`
    returns them as int64; the run folder's `val_miou` is the `miou` that
    `scores_from_confusion`, the function `evaluate.py` uses, gives for that
    matrix. `result()` (what the progress bar
    shows) computes the same formula in float32: classes absent from both
    ground truth and prediction are left out, NaN when nothing was counted.

    Accepts integer targets (B, H, W) or one-hot targets (B, H, W, C) and logits
    (B, H, W, C). `sample_weight` does not weight the counts, on purpose: the
    literature's metrics are unweighted, and Keras would otherwise weight the
    confusion matrix by the class-balancing weights. It only marks padding:
    pixels of weight 0 are not counted (multi-host validation pads that way).

    Args:
        num_classes: int. Number of classes. Defaults to 19.
        name: str. Metric name; Keras logs it as `val_<name>`. Defaults to "miou".
    """

    CARRY = 2**30  # `low` never holds more than this before a step's counts are added

    def __init__(self, num_classes=NUM_CLASSES, name="miou", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_classes = num_classes
        shape = (num_classes, num_classes)
        self.low = self.add_variable(shape=shape, initializer="zeros", dtype="int32", name="low")
        self.high = self.add_variable(shape=shape, initializer="zeros", dtype="int32", name="high")

    def update_state(self, y_true, y_pred, sample_weight=None):
        if len(y_true.shape) == len(y_pred.shape):
            y_true = ops.argmax(y_true, axis=-1)
        labels = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        predictions = ops.reshape(ops.cast(ops.argmax(y_pred, axis=-1), "int32"), (-1,))
        cells = labels * self.num_classes + predictions
        counted = ops.ones_like(cells)
        if sample_weight is not None:  # unweighted by design; weight 0 marks padding
            weight = ops.reshape(ops.convert_to_tensor(sample_weight), (-1,))
            counted = ops.cast(weight > 0, "int32")
        counts = ops.segment_sum(counted, cells, num_segments=self.num_classes**2)
        low = self.low + ops.reshape(counts, (self.num_classes, self.num_classes))
        carry = ops.floor_divide(low, self.CARRY)
        self.low.assign(low - carry * self.CARRY)
        self.high.assign(self.high + carry)

    def confusion_matrix(self):
        """The exact (C, C) int64 confusion matrix accumulated so far."""
        high = np.asarray(ops.convert_to_numpy(self.high), dtype=np.int64)
        low = np.asarray(ops.convert_to_numpy(self.low), dtype=np.int64)
        return high * self.CARRY + low

    def result(self):
        confusion = ops.cast(self.high, "float32") * float(self.CARRY) + ops.cast(
            self.low, "float32"
        )
        true_positive = ops.diagonal(confusion)
        union = ops.sum(confusion, axis=0) + ops.sum(confusion, axis=1) - true_positive
        present = ops.cast(union > 0, "float32")
        iou = true_positive / ops.maximum(union, 1.0)
        count = ops.sum(present)
        return ops.where(count > 0, ops.sum(iou * present) / ops.maximum(count, 1.0), np.nan)

    def reset_state(self):
        for variable in (self.low, self.high):
            variable.assign(ops.zeros(variable.shape, dtype=variable.dtype))

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}
