"""The head of models saved before ASPP and the decoder were layers (`head.py`).

Their convolutions and batch norms sat in the model itself ("aspp_conv_1x1",
"aspp_conv_1x1_bn", ..., "decoder_conv_2"), and their weight files name them so: a
DeepLabV3Plus read from such a checkpoint (its config has no `head`) is built with this
flat head, so that Keras loads it as it was saved and it predicts exactly as before.
`copy_flat_head` copies its weights into a model with the layered head (`--init`).
"""

from keras import layers

from faceparsing.model.atrous import AtrousConv2D
from faceparsing.model.layers import ResizeLike


def flat_head(high_level, low_level, rates, filters, dropout, fast_atrous, momentum,
              low_level_filters, decoder_filters):  # fmt: skip
    """The decoder's output, built from individual layers as before the head layers."""
    block = dict(fast_atrous=fast_atrous, momentum=momentum)
    branches = [_conv_bn_relu(high_level, filters, 1, "aspp_conv_1x1", **block)]
    for rate in rates:
        branches.append(
            _conv_bn_relu(high_level, filters, 3, f"aspp_conv_rate_{rate}", rate, **block)
        )
    pooled = layers.GlobalAveragePooling2D(keepdims=True, name="aspp_pooling")(high_level)
    pooled = _conv_bn_relu(pooled, filters, 1, "aspp_pooling_conv", **block)
    branches.append(ResizeLike(name="aspp_pooling_upsample")([pooled, high_level]))
    x = layers.Concatenate(name="aspp_concat")(branches)
    x = _conv_bn_relu(x, filters, 1, "aspp_projection", **block)
    x = layers.Dropout(dropout, name="aspp_dropout")(x)
    x = ResizeLike(name="decoder_upsample")([x, low_level])
    low_level = _conv_bn_relu(low_level, low_level_filters, 1, "decoder_low_level", **block)
    x = layers.Concatenate(name="decoder_concat")([x, low_level])
    x = _conv_bn_relu(x, decoder_filters, 3, "decoder_conv_1", **block)
    return _conv_bn_relu(x, decoder_filters, 3, "decoder_conv_2", **block)


def _conv_bn_relu(x, filters, kernel_size, name, dilation_rate=1, fast_atrous=True, momentum=0.99):
    conv_class = AtrousConv2D if (fast_atrous and dilation_rate > 1) else layers.Conv2D
    x = conv_class(
        filters, kernel_size, padding="same", dilation_rate=dilation_rate, use_bias=False,
        name=name,
    )(x)  # fmt: skip
    x = layers.BatchNormalization(momentum=momentum, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def copy_flat_head(source, target):
    """Copy the head of a flat-head model `source` into the layered head of `target`
    (same architecture): "aspp_conv_rate_6_bn" goes to the batch norm of `target`'s
    "aspp" layer's block "conv_rate_6"."""
    for layer in source.layers:
        head, _, block = layer.name.partition("_")
        if head in ("aspp", "decoder") and layer.weights:
            block_layer = target.get_layer(head).blocks[block.removesuffix("_bn")]
            part = block_layer.norm if block.endswith("_bn") else block_layer.conv
            part.set_weights(layer.get_weights())
