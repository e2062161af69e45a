"""DeepLabV3+'s head as named, serialisable Keras layers: ASPP and the decoder.

`SpatialPyramidPooling` (atrous spatial pyramid pooling, Chen et al. 2017/2018) and
`DeepLabV3PlusDecoder` can be reused in any functional model:

```python
features = keras.Input((32, 32, 320))
low_level = keras.Input((128, 128, 24))
x = SpatialPyramidPooling(rates=(6, 12, 18), filters=256, name="aspp")(features)
x = DeepLabV3PlusDecoder(filters=256, name="decoder")([x, low_level])
```
"""

import math

import keras
from keras import layers

from faceparsing import KERAS_PACKAGE
from faceparsing.model.atrous import AtrousConv2D
from faceparsing.model.layers import ResizeLike


@keras.saving.register_keras_serializable(package=KERAS_PACKAGE)
class ConvBNReLU(layers.Layer):
    """Convolution (no bias), batch normalization and ReLU.

    Args:
        filters: int. Output channels.
        kernel_size: int. Kernel side.
        dilation_rate: int. Atrous rate. Defaults to 1.
        fast_atrous: bool. Dilated convolutions by space-to-batch (`AtrousConv2D`, same
            results). Defaults to True.
        momentum: float. Batch normalization momentum. Defaults to 0.99.
    """

    def __init__(
        self, filters, kernel_size, dilation_rate=1, fast_atrous=True, momentum=0.99, **kwargs
    ):
        super().__init__(**kwargs)
        self.filters, self.kernel_size, self.dilation_rate = filters, kernel_size, dilation_rate
        self.fast_atrous, self.momentum = fast_atrous, momentum
        conv_class = AtrousConv2D if (fast_atrous and dilation_rate > 1) else layers.Conv2D
        self.conv = conv_class(
            filters, kernel_size, padding="same", dilation_rate=dilation_rate, use_bias=False,
            name="conv",
        )  # fmt: skip
        self.norm = layers.BatchNormalization(momentum=momentum, name="bn")

    def build(self, input_shape):
        self.conv.build(input_shape)
        self.norm.build((*input_shape[:-1], self.filters))

    def call(self, inputs, training=None):
        return keras.ops.relu(self.norm(self.conv(inputs), training=training))

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.filters)

    def get_config(self):
        return {
            **super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
            "dilation_rate": self.dilation_rate, "fast_atrous": self.fast_atrous,
            "momentum": self.momentum,
        }  # fmt: skip


@keras.saving.register_keras_serializable(package=KERAS_PACKAGE)
class SpatialPyramidPooling(layers.Layer):
    """Atrous spatial pyramid pooling (ASPP) of DeepLabV3+ (Chen et al., ECCV 2018).

    Five branches over the features, each `filters` wide with batch norm and ReLU: a 1x1
    convolution, three 3x3 atrous convolutions at `rates`, and the image-level average
    pooled, convolved and upsampled; concatenated, projected by a 1x1 convolution to
    `filters` channels, then dropout.

    Args:
        rates: tuple of int. Atrous rates of the three 3x3 branches. Defaults to (6, 12, 18)
            (output stride 16; the paper uses (12, 24, 36) at 8).
        filters: int. Channels of every branch and of the output. Defaults to 256.
        dropout: float. Dropout rate after the projection. Defaults to 0.1.
        fast_atrous: bool. See `ConvBNReLU`. Defaults to True.
        momentum: float. Batch normalization momentum. Defaults to 0.99.
    """

    def __init__(
        self, rates=(6, 12, 18), filters=256, dropout=0.1, fast_atrous=True, momentum=0.99,
        **kwargs,
    ):  # fmt: skip
        super().__init__(**kwargs)
        self.rates, self.filters, self.dropout = (
            tuple(int(rate) for rate in rates),
            filters,
            dropout,
        )
        self.fast_atrous, self.momentum = fast_atrous, momentum
        common = dict(fast_atrous=fast_atrous, momentum=momentum)
        self.branches = [ConvBNReLU(filters, 1, name="conv_1x1", **common)] + [
            ConvBNReLU(filters, 3, rate, name=f"conv_rate_{rate}", **common) for rate in self.rates
        ]
        self.pooling_conv = ConvBNReLU(filters, 1, name="pooling_conv", **common)
        self.pooling_upsample = ResizeLike(name="pooling_upsample")
        self.projection = ConvBNReLU(filters, 1, name="projection", **common)
        self.dropout_layer = layers.Dropout(dropout, name="dropout")

    @property
    def blocks(self):
        """Its `ConvBNReLU` blocks by name ("conv_1x1", "conv_rate_6", ...)."""
        return {block.name: block for block in [*self.branches, self.pooling_conv, self.projection]}

    def multiply_adds(self, input_shape):
        """Multiply-adds of its convolutions on features of `input_shape` (B, H, W, C)."""
        positions = math.prod(input_shape[1:3])
        return sum(
            math.prod(block.conv.kernel.shape) * (1 if block is self.pooling_conv else positions)
            for block in self.blocks.values()
        )

    def build(self, input_shape):
        for branch in self.branches:
            branch.build(input_shape)
        self.pooling_conv.build((input_shape[0], 1, 1, input_shape[-1]))
        self.projection.build((*input_shape[:-1], self.filters * (len(self.branches) + 1)))

    def call(self, features, training=None):
        outputs = [branch(features, training=training) for branch in self.branches]
        pooled = keras.ops.mean(features, axis=(1, 2), keepdims=True)
        pooled = self.pooling_conv(pooled, training=training)
        outputs.append(self.pooling_upsample([pooled, features]))
        merged = keras.ops.concatenate(outputs, axis=-1)
        return self.dropout_layer(self.projection(merged, training=training), training=training)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.filters)

    def get_config(self):
        return {
            **super().get_config(), "rates": self.rates, "filters": self.filters,
            "dropout": self.dropout, "fast_atrous": self.fast_atrous, "momentum": self.momentum,
        }  # fmt: skip


