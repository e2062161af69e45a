import keras
import pytest
from keras import layers
from tiny_deeplab import tiny_model

from faceparsing.model import cost


def test_multiply_adds_of_known_layers():
    model = keras.Sequential(
        [keras.Input((8, 8, 3)), layers.Conv2D(4, 3, padding="same", dilation_rate=2),
         layers.DepthwiseConv2D(3, padding="same"), layers.GlobalAveragePooling2D(),
         layers.Dense(2)]
    )  # fmt: skip
    assert cost.count_multiply_adds(model) == 64 * 3 * 3 * 3 * 4 + 64 * 3 * 3 * 4 + 4 * 2


def test_model_report():
    report = cost.model_report(tiny_model(), image_size=64)
    assert report["total_params"] >= report["trainable_params"] > 0
    assert report["multiply_adds"] > 0
    assert report["gmacs"] == pytest.approx(report["multiply_adds"] / 1e9)


def test_fast_recipe_costs_less_than_bisenet(repo):
    """configs/celebamask_hq_fast.yaml stays under BiSeNet-R18's 13.4 GMACs at 512."""
    from faceparsing.config import TrainConfig, apply_overrides, load_yaml
    from faceparsing.training.trainer import build_model

    path = repo / "configs" / "celebamask_hq_fast.yaml"
    config = apply_overrides(TrainConfig(), load_yaml(path), str(path))
    config = apply_overrides(config, {"weights": "none"}, "test")
    report = cost.model_report(build_model(config), image_size=config.image_size)
    assert config.image_size == 512 and config.backbone == "mobilenetv3large"
    assert 5 < report["gmacs"] <= 13
