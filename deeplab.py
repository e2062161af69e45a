"""DeepLabV3+ for face parsing, written with Keras 3 only (TensorFlow or JAX).

The model takes float32 RGB images in [0, 255] and returns per-pixel logits
(B, H, W, num_classes) at the input's resolution. Backbone preprocessing is a
layer of the model, so training, evaluation and inference cannot disagree.

Saved models load without `custom_objects`, but this module must be imported
first so that its layers are registered:

    import deeplab  # registers the "faceparsing" layers
    model = keras.saving.load_model("model.keras")

Usage (a table of parameters and multiply-adds of every backbone):

    python deeplab.py --report [--image-size 512]
"""

import argparse
import math
from dataclasses import dataclass

import keras
from keras import layers, ops

from face_classes import NUM_CLASSES

PACKAGE = "faceparsing"
OUTPUT_STRIDES = (8, 16, 32)
# ASPP rates of the paper for each output stride; 32 halves the OS16 rates.
DEFAULT_ASPP_RATES = {8: (12, 24, 36), 16: (6, 12, 18), 32: (3, 6, 9)}
# Spatial size at which the plain backbone is built to measure its strides.
_STRIDE_PROBE_SIZE = 224
# BGR channel means of the caffe-style ImageNet preprocessing (ResNet).
_CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)


# --------------------------------------------------------------------------
# Atrous convolutions computed by space-to-batch.
# --------------------------------------------------------------------------


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


@keras.saving.register_keras_serializable(package=PACKAGE)
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


@keras.saving.register_keras_serializable(package=PACKAGE)
class AtrousDepthwiseConv2D(_AtrousMixin, layers.DepthwiseConv2D):
    """`keras.layers.DepthwiseConv2D` with the space-to-batch atrous path."""

    def call(self, inputs):
        if not self._uses_space_to_batch():
            return super().call(inputs)
        outputs = self._atrous(inputs, self.kernel, _depthwise)
        return _add_bias_and_activate(self, outputs)


@keras.saving.register_keras_serializable(package=PACKAGE)
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

_ATROUS_CLASSES = {
    layers.Conv2D: AtrousConv2D,
    layers.DepthwiseConv2D: AtrousDepthwiseConv2D,
    layers.SeparableConv2D: AtrousSeparableConv2D,
}


# --------------------------------------------------------------------------
# Small layers of the model.
# --------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package=PACKAGE)
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
        mean = ops.convert_to_tensor(_CAFFE_BGR_MEAN, dtype=self.compute_dtype)
        return ops.flip(images, axis=-1) - mean

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package=PACKAGE)
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
        return ops.image.resize(images, size, interpolation=self.interpolation)

    def compute_output_shape(self, input_shape):
        images_shape, reference_shape = input_shape
        return (images_shape[0], reference_shape[1], reference_shape[2], images_shape[3])

    def get_config(self):
        return {**super().get_config(), "interpolation": self.interpolation}


# --------------------------------------------------------------------------
# Atrous backbones from keras.applications.
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class BackboneSpec:
    application: str  # constructor name in keras.applications
    preprocessing: str  # ImagePreprocessing mode
    low_level: str  # layer whose output is the stride-4 feature map
    high_level: str  # layer whose output feeds ASPP


BACKBONES = {
    "resnet50": BackboneSpec("ResNet50", "caffe", "conv2_block3_out", "conv5_block3_out"),
    "resnet101": BackboneSpec("ResNet101", "caffe", "conv2_block3_out", "conv5_block3_out"),
    # DeepLab's MobileNetV2 stops at the last inverted residual block (320
    # channels); the 1280-channel Conv_1 head would quadruple ASPP's cost.
    "mobilenetv2": BackboneSpec("MobileNetV2", "tf", "block_3_expand_relu", "block_16_project_BN"),
    "xception": BackboneSpec("Xception", "tf", "block3_sepconv1_act", "block14_sepconv2_act"),
}


class PretrainedWeightsUnavailableError(OSError):
    """ImageNet weights could not be downloaded (for example, offline)."""


def _check_backbone(backbone):
    if backbone not in BACKBONES:
        raise ValueError(
            f"`backbone` must be one of {sorted(BACKBONES)}. Received: backbone={backbone!r}"
        )
    return BACKBONES[backbone]


