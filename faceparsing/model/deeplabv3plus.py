"""DeepLabV3+ (Chen et al., ECCV 2018): atrous backbone, ASPP and decoder, in Keras 3.

The model takes float32 RGB images in [0, 255] and returns per-pixel logits
(B, H, W, num_classes) at the input's resolution. Backbone preprocessing is a
layer of the model, so training, evaluation and inference cannot disagree.
"""

import keras
from keras import layers

from faceparsing import KERAS_PACKAGE
from faceparsing.classes import CELEBAMASK_HQ, NUM_CLASSES, ClassSet, class_set_from_config
from faceparsing.model.backbones import (
    build_atrous_backbone,
    check_backbone,
    check_output_stride,
)
from faceparsing.model.head import DeepLabV3PlusDecoder, SpatialPyramidPooling
from faceparsing.model.layers import ImagePreprocessing, ResizeLike
from faceparsing.model.legacy import flat_head

# ASPP rates of the paper for each output stride; 32 halves the OS16 rates.
DEFAULT_ASPP_RATES = {8: (12, 24, 36), 16: (6, 12, 18), 32: (3, 6, 9)}
HEADS = ("layers", "flat")


@keras.saving.register_keras_serializable(package=KERAS_PACKAGE)
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
        num_classes: int. Number of classes. Defaults to `NUM_CLASSES` (19),
            or the class set's count when `class_set` is given.
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
        class_set: ClassSet, dict (its `to_config()`) or None. The classes
            the model predicts, saved in its config so a loaded checkpoint
            knows its names, palette and flip pairs. None: CelebAMask-HQ's
            for 19 classes (checkpoints from before class sets load so).
        head: str. "layers": ASPP and the decoder are the named layers
            `SpatialPyramidPooling` ("aspp") and `DeepLabV3PlusDecoder`
            ("decoder") of `faceparsing.model.head`; "flat": their operations as
            individual layers, as in checkpoints saved before those layers
            (`faceparsing.model.legacy`). Defaults to "layers".
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
        class_set=None,
        head="layers",
        name="deeplabv3plus",
        **kwargs,
    ):
        class_set = _resolve_class_set(class_set, num_classes)
        num_classes = class_set.num_classes if class_set is not None else num_classes
        spec = check_backbone(backbone)
        check_output_stride(output_stride)
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
        if head not in HEADS:
            raise ValueError(f"`head` must be one of {HEADS}. Received: head={head!r}")
        if head == "flat":  # a checkpoint saved before the head layers
            x = flat_head(high_level, low_level, aspp_rates, aspp_filters, dropout, fast_atrous,
                          head_momentum, low_level_filters, decoder_filters)  # fmt: skip
        else:
            x = SpatialPyramidPooling(
                aspp_rates, aspp_filters, dropout, fast_atrous, head_momentum, name="aspp"
            )(high_level)
            x = DeepLabV3PlusDecoder(
                decoder_filters, low_level_filters, head_momentum, name="decoder"
            )([x, low_level])
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
        self.class_set = class_set
        self.head = head

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
            "class_set": None if self.class_set is None else self.class_set.to_config(),
            "head": self.head,
        }

    @classmethod
    def from_config(cls, config):
        # A config without `head` was saved before the head layers: its weights name a flat head.
        return cls(**{"head": "flat", **config, "weights": None})


def _resolve_class_set(class_set, num_classes):
    """The model's ClassSet: given, read from a saved config, or CelebAMask-HQ's for 19."""
    if isinstance(class_set, dict):
        class_set = class_set_from_config(class_set, source="model config 'class_set'")
    if class_set is None and num_classes == NUM_CLASSES:
        return CELEBAMASK_HQ
    if class_set is not None and not isinstance(class_set, ClassSet):
        raise ValueError(f"class_set must be a ClassSet, a dict or None, got {class_set!r}")
    if class_set is not None and num_classes not in (NUM_CLASSES, class_set.num_classes):
        raise ValueError(
            f"num_classes={num_classes} disagrees with the {class_set.num_classes} classes "
            f"of class_set {class_set.name!r}"
        )
    return class_set
