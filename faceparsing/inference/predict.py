"""From images to label maps: the one prediction path of evaluate, visualize and export.

Images go to the model as float32 RGB in [0, 255] at the model's input size;
logits are resized bilinearly to the size wanted (the label's, or a photo's)
before the argmax, so a label map is never interpolated.
"""

import numpy as np
from keras import ops

from faceparsing.classes import class_set_of
from faceparsing.data.layout import open_layout
from faceparsing.images import resize_bilinear

TTA_MODES = ("none", "flip")


def predict_logits(model, images, tta="none"):
    """Logits (B, S, S, C) of a uint8 or float batch; tta="flip" averages the mirrored pass
    (its left/right channels swapped by the model's class set)."""
    images = np.asarray(images, dtype=np.float32)
    logits = np.asarray(model.predict_on_batch(images), dtype=np.float32)
    if tta == "flip":
        mirrored = np.asarray(model.predict_on_batch(images[:, :, ::-1]), dtype=np.float32)
        # Mirror back, then swap left/right channels so "left eye" means the same again.
        permutation = class_set_of(model).flip_permutation
        logits = 0.5 * (logits + mirrored[:, :, ::-1][..., permutation])
    return logits


def resize_logits_to(logits, shape):
    """Bilinear resize of (B, h, w, C) logits to (B, *shape, C)."""
    if tuple(logits.shape[1:3]) == tuple(shape):
        return logits
    resized = ops.image.resize(logits, tuple(shape), interpolation="bilinear")
    return np.asarray(ops.convert_to_numpy(resized))


def predict_labels(model, images, label_shape, tta="none"):
    """uint8 label maps (B, *label_shape) of a batch of model-size images."""
    logits = resize_logits_to(predict_logits(model, images, tta), label_shape)
    return logits.argmax(-1).astype(np.uint8)


def predict_dataset_labels(model, root, image_ids, image_size, label_size, tta="none"):
    """Label maps (B, label_size, label_size) of dataset images, loaded as in training.

    `root` is a dataset root or a layout object (`faceparsing.data.layout`).
    """
    return predict_labels(
        model, load_images(root, image_ids, image_size), (label_size, label_size), tta
    )


def load_images(source, image_ids, image_size):
    """A (B, S, S, 3) uint8 batch of dataset images, resized as in training."""
    layout = open_layout(source)
    return np.stack([layout.load_image(image_id, image_size) for image_id in image_ids])


def labels_like(logits, labels):
    """Per image, the argmax of its logits resized to the shape of its label (any sizes)."""
    return [
        resize_logits_to(image_logits[None], label.shape)[0].argmax(-1).astype(np.uint8)
        for image_logits, label in zip(logits, labels, strict=True)
    ]


def letterbox(image, size):
    """Fit (H, W, 3) into a size x size canvas, keeping the aspect ratio.

    Returns the canvas and the box (top, left, height, width) the photo occupies.
    """
    height, width = image.shape[:2]
    scale = size / max(height, width)
    new_height, new_width = max(1, round(height * scale)), max(1, round(width * scale))
    resized = resize_bilinear(image, (new_height, new_width))
    canvas = np.zeros((size, size, 3), dtype=np.uint8)
    top, left = (size - new_height) // 2, (size - new_width) // 2
    canvas[top : top + new_height, left : left + new_width] = resized
    return canvas, (top, left, new_height, new_width)


def parse_photo(model, image, size, tta="none"):
    """Label map (H, W) of a photo of any size, at the photo's own resolution.

    The photo is letterboxed to `size`; the logits of the photo's box are
    resized back to (H, W).
    """
    canvas, (top, left, height, width) = letterbox(image, size)
    logits = predict_logits(model, canvas[None], tta)[:, top : top + height, left : left + width]
    return resize_logits_to(logits, image.shape[:2])[0].argmax(-1).astype(np.uint8)
