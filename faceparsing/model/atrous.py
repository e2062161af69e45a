"""Atrous (dilated) convolutions computed by space-to-batch, exactly.

TensorFlow's CPU gradient of dilated convolutions is several times slower than
that of plain ones. These subclasses of the Keras layers keep their weights and
results but run a 'same', stride-1 dilated convolution as an undilated one over
the rate x rate interleaved sub-images.
"""

import keras
from keras import layers, ops

from faceparsing import KERAS_PACKAGE


def _is_static(*values):
    return all(isinstance(value, int) for value in values)


def _minimum(a, b):
    return min(a, b) if _is_static(a, b) else ops.minimum(a, b)


def _centre_taps(kernel, rate, size):
    """Drop the kernel taps that only ever see padding, where sizes are static.

    With rate >= size along an axis, every off-centre tap falls outside the
    feature map, so only the centre row (column) of the kernel contributes.
    Returns the reduced kernel and the rate that remains along each axis.
    """
    kernel_h, kernel_w = kernel.shape[0], kernel.shape[1]
    rate_h, rate_w = rate
    if _is_static(size[0]) and rate_h >= size[0] and kernel_h % 2 == 1:
        kernel = kernel[kernel_h // 2 : kernel_h // 2 + 1]
        rate_h = 1
    if _is_static(size[1]) and rate_w >= size[1] and kernel_w % 2 == 1:
        kernel = kernel[:, kernel_w // 2 : kernel_w // 2 + 1]
        rate_w = 1
    return kernel, (rate_h, rate_w)


def atrous_same(inputs, rate, undilated_op):
    """Apply a 'same'-padded, stride-1 atrous op as an undilated one.

    The dilated op over (B, H, W, C) equals the undilated op over the
    rate_h * rate_w interleaved sub-images (space-to-batch): zero-pad H and W
    to multiples of the rate, fold the phases into the batch, run the op with
    'same' padding, unfold and crop. The zeros added match the zeros of
    'same' padding, so the result is exact. A rate at least as large as the
    feature map behaves like a rate equal to it (only the centre tap sees
    data), which keeps the padding small.

    Args:
        inputs: tensor (B, H, W, C), channels last.
        rate: tuple of two ints. Dilation rate along H and W.
        undilated_op: callable mapping (N, h, w, C) to (N, h, w, C_out) with
            'same' padding and stride 1.
    """
    batch, height, width, _ = ops.shape(inputs)
    rate_h, rate_w = _minimum(rate[0], height), _minimum(rate[1], width)
    pad_h, pad_w = (-height) % rate_h, (-width) % rate_w
    padded = ops.pad(inputs, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]])
    blocks_h, blocks_w = (height + pad_h) // rate_h, (width + pad_w) // rate_w
    channels = inputs.shape[-1]
    phases = ops.reshape(padded, (batch, blocks_h, rate_h, blocks_w, rate_w, channels))
    phases = ops.transpose(phases, (2, 4, 0, 1, 3, 5))
    phases = ops.reshape(phases, (rate_h * rate_w * batch, blocks_h, blocks_w, channels))
    outputs = undilated_op(phases)
    out_channels = outputs.shape[-1]
    outputs = ops.reshape(outputs, (rate_h, rate_w, batch, blocks_h, blocks_w, out_channels))
    outputs = ops.transpose(outputs, (2, 3, 0, 4, 1, 5))
    outputs = ops.reshape(outputs, (batch, blocks_h * rate_h, blocks_w * rate_w, out_channels))
    return outputs[:, :height, :width, :]


class _AtrousMixin:
    """Decides whether a layer can use the space-to-batch path."""

    def _uses_space_to_batch(self):
        return (
            max(self.dilation_rate) > 1
            and self.padding == "same"
            and tuple(self.strides) == (1, 1)
            and self.data_format == "channels_last"
        )

    def _atrous(self, inputs, kernel, kernel_op):
        """Run kernel_op(x, kernel) (undilated, 'same') as the dilated op."""
        kernel, rate = _centre_taps(kernel, self.dilation_rate, inputs.shape[1:3])
        if rate == (1, 1):
            return kernel_op(inputs, kernel)
        return atrous_same(inputs, rate, lambda phases: kernel_op(phases, kernel))


@keras.saving.register_keras_serializable(package=KERAS_PACKAGE)
class AtrousConv2D(_AtrousMixin, layers.Conv2D):
    """`keras.layers.Conv2D` whose dilated 'same' convolution runs undilated.

    Computes exactly what `Conv2D` computes, with the same weights, but
    TensorFlow's CPU gradient of dilated convolutions is several times slower
    than the plain one, so dilation is turned into space-to-batch (see
    `atrous_same`). Any other configuration falls back to `Conv2D`.
    """

    def convolution_op(self, inputs, kernel):
        if not self._uses_space_to_batch():
            return super().convolution_op(inputs, kernel)

        def conv(x, k):
            return ops.conv(x, k, strides=1, padding="same", data_format="channels_last")

        return self._atrous(inputs, kernel, conv)


def _add_bias_and_activate(layer, outputs):
    if layer.use_bias:
        outputs = ops.add(outputs, layer.bias)
    if layer.activation is not None:
        outputs = layer.activation(outputs)
    return outputs


def _depthwise(x, kernel):
    return ops.depthwise_conv(x, kernel, strides=1, padding="same", data_format="channels_last")


@keras.saving.register_keras_serializable(package=KERAS_PACKAGE)
class AtrousDepthwiseConv2D(_AtrousMixin, layers.DepthwiseConv2D):
    """`keras.layers.DepthwiseConv2D` with the space-to-batch atrous path."""

    def call(self, inputs):
        if not self._uses_space_to_batch():
            return super().call(inputs)
        outputs = self._atrous(inputs, self.kernel, _depthwise)
        return _add_bias_and_activate(self, outputs)


@keras.saving.register_keras_serializable(package=KERAS_PACKAGE)
class AtrousSeparableConv2D(_AtrousMixin, layers.SeparableConv2D):
    """`keras.layers.SeparableConv2D` with the space-to-batch atrous path."""

    def call(self, inputs):
        if not self._uses_space_to_batch():
            return super().call(inputs)
        outputs = self._atrous(inputs, self.depthwise_kernel, _depthwise)
        outputs = ops.conv(outputs, self.pointwise_kernel, strides=1, padding="same")
        return _add_bias_and_activate(self, outputs)


# Keras names weights in .weights.h5 files by class name ("conv2d",
# "conv2d_1", ...). Sharing the parents' names keeps weight files of fast and
# plain models interchangeable; serialization uses the registered names
# ("faceparsing>AtrousConv2D"), so loading still finds these classes.
for _atrous_class in (AtrousConv2D, AtrousDepthwiseConv2D, AtrousSeparableConv2D):
    _atrous_class.__name__ = _atrous_class.__mro__[2].__name__

ATROUS_CLASSES = {
    layers.Conv2D: AtrousConv2D,
    layers.DepthwiseConv2D: AtrousDepthwiseConv2D,
    layers.SeparableConv2D: AtrousSeparableConv2D,
}


def fast_atrous_for(setting, backend, devices):
    """Whether to build space-to-batch atrous layers for a config's `fast_atrous` on this
    machine: "auto" is what measured faster, on except under JAX on CPU (see docs/training.md,
    "Fast atrous convolution")."""
    if setting != "auto":
        return setting == "true"
    return not (backend == "jax" and all(device == "cpu" for device in devices))
