"""Segmentation losses from logits, backend-agnostic, all accepting per-pixel weights.

Every loss returns a per-pixel loss map (B, H, W) so that Keras multiplies it by
the generator's `sample_weight` (B, H, W) before reducing. Targets may be
integer (B, H, W) or one-hot (B, H, W, C).
"""

import math

import keras
from keras import ops

from faceparsing.classes import NUM_CLASSES
from faceparsing.config import LOSSES
from faceparsing.errors import ConfigError


def _one_hot_targets(y_true, num_classes):
    if len(y_true.shape) == 4:
        return ops.cast(y_true, "float32")
    return ops.one_hot(ops.cast(y_true, "int32"), num_classes, dtype="float32")


def _pixel_cross_entropy(targets, logits):
    """Per-pixel cross-entropy (B, H, W) of float32 `logits` against one-hot `targets`."""
    return -ops.sum(targets * ops.log_softmax(logits, axis=-1), axis=-1)


@keras.saving.register_keras_serializable(package="faceparsing")
class FocalLoss(keras.losses.Loss):
    """Focal loss (Lin et al., ICCV 2017) for multi-class logits.

    `(1 - p_t) ** gamma * CE`: well-classified pixels (p_t near 1) contribute
    little, so rare, hard pixels weigh more. gamma=0 is plain cross-entropy.

    Args:
        gamma: float. Focusing parameter. Defaults to 2.0.
        num_classes: int. Number of classes. Defaults to 19.
    """

    def __init__(self, gamma=2.0, num_classes=NUM_CLASSES, name="focal_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        if gamma < 0:
            raise ConfigError(f"gamma must be >= 0, got {gamma}")
        self.gamma = gamma
        self.num_classes = num_classes

    def call(self, y_true, y_pred):
        targets = _one_hot_targets(y_true, self.num_classes)
        cross_entropy = _pixel_cross_entropy(targets, ops.cast(y_pred, "float32"))
        p_true = ops.exp(-cross_entropy)
        return ops.power(1.0 - p_true, self.gamma) * cross_entropy

    def get_config(self):
        return {**super().get_config(), "gamma": self.gamma, "num_classes": self.num_classes}


@keras.saving.register_keras_serializable(package="faceparsing")
class DiceCrossEntropyLoss(keras.losses.Loss):
    """Cross-entropy plus soft Dice loss (Milletari et al. 2016), from logits.

    The Dice term is computed per image over the classes present in that
    image's ground truth or prediction and added to every pixel's
    cross-entropy, so its share of the loss is the same at any image size.
    With per-pixel weights, each pixel's contribution to the Dice sums is
    weighted too (the weights are passed through `sample_weight` and reach
    the Dice term because Keras multiplies the returned map by them). The
    weights are not renormalised per batch: frequency schemes scale the class
    weights once so that the average pixel weight over the training split is
    1, so the term keeps its scale on average, not in every batch.

    Args:
        dice_weight: float. Weight of the Dice term. Defaults to 1.0.
        smooth: float. Laplace smoothing of the Dice ratio. Defaults to 1.0.
        num_classes: int. Number of classes. Defaults to 19.
    """

    def __init__(
        self, dice_weight=1.0, smooth=1.0, num_classes=NUM_CLASSES, name="dice_ce_loss", **kwargs
    ):
        super().__init__(name=name, **kwargs)
        self.dice_weight = dice_weight
        self.smooth = smooth
        self.num_classes = num_classes

    def call(self, y_true, y_pred):
        targets = _one_hot_targets(y_true, self.num_classes)
        logits = ops.cast(y_pred, "float32")
        cross_entropy = _pixel_cross_entropy(targets, logits)
        probs = ops.softmax(logits, axis=-1)
        intersection = ops.sum(probs * targets, axis=(1, 2))
        totals = ops.sum(probs, axis=(1, 2)) + ops.sum(targets, axis=(1, 2))
        dice = (2.0 * intersection + self.smooth) / (totals + self.smooth)
        present = ops.cast(ops.sum(targets, axis=(1, 2)) > 0, "float32")
        dice_loss = ops.sum((1.0 - dice) * present, axis=-1) / ops.maximum(
            ops.sum(present, axis=-1), 1.0
        )
        return cross_entropy + self.dice_weight * dice_loss[:, None, None]

    def get_config(self):
        return {
            **super().get_config(),
            "dice_weight": self.dice_weight,
            "smooth": self.smooth,
            "num_classes": self.num_classes,
        }


@keras.saving.register_keras_serializable(package="faceparsing")
class LovaszSoftmaxLoss(keras.losses.Loss):
    """Lovasz-softmax loss (Berman et al., CVPR 2018), from logits.

    A convex surrogate of 1 - IoU: per image and per class present in the
    ground truth, the pixel errors |y - p| are sorted in decreasing order and
    dotted with the gradient of the Lovasz extension of the Jaccard loss. The
    per-image value (mean over present classes) is returned at every pixel, so
    per-pixel weights scale each image's term by its mean weight.

    Args:
        num_classes: int. Number of classes. Defaults to 19.
    """

    def __init__(self, num_classes=NUM_CLASSES, name="lovasz_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_classes = num_classes

    def call(self, y_true, y_pred):
        targets = _one_hot_targets(y_true, self.num_classes)
        probs = ops.softmax(ops.cast(y_pred, "float32"), axis=-1)
        batch, height, width = ops.shape(probs)[0], ops.shape(probs)[1], ops.shape(probs)[2]
        num_pixels = probs.shape[1] * probs.shape[2]
        # (B, C, N): sort every class's errors along the pixel axis.
        targets_flat = ops.transpose(ops.reshape(targets, (batch, -1, self.num_classes)), (0, 2, 1))
        probs_flat = ops.transpose(ops.reshape(probs, (batch, -1, self.num_classes)), (0, 2, 1))
        sorted_errors, order = ops.top_k(ops.abs(targets_flat - probs_flat), k=num_pixels)
        sorted_targets = ops.take_along_axis(targets_flat, order, axis=-1)
        ground_truth_total = ops.sum(sorted_targets, axis=-1, keepdims=True)
        intersection = ground_truth_total - ops.cumsum(sorted_targets, axis=-1)
        union = ground_truth_total + ops.cumsum(1.0 - sorted_targets, axis=-1)
        jaccard = 1.0 - intersection / union
        lovasz_gradient = ops.concatenate(
            [jaccard[..., :1], jaccard[..., 1:] - jaccard[..., :-1]], axis=-1
        )
        per_class = ops.sum(sorted_errors * ops.stop_gradient(lovasz_gradient), axis=-1)
        present = ops.cast(ops.squeeze(ground_truth_total, -1) > 0, "float32")
        per_image = ops.sum(per_class * present, axis=-1) / ops.maximum(
            ops.sum(present, axis=-1), 1.0
        )
        return ops.broadcast_to(per_image[:, None, None], (batch, height, width))

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}


@keras.saving.register_keras_serializable(package="faceparsing")
class OhemCrossEntropyLoss(keras.losses.Loss):
    """Online hard example mining cross-entropy (Shrivastava et al., CVPR 2016), from logits.

    Per image, only the `keep_fraction` of pixels with the largest cross-entropy
    contribute; the others get zero loss. The kept pixels' losses are divided by
    `keep_fraction`, so the image's mean stays the mean over the kept pixels and
    the learning rate means what it means for plain cross-entropy. Easy pixels
    (skin, hair, background once learned) stop diluting the gradient of the
    small, hard parts, without any class-frequency weights. Per-pixel weights
    (`sample_weight`) multiply the returned map as for every loss here.

    Args:
        keep_fraction: float. Share of each image's pixels kept, in (0, 1].
            Defaults to 0.25.
        num_classes: int. Number of classes. Defaults to 19.
    """

    def __init__(self, keep_fraction=0.25, num_classes=NUM_CLASSES, name="ohem_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        if not 0.0 < keep_fraction <= 1.0:
            raise ConfigError(f"keep_fraction must lie in (0, 1], got {keep_fraction}")
        self.keep_fraction = keep_fraction
        self.num_classes = num_classes

    def call(self, y_true, y_pred):
        targets = _one_hot_targets(y_true, self.num_classes)
        cross_entropy = _pixel_cross_entropy(targets, ops.cast(y_pred, "float32"))
        num_pixels = cross_entropy.shape[1] * cross_entropy.shape[2]
        num_kept = max(1, int(math.ceil(self.keep_fraction * num_pixels)))
        flat = ops.reshape(ops.stop_gradient(cross_entropy), (-1, num_pixels))
        threshold = ops.top_k(flat, k=num_kept)[0][:, -1]  # the k-th largest loss per image
        kept = ops.cast(cross_entropy >= threshold[:, None, None], "float32")
        return cross_entropy * kept / self.keep_fraction

    def get_config(self):
        return {
            **super().get_config(),
            "keep_fraction": self.keep_fraction,
            "num_classes": self.num_classes,
        }


def build_loss(name, target="integer", focal_gamma=2.0, num_classes=NUM_CLASSES):
    """Return the Keras loss for config key `loss` and target encoding `target`."""
    if name == "cross_entropy":
        if target == "onehot":
            return keras.losses.CategoricalCrossentropy(from_logits=True)
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    if name == "focal":
        return FocalLoss(gamma=focal_gamma, num_classes=num_classes)
    if name == "dice_ce":
        return DiceCrossEntropyLoss(num_classes=num_classes)
    if name == "lovasz":
        return LovaszSoftmaxLoss(num_classes=num_classes)
    if name == "ohem":
        return OhemCrossEntropyLoss(num_classes=num_classes)
    raise ConfigError(f"loss must be one of {'|'.join(LOSSES)}, got {name!r}")