def _plain_application(backbone, alpha, weights):
    """The keras.applications network (include_top=False) at the probe size."""
    spec = _check_backbone(backbone)
    kwargs = {"alpha": alpha} if backbone == "mobilenetv2" else {}
    constructor = getattr(keras.applications, spec.application)
    shape = (_STRIDE_PROBE_SIZE, _STRIDE_PROBE_SIZE, 3)
    return constructor(include_top=False, weights=weights, input_shape=shape, **kwargs)


def _load_plain_application(backbone, alpha, weights):
    """The plain network holding the requested weights (see DeepLabV3Plus)."""
    if weights is None:
        return _plain_application(backbone, alpha, None)
    if weights == "imagenet":
        try:
            return _plain_application(backbone, alpha, "imagenet")
        except Exception as error:  # urllib/http errors vary by platform
            raise PretrainedWeightsUnavailableError(
                f"Downloading the ImageNet weights of {backbone!r} failed ({error}). "
                "Offline, pass `weights=None` for random initialisation, or "
                "`weights=<path>` to a .weights.h5 saved from "
                f"keras.applications.{BACKBONES[backbone].application}(include_top=False) "
                "or a .keras/.h5 file of that model."
            ) from error
    path = str(weights)
    plain = _plain_application(backbone, alpha, None)
    if path.endswith(".weights.h5"):
        plain.load_weights(path)
        return plain
    if path.endswith((".keras", ".h5")):
        # Copied by position: auto-named layers (Xception's "add_3") are
        # numbered differently in every session, so names cannot match.
        loaded = keras.saving.load_model(path, compile=False)
        try:
            plain.set_weights(loaded.get_weights())
        except ValueError as error:
            raise ValueError(
                f"`weights` file {path} does not hold a {backbone!r} network "
                f"(include_top=False, alpha={alpha}): {error}"
            ) from error
        return plain
    raise ValueError(
        "`weights` must be 'imagenet', None, or a path ending in .weights.h5, .keras or .h5. "
        f"Received: weights={weights!r}"
    )


def _spatial_stride(shape):
    return 2 ** round(math.log2(_STRIDE_PROBE_SIZE / shape[1]))


def _atrous_config(layer, output_stride):
    """The layer's config for the target output stride, and whether it dilates.

    A layer whose output is coarser than `output_stride` loses its stride;
    a layer reading features coarser than `output_stride` dilates by the
    ratio, so its receptive field in input pixels is unchanged.
    """
    config = layer.get_config()
    if isinstance(layer.input, list):
        return config, False
    in_stride = _spatial_stride(layer.input.shape)
    out_stride = _spatial_stride(layer.output.shape)
    if isinstance(layer, layers.ZeroPadding2D) and in_stride >= output_stride:
        # Only strided ops are zero-padded by hand (MobileNetV2, ResNet stem);
        # once they lose their stride they pad 'same' themselves.
        config["padding"] = ((0, 0), (0, 0))
        return config, False
    if "strides" in config and out_stride > output_stride:
        # 'valid' strided ops follow a ZeroPadding2D that was just removed.
        config["strides"] = (1, 1)
        config["padding"] = "same"
    kernel_size = config.get("kernel_size", (1, 1))
    dilation = in_stride // output_stride
    if "dilation_rate" in config and dilation > 1 and max(kernel_size) > 1:
        config["dilation_rate"] = (dilation, dilation)
        return config, True
    return config, False


def build_atrous_backbone(
    backbone, output_stride=16, weights=None, alpha=1.0, input_shape=(None, None, 3),
    fast_atrous=True, batchnorm_momentum=None,
):  # fmt: skip
    """A keras.applications backbone turned atrous, with [low, high] outputs.

    Layer names and weight shapes are those of the plain application, so its
    weights load unchanged.

    Args:
        backbone: str. One of `BACKBONES`.
        output_stride: int. 8, 16 or 32 (32 = the plain network).
        weights: None, "imagenet" or a path (see `DeepLabV3Plus`).
        alpha: float. MobileNetV2 width multiplier.
        input_shape: tuple. Shape of the preprocessed images.
        fast_atrous: bool. Use the space-to-batch atrous layers.
        batchnorm_momentum: float or None. Overrides the momentum of every
            batch normalization layer (None keeps the application's own).

    Returns:
        A `keras.Model` named "backbone" mapping preprocessed images to the
        stride-4 features and the features at `output_stride`.
    """
    spec = _check_backbone(backbone)
    if output_stride not in OUTPUT_STRIDES:
        raise ValueError(
            f"`output_stride` must be one of {OUTPUT_STRIDES}. "
            f"Received: output_stride={output_stride!r}"
        )
    plain = _load_plain_application(backbone, alpha, weights)

    def clone_layer(layer):
        config, dilated = _atrous_config(layer, output_stride)
        layer_class = type(layer)
        if batchnorm_momentum is not None and isinstance(layer, layers.BatchNormalization):
            config["momentum"] = batchnorm_momentum
        if dilated and fast_atrous:
            layer_class = _ATROUS_CLASSES.get(layer_class, layer_class)
        return layer_class.from_config(config)

    inputs = keras.Input(shape=input_shape, name="backbone_input")
    atrous = keras.models.clone_model(plain, input_tensors=inputs, clone_function=clone_layer)
    outputs = [atrous.get_layer(spec.low_level).output, atrous.get_layer(spec.high_level).output]
    backbone_model = keras.Model(inputs, outputs, name="backbone")
    if weights is not None:
        copy_weights_by_name(plain, backbone_model)
    return backbone_model


