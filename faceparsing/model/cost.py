"""What a DeepLabV3Plus costs: parameters and multiply-adds at a given input size."""

import math

import keras
from keras import layers

from faceparsing.model.backbones import BACKBONES
from faceparsing.model.deeplabv3plus import DeepLabV3Plus


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
        if hasattr(layer, "multiply_adds"):  # a layer of layers (ASPP, the decoder)
            shape = (
                [x.shape for x in layer.input]
                if isinstance(layer.input, list)
                else layer.input.shape
            )
            total += layer.multiply_adds(shape)
            continue
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
