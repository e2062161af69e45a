"""Importing this module registers every Keras object a checkpoint of this project holds.

`keras.saving.load_model` finds a custom class by its registered name
("faceparsing>DeepLabV3Plus", "faceparsing>WarmupPolyDecay", ...) only once the
module defining it has been imported. A training checkpoint holds the model's
layers and also the optimiser's schedule, the loss and the metric, so a single
import of this module (which `deeplab` and `load_checkpoint` do) loads any of them.
"""

from faceparsing.metrics import SegmentationMeanIoU
from faceparsing.model.atrous import AtrousConv2D, AtrousDepthwiseConv2D, AtrousSeparableConv2D
from faceparsing.model.deeplabv3plus import DeepLabV3Plus
from faceparsing.model.head import ConvBNReLU, DeepLabV3PlusDecoder, SpatialPyramidPooling
from faceparsing.model.layers import ImagePreprocessing, ResizeLike
from faceparsing.training.losses import DiceCrossEntropyLoss, FocalLoss, LovaszSoftmaxLoss
from faceparsing.training.schedules import WarmupPolyDecay

REGISTERED_CLASSES = (
    AtrousConv2D, AtrousDepthwiseConv2D, AtrousSeparableConv2D, ConvBNReLU, DeepLabV3Plus,
    DeepLabV3PlusDecoder, DiceCrossEntropyLoss, FocalLoss, ImagePreprocessing, LovaszSoftmaxLoss,
    ResizeLike, SegmentationMeanIoU, SpatialPyramidPooling, WarmupPolyDecay,
)  # fmt: skip