def copy_weights_by_name(source, target):
    """Copy every weighted layer of `target` from the same-named `source` layer.

    Raises:
        ValueError: naming every target layer missing from `source` or
            whose weight shapes differ.
    """
    source_layers = {layer.name: layer for layer in source.layers}
    missing, mismatched = [], []
    for layer in target.layers:
        if not layer.weights:
            continue
        if layer.name not in source_layers:
            missing.append(layer.name)
            continue
        values = source_layers[layer.name].get_weights()
        shapes = [tuple(value.shape) for value in values]
        expected = [tuple(weight.shape) for weight in layer.weights]
        if shapes != expected:
            mismatched.append(f"{layer.name}: {shapes} != {expected}")
            continue
        layer.set_weights(values)
    if missing or mismatched:
        raise ValueError(
            f"Backbone weights do not match: missing layers {missing}, "
            f"shape mismatches {mismatched}."
        )


# --------------------------------------------------------------------------
# DeepLabV3+.
# --------------------------------------------------------------------------


def _conv_bn_relu(x, filters, kernel_size, name, dilation_rate=1, fast_atrous=True, momentum=0.99):
    conv_class = AtrousConv2D if (fast_atrous and dilation_rate > 1) else layers.Conv2D
    x = conv_class(
        filters, kernel_size, padding="same", dilation_rate=dilation_rate, use_bias=False,
        name=name,
    )(x)  # fmt: skip
    x = layers.BatchNormalization(momentum=momentum, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _aspp(features, rates, filters, dropout, fast_atrous, momentum=0.99):
    branches = [_conv_bn_relu(features, filters, 1, "aspp_conv_1x1", momentum=momentum)]
    for rate in rates:
        branches.append(
            _conv_bn_relu(
                features, filters, 3, f"aspp_conv_rate_{rate}", rate, fast_atrous=fast_atrous,
                momentum=momentum,
            )
        )  # fmt: skip
    pooled = layers.GlobalAveragePooling2D(keepdims=True, name="aspp_pooling")(features)
    pooled = _conv_bn_relu(pooled, filters, 1, "aspp_pooling_conv", momentum=momentum)
    branches.append(ResizeLike(name="aspp_pooling_upsample")([pooled, features]))
    x = layers.Concatenate(name="aspp_concat")(branches)
    x = _conv_bn_relu(x, filters, 1, "aspp_projection", momentum=momentum)
    return layers.Dropout(dropout, name="aspp_dropout")(x)


def _decoder(aspp_features, low_level, low_level_filters, filters, momentum=0.99):
    x = ResizeLike(name="decoder_upsample")([aspp_features, low_level])
    low_level = _conv_bn_relu(low_level, low_level_filters, 1, "decoder_low_level", momentum=momentum)
    x = layers.Concatenate(name="decoder_concat")([x, low_level])
    x = _conv_bn_relu(x, filters, 3, "decoder_conv_1", momentum=momentum)
    return _conv_bn_relu(x, filters, 3, "decoder_conv_2", momentum=momentum)


@keras.saving.register_keras_serializable(package=PACKAGE)
class DeepLabV3Plus(keras.Model):
    """DeepLabV3+ semantic segmentation model.

    Encoder-decoder with atrous separable convolution (Chen, Zhu,
    Papandreou, Schroff, Adam, "Encoder-Decoder with Atrous Separable
    Convolution for Semantic Image Segmentation", ECCV 2018): an ImageNet
    backbone made atrous to `output_stride`, atrous spatial pyramid pooling
    (ASPP), and a decoder that fuses the stride-4 features. Plain (not
    separable) convolutions are used in ASPP and the decoder.

    Inputs are float32 RGB images in [0, 255] of any height and width; the
    backbone's preprocessing is the model's "preprocessing" layer. Outputs are
    float32 logits (B, H, W, num_classes) at the input's size, also under a
    mixed precision policy.

    Args:
        num_classes: int. Number of classes. Defaults to `NUM_CLASSES` (19).
        backbone: str. One of "resnet50", "resnet101", "mobilenetv2",
            "xception". Defaults to "resnet50".
        output_stride: int. Input size over the ASPP feature size: 8, 16
            or 32 (32 = no atrous convolution). Defaults to 16.
        weights: None, "imagenet" or str. Backbone weights: "imagenet"
            downloads them (raises `PretrainedWeightsUnavailableError`
            offline); None is random initialisation; a path loads a
            `.weights.h5` saved from the plain keras.applications model
            (include_top=False), or a `.keras`/`.h5` file of that model.
            Defaults to "imagenet".
        input_shape: tuple. Input shape, (None, None, 3) for any size.
        aspp_rates: tuple of ints or None. Rates of the three atrous ASPP
            branches. Defaults to (6, 12, 18) at OS16, (12, 24, 36) at OS8,
            (3, 6, 9) at OS32.
        aspp_filters: int. Filters of every ASPP branch and the projection.
            Defaults to 256.
        decoder_filters: int. Filters of the two decoder 3x3 convs.
            Defaults to 256.
        low_level_filters: int. Channels the stride-4 features are reduced
            to. Defaults to 48.
        dropout: float. Dropout rate after the ASPP projection.
            Defaults to 0.1.
        alpha: float. MobileNetV2 width multiplier (ignored otherwise).
            Defaults to 1.0.
        freeze_backbone: bool. Make the backbone non-trainable.
            Defaults to False.
        freeze_batchnorm: bool. Make the backbone's batch normalization layers
            non-trainable (they then use their moving statistics), for
            fine-tuning with small batches. Defaults to False.
        fast_atrous: bool. Compute dilated convolutions by space-to-batch
            (same results, faster gradients on CPU). Defaults to True.
        batchnorm_momentum: float or None. Momentum of every batch
            normalization layer, backbone included. None keeps Keras' 0.99 in
            the head and the application's own in the backbone (0.999 for
            MobileNetV2, too slow for short runs from scratch). Defaults to None.
        name: str. Model name. Defaults to "deeplabv3plus".

    Example:

    >>> model = DeepLabV3Plus(backbone="mobilenetv2", weights=None, alpha=0.35)
    >>> model(np.zeros((1, 64, 48, 3), "float32")).shape
    TensorShape([1, 64, 48, 19])
    """

    def __init__(
        self,
        num_classes=NUM_CLASSES,
        backbone="resnet50",
        output_stride=16,
        weights="imagenet",
        input_shape=(None, None, 3),
        aspp_rates=None,
        aspp_filters=256,
        decoder_filters=256,
        low_level_filters=48,
        dropout=0.1,
        alpha=1.0,
        freeze_backbone=False,
        freeze_batchnorm=False,
        fast_atrous=True,
        batchnorm_momentum=None,
        name="deeplabv3plus",
        **kwargs,
    ):
        spec = _check_backbone(backbone)
        if output_stride not in OUTPUT_STRIDES:
            raise ValueError(
                f"`output_stride` must be one of {OUTPUT_STRIDES}. "
                f"Received: output_stride={output_stride!r}"
            )
        if aspp_rates is None:
            aspp_rates = DEFAULT_ASPP_RATES[output_stride]
        aspp_rates = tuple(int(rate) for rate in aspp_rates)
        input_shape = tuple(input_shape)

        # Functional construction, as keras-hub models do.
        inputs = keras.Input(shape=input_shape, name="images")
        x = ImagePreprocessing(spec.preprocessing, name="preprocessing")(inputs)
        backbone_model = build_atrous_backbone(
            backbone, output_stride, weights, alpha, input_shape, fast_atrous, batchnorm_momentum
        )
        low_level, high_level = backbone_model(x)
        head_momentum = 0.99 if batchnorm_momentum is None else batchnorm_momentum
        x = _aspp(high_level, aspp_rates, aspp_filters, dropout, fast_atrous, head_momentum)
        x = _decoder(x, low_level, low_level_filters, decoder_filters, head_momentum)
        x = layers.Conv2D(num_classes, 1, name="logits")(x)
        outputs = ResizeLike(name="logits_upsample", dtype="float32")([x, inputs])
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)

        self.backbone = backbone_model
        if freeze_batchnorm:
            for layer in backbone_model.layers:
                if isinstance(layer, layers.BatchNormalization):
                    layer.trainable = False
        if freeze_backbone:
            backbone_model.trainable = False

        self.num_classes = num_classes
        self.backbone_name = backbone
        self.output_stride = output_stride
        self.image_shape = input_shape
        self.aspp_rates = aspp_rates
        self.aspp_filters = aspp_filters
        self.decoder_filters = decoder_filters
        self.low_level_filters = low_level_filters
        self.dropout = dropout
        self.alpha = alpha
        self.freeze_backbone = freeze_backbone
        self.freeze_batchnorm = freeze_batchnorm
        self.fast_atrous = fast_atrous
        self.batchnorm_momentum = batchnorm_momentum

    def get_config(self):
        # Weights travel in the .keras archive, so a reload starts from None.
        return {
            "name": self.name,
            "num_classes": self.num_classes,
            "backbone": self.backbone_name,
            "output_stride": self.output_stride,
            "input_shape": self.image_shape,
            "aspp_rates": self.aspp_rates,
            "aspp_filters": self.aspp_filters,
            "decoder_filters": self.decoder_filters,
            "low_level_filters": self.low_level_filters,
            "dropout": self.dropout,
            "alpha": self.alpha,
            "freeze_backbone": self.freeze_backbone,
            "freeze_batchnorm": self.freeze_batchnorm,
            "fast_atrous": self.fast_atrous,
            "batchnorm_momentum": self.batchnorm_momentum,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**{**config, "weights": None})