@keras.saving.register_keras_serializable(package=KERAS_PACKAGE)
class DeepLabV3PlusDecoder(layers.Layer):
    """DeepLabV3+'s decoder: `[aspp_features, low_level]` -> features at the low level's size.

    The ASPP output is upsampled bilinearly to the stride-4 features, which a 1x1
    convolution reduces to `low_level_filters` channels; both are concatenated and
    refined by two 3x3 convolutions of `filters` (each with batch norm and ReLU).

    Args:
        filters: int. Channels of the two 3x3 convolutions. Defaults to 256.
        low_level_filters: int. Channels the low-level features are reduced to. Defaults to 48.
        momentum: float. Batch normalization momentum. Defaults to 0.99.
    """

    def __init__(self, filters=256, low_level_filters=48, momentum=0.99, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.low_level_filters, self.momentum = filters, low_level_filters, momentum
        self.upsample = ResizeLike(name="upsample")
        self.low_level = ConvBNReLU(low_level_filters, 1, momentum=momentum, name="low_level")
        self.conv_1 = ConvBNReLU(filters, 3, momentum=momentum, name="conv_1")
        self.conv_2 = ConvBNReLU(filters, 3, momentum=momentum, name="conv_2")

    @property
    def blocks(self):
        """Its `ConvBNReLU` blocks by name ("low_level", "conv_1", "conv_2")."""
        return {block.name: block for block in (self.low_level, self.conv_1, self.conv_2)}

    def multiply_adds(self, input_shape):
        """Multiply-adds of its convolutions on `[aspp_shape, low_level_shape]`."""
        positions = math.prod(input_shape[1][1:3])
        return sum(math.prod(block.conv.kernel.shape) * positions for block in self.blocks.values())

    def build(self, input_shape):
        aspp_shape, low_level_shape = input_shape
        self.low_level.build(low_level_shape)
        merged = (*low_level_shape[:-1], aspp_shape[-1] + self.low_level_filters)
        self.conv_1.build(merged)
        self.conv_2.build((*low_level_shape[:-1], self.filters))

    def call(self, inputs, training=None):
        aspp_features, low_level = inputs
        x = self.upsample([aspp_features, low_level])
        low_level = self.low_level(low_level, training=training)
        x = keras.ops.concatenate([x, low_level], axis=-1)
        return self.conv_2(self.conv_1(x, training=training), training=training)

    def compute_output_shape(self, input_shape):
        return (*input_shape[1][:-1], self.filters)

    def get_config(self):
        return {
            **super().get_config(), "filters": self.filters,
            "low_level_filters": self.low_level_filters, "momentum": self.momentum,
        }  # fmt: skip
