"""DeepLabV3+ for face parsing in Keras 3 (TensorFlow or JAX): the model users import.

```python
import deeplab

model = deeplab.DeepLabV3Plus(backbone="mobilenetv2", output_stride=16, weights=None)
logits = model(images)  # float32 RGB in [0, 255], (B, H, W, 3) -> (B, H, W, 19)

model = deeplab.load_checkpoint("runs/demo/best.keras")  # safe mode, checked

# The head's layers, for a model of your own:
x = deeplab.SpatialPyramidPooling(rates=(6, 12, 18), filters=256, name="aspp")(features)
x = deeplab.DeepLabV3PlusDecoder(filters=256, name="decoder")([x, low_level_features])
```

Importing this module registers every custom Keras object of the project, so
`keras.saving.load_model("runs/demo/best.keras")` works after it too.

The code lives in `faceparsing/model/`: `atrous` (space-to-batch atrous
layers), `backbones` (atrous keras.applications networks), `head` (ASPP and the
decoder), `layers`, `deeplabv3plus` (the model), `legacy` (the flat head of checkpoints
saved before the head layers) and `cost` (parameters and multiply-adds).

Usage (a table of parameters and multiply-adds of every backbone):

    python deeplab.py --report [--image-size 512]
"""

import sys

from faceparsing import (
    cli,
    serialization,  # noqa: F401  (registers every saved Keras object)
)
from faceparsing.checkpoints import load_checkpoint
from faceparsing.model.atrous import (
    AtrousConv2D,
    AtrousDepthwiseConv2D,
    AtrousSeparableConv2D,
    atrous_same,
)
from faceparsing.model.backbones import (
    BACKBONES,
    OUTPUT_STRIDES,
    PretrainedWeightsUnavailableError,
    build_atrous_backbone,
    copy_weights_by_name,
)
from faceparsing.model.cost import count_multiply_adds, model_report, print_report_table
from faceparsing.model.deeplabv3plus import DEFAULT_ASPP_RATES, DeepLabV3Plus
from faceparsing.model.head import ConvBNReLU, DeepLabV3PlusDecoder, SpatialPyramidPooling
from faceparsing.model.layers import ImagePreprocessing, ResizeLike

__all__ = [
    "BACKBONES", "DEFAULT_ASPP_RATES", "OUTPUT_STRIDES", "AtrousConv2D", "AtrousDepthwiseConv2D",
    "AtrousSeparableConv2D", "ConvBNReLU", "DeepLabV3Plus", "DeepLabV3PlusDecoder",
    "ImagePreprocessing", "SpatialPyramidPooling",
    "PretrainedWeightsUnavailableError", "ResizeLike", "atrous_same", "build_atrous_backbone",
    "copy_weights_by_name", "count_multiply_adds", "load_checkpoint", "model_report",
]  # fmt: skip


def parse_args(argv):
    parser = cli.ArgumentParser(description="DeepLabV3+ model tools.")
    parser.add_argument("--report", action="store_true", help="print the params/GMACs table")
    parser.add_argument("--image-size", type=int, default=512)
    return parser, parser.parse_args(argv)


def main(argv=None):
    parser, args = parse_args(argv)
    if not args.report:
        parser.print_help()
        return 0
    print_report_table(args.image_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
