"""Tiny DeepLabV3+ models and random images for the tests in tests/model/."""

import numpy as np

from faceparsing.model import deeplabv3plus

# Tiny heads keep every build and call fast on CPU.
TINY = {"aspp_filters": 8, "decoder_filters": 8, "low_level_filters": 4}
BACKBONE_OPTIONS = {"mobilenetv2": {"alpha": 0.35}}


def tiny_model(backbone="mobilenetv2", output_stride=16, **options):
    options = {**TINY, **BACKBONE_OPTIONS.get(backbone, {}), **options}
    options.setdefault("weights", None)
    return deeplabv3plus.DeepLabV3Plus(backbone=backbone, output_stride=output_stride, **options)


def random_images(*shape, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, shape).astype("float32")