# --------------------------------------------------------------------------
# Cost report.
# --------------------------------------------------------------------------


def _all_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)
        else:
            yield layer


def count_multiply_adds(model):
    """Multiply-adds of the Conv2D, DepthwiseConv2D, SeparableConv2D and Dense
    layers of a model with a static input shape (nested models included).

    Each layer costs (output positions) x (kernel size): dilation does not
    change the count. Batch norm, activations, pooling, resizing, additions
    and biases are not counted (they are a small fraction).
    """
    total = 0
    for layer in _all_layers(model):
        positions = math.prod(layer.output.shape[1:-1]) if layer.weights else 0
        if isinstance(layer, layers.SeparableConv2D):
            kernel_size = math.prod(layer.depthwise_kernel.shape) + math.prod(
                layer.pointwise_kernel.shape
            )
        elif isinstance(layer, (layers.Conv2D, layers.DepthwiseConv2D, layers.Dense)):
            kernel_size = math.prod(layer.kernel.shape)
        else:
            continue
        total += positions * kernel_size
    return total


def model_report(model, image_size=512):
    """Parameters and multiply-adds of a DeepLabV3Plus at a square input size.

    Args:
        model: DeepLabV3Plus. The model to measure; it is rebuilt from its
            config (random weights) at `image_size` to get static shapes.
        image_size: int. Height and width of the input. Defaults to 512.

    Returns:
        dict with "total_params", "trainable_params", "multiply_adds" and
        "gmacs" (multiply-adds / 1e9, see `count_multiply_adds`).
    """
    config = {**model.get_config(), "input_shape": (image_size, image_size, 3)}
    sized = DeepLabV3Plus.from_config(config)
    trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
    macs = count_multiply_adds(sized)
    return {
        "total_params": model.count_params(),
        "trainable_params": trainable,
        "multiply_adds": macs,
        "gmacs": macs / 1e9,
    }


def print_report_table(image_size=512, output_strides=(16, 8)):
    print(f"| backbone | output stride | parameters | GMACs at {image_size}x{image_size} |")
    print("|---|---|---|---|")
    for backbone in BACKBONES:
        for output_stride in output_strides:
            model = DeepLabV3Plus(
                backbone=backbone, output_stride=output_stride, weights=None,
                input_shape=(image_size, image_size, 3),
            )  # fmt: skip
            macs = count_multiply_adds(model)
            print(
                f"| {backbone} | {output_stride} | {model.count_params() / 1e6:.2f}M "
                f"| {macs / 1e9:.1f} |",
                flush=True,
            )
            keras.backend.clear_session()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", action="store_true", help="print params/GMACs table")
    parser.add_argument("--image-size", type=int, default=512)
    args = parser.parse_args()
    if args.report:
        print_report_table(args.image_size)
    else:
        parser.print_help()


if __name__ == "__main__":
    main()
