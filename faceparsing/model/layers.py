"""The model's own small layers: ImageNet preprocessing and resizing to a reference."""

import keras
from keras import layers, ops

from faceparsing import KERAS_PACKAGE

# BGR channel means of the caffe-style ImageNet preprocessing (ResNet).
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package=KERAS_PACKAGE)
class ImagePreprocessing(layers.Layer):
    """Maps RGB images in [0, 255] to what an ImageNet backbone expects.

    Args:
        mode: str. `"caffe"`: RGB -> BGR and subtract the ImageNet channel
            means (as `keras.applications.resnet.preprocess_input`); `"tf"`:
            scale to [-1, 1] (MobileNetV2, Xception).
    """

    MODES = ("caffe", "tf")

    def __init__(self, mode, **kwargs):
        super().__init__(**kwargs)
        if mode not in self.MODES:
            raise ValueError(f"`mode` must be one of {self.MODES}. Received: mode={mode!r}")
        self.mode = mode

    def call(self, images):
        images = ops.cast(images, self.compute_dtype)
        if self.mode == "tf":
            return images / 127.5 - 1.0
        mean = ops.convert_to_tensor(CAFFE_BGR_MEAN, dtype=self.compute_dtype)
        return ops.flip(images, axis=-1) - mean

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


def _resize_to_graph_time_size(images, size, interpolation):
    """What `ops.image.resize` runs on TensorFlow, for a size known only when the graph runs.

    `ops.image.resize` checks `height > 0` in Python, which fails for a height
    that is a tensor: a graph traced for any input size (as the ONNX export
    traces it) has one.
    """
    import tensorflow as tf

    return tf.image.resize(images, tf.stack(size), method=interpolation)


@keras.saving.register_keras_serializable(package=KERAS_PACKAGE)
class ResizeLike(layers.Layer):
    """Resizes `[images, reference]` to the reference's height and width.

    Works with dynamic shapes (any input size) on TensorFlow and JAX.

    Args:
        interpolation: str. Interpolation of `keras.ops.image.resize`.
            Defaults to `"bilinear"`.
    """

    def __init__(self, interpolation="bilinear", **kwargs):
        super().__init__(**kwargs)
        self.interpolation = interpolation

    def call(self, inputs):
        images, reference = inputs
        size = ops.shape(reference)[1:3]
        images = ops.cast(images, self.compute_dtype)
        if keras.backend.backend() == "tensorflow" and not all(isinstance(d, int) for d in size):
            return _resize_to_graph_time_size(images, size, self.interpolation)
        return ops.image.resize(images, size, interpolation=self.interpolation)

    def compute_output_shape(self, input_shape):
        images_shape, reference_shape = input_shape
        return (images_shape[0], reference_shape[1], reference_shape[2], images_shape[3])

    def get_config(self):
        return {**super().get_config(), "interpolation": self.interpolation}
