import keras
import numpy as np
import pytest
from keras import layers
from tiny_deeplab import tiny_model

from faceparsing.model import backbones


@pytest.mark.parametrize("file_name", ["plain.weights.h5", "plain.keras"])
def test_backbone_weights_from_plain_application(tmp_path, file_name):
    plain = keras.applications.MobileNetV2(
        include_top=False, weights=None, alpha=0.35, input_shape=(None, None, 3)
    )
    path = tmp_path / file_name
    plain.save_weights(path) if file_name.endswith(".weights.h5") else plain.save(path)
    model = tiny_model(weights=str(path))

    plain_layers = {layer.name: layer for layer in plain.layers}
    matched = 0
    for layer in model.backbone.layers:
        if not layer.weights:
            continue
        for got, want in zip(
            layer.get_weights(), plain_layers[layer.name].get_weights(), strict=True
        ):
            np.testing.assert_array_equal(got, want)
            matched += 1
    assert matched == len(model.backbone.weights)


def test_weight_mismatch_names_the_layers():
    source = keras.Sequential([keras.Input((4, 4, 3)), layers.Conv2D(2, 1, name="conv_a")])
    target = keras.Sequential(
        [keras.Input((4, 4, 3)), layers.Conv2D(3, 1, name="conv_a"), layers.Dense(2, name="head")]
    )
    with pytest.raises(ValueError, match=r"missing layers \['head'\].*conv_a"):
        backbones.copy_weights_by_name(source, target)


def test_imagenet_download_failure_names_the_alternatives(monkeypatch):
    def offline(*args, **kwargs):
        if kwargs.get("weights") == "imagenet":
            raise OSError("URL fetch failure")
        return original(*args, **kwargs)

    original = keras.applications.MobileNetV2
    monkeypatch.setattr(keras.applications, "MobileNetV2", offline)
    with pytest.raises(backbones.PretrainedWeightsUnavailableError, match="weights=None"):
        tiny_model(weights="imagenet")


@pytest.mark.parametrize(
    "options, message",
    [
        ({"backbone": "vgg16"}, "mobilenetv2"),
        ({"output_stride": 4}, "output_stride=4"),
        ({"weights": "backbone.npz"}, "weights='backbone.npz'"),
    ],
)
def test_invalid_arguments_are_named(options, message):
    with pytest.raises(ValueError, match=message):
        tiny_model(**options)
