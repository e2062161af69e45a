"""Atrous backbones: keras.applications networks cloned to an output stride of 8, 16 or 32.

The last stage (OS16) or two (OS8) lose their stride and dilate instead, keeping
layer names and weight shapes, so ImageNet weights load unchanged.
"""

import math
from dataclasses import dataclass

import keras
from keras import layers

from faceparsing.errors import ConfigError, UserError
from faceparsing.model.atrous import ATROUS_CLASSES

OUTPUT_STRIDES = (8, 16, 32)
# Spatial size at which the plain backbone is built to measure its strides.
_STRIDE_PROBE_SIZE = 224


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
    # MobileNetV3 (Howard et al., ICCV 2019) likewise stops at its last block
    # (160 / 96 channels), not the 960 / 576-channel conv_1; the stride-4
    # features are the last block at that stride (its own names, as the
    # activations are numbered per session). Its own [0, 255] -> [-1, 1]
    # rescaling is left out: the model's "tf" preprocessing layer does it.
    "mobilenetv3large": BackboneSpec(
        "MobileNetV3Large", "tf", "expanded_conv_2_add", "expanded_conv_14_add"
    ),
    "mobilenetv3small": BackboneSpec(
        "MobileNetV3Small", "tf", "expanded_conv_project_bn", "expanded_conv_10_add"
    ),
}
# Backbones whose constructor takes a width multiplier `alpha`.
WIDTH_MULTIPLIED = ("mobilenetv2", "mobilenetv3large", "mobilenetv3small")


class PretrainedWeightsUnavailableError(UserError, OSError):
    """ImageNet weights could not be downloaded (for example, offline)."""


def check_backbone(backbone):
    if backbone not in BACKBONES:
        raise ConfigError(
            f"`backbone` must be one of {sorted(BACKBONES)}. Received: backbone={backbone!r}"
        )
    return BACKBONES[backbone]


def check_output_stride(output_stride):
    if output_stride not in OUTPUT_STRIDES:
        raise ConfigError(
            f"`output_stride` must be one of {OUTPUT_STRIDES}. "
            f"Received: output_stride={output_stride!r}"
        )


def _plain_application(backbone, alpha, weights):
    """The keras.applications network (include_top=False) at the probe size."""
    spec = check_backbone(backbone)
    kwargs = {"alpha": alpha} if backbone in WIDTH_MULTIPLIED else {}
    if spec.application.startswith("MobileNetV3"):
        kwargs["include_preprocessing"] = False
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
            raise ConfigError(
                f"`weights` file {path} does not hold a {backbone!r} network "
                f"(include_top=False, alpha={alpha}): {error}"
            ) from error
        return plain
    raise ConfigError(
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
        alpha: float. MobileNet width multiplier (see WIDTH_MULTIPLIED).
        input_shape: tuple. Shape of the preprocessed images.
        fast_atrous: bool. Use the space-to-batch atrous layers.
        batchnorm_momentum: float or None. Overrides the momentum of every
            batch normalization layer (None keeps the application's own).

    Returns:
        A `keras.Model` named "backbone" mapping preprocessed images to the
        stride-4 features and the features at `output_stride`.
    """
    spec = check_backbone(backbone)
    check_output_stride(output_stride)
    plain = _load_plain_application(backbone, alpha, weights)

    def clone_layer(layer):
        config, dilated = _atrous_config(layer, output_stride)
        layer_class = type(layer)
        if batchnorm_momentum is not None and isinstance(layer, layers.BatchNormalization):
            config["momentum"] = batchnorm_momentum
        if dilated and fast_atrous:
            layer_class = ATROUS_CLASSES.get(layer_class, layer_class)
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
        raise ConfigError(
            f"Backbone weights do not match: missing layers {missing}, "
            f"shape mismatches {mismatched}."
        )
