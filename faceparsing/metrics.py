"""Face-parsing metrics as the literature reports them.

One confusion matrix over a whole split, unweighted, at label resolution;
from it: per-class IoU and F1 (pixels pooled over the split), mIoU over the 19
classes, mean F1 over the 18 foreground classes and pixel accuracy. Classes
absent from both ground truth and prediction are excluded from the means.
The same code backs training's validation metric (`SegmentationMeanIoU`).
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
    """Unweighted mean IoU from logits, for validation during training.

    Accepts integer targets (B, H, W) or one-hot targets (B, H, W, C) and logits
    (B, H, W, C). `sample_weight` does not weight the counts, on purpose: the
    literature's metrics are unweighted, and Keras would otherwise weight the
    confusion matrix by the class-balancing weights. It only marks padding:
    pixels of weight 0 are not counted (multi-host validation pads that way).
    Classes absent from both ground truth and prediction are left out of the
    mean (as `keras.metrics.MeanIoU`).

    Args:
        num_classes: int. Number of classes. Defaults to 19.
        name: str. Metric name; Keras logs it as `val_<name>`. Defaults to "miou".
    """

    def __init__(self, num_classes=NUM_CLASSES, name="miou", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_classes = num_classes
        self.confusion = self.add_variable(
            shape=(num_classes, num_classes), initializer="zeros", dtype="float32", name="confusion"
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        if len(y_true.shape) == len(y_pred.shape):
            y_true = ops.argmax(y_true, axis=-1)
        labels = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        predictions = ops.reshape(ops.cast(ops.argmax(y_pred, axis=-1), "int32"), (-1,))
        # A one-hot product rather than bincount: bincount needs concrete
        # values under JAX's jit, this has static shapes on every backend.
        truth = ops.one_hot(labels, self.num_classes, dtype="float32")
        if sample_weight is not None:  # unweighted by design; weight 0 marks padding
            counted = ops.reshape(ops.cast(sample_weight > 0, "float32"), (-1, 1))
            truth = truth * counted
        predicted = ops.one_hot(predictions, self.num_classes, dtype="float32")
        self.confusion.assign_add(ops.matmul(ops.transpose(truth), predicted))

    def result(self):
        true_positive = ops.diagonal(self.confusion)
        union = ops.sum(self.confusion, axis=0) + ops.sum(self.confusion, axis=1) - true_positive
        present = ops.cast(union > 0, "float32")
        iou = true_positive / ops.maximum(union, 1.0)
        return ops.sum(iou * present) / ops.maximum(ops.sum(present), 1.0)

    def reset_state(self):
        self.confusion.assign(ops.zeros(self.confusion.shape, dtype=self.confusion.dtype))

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}
