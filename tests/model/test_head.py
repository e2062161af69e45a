"""head: ASPP and the decoder as layers; legacy: checkpoints saved before them."""

import json

import keras
import numpy as np
from tiny_deeplab import random_images, tiny_model

from faceparsing.checkpoints import load_checkpoint
from faceparsing.model.deeplabv3plus import DeepLabV3Plus
from faceparsing.model.head import DeepLabV3PlusDecoder, SpatialPyramidPooling
from faceparsing.training.trainer import initialise_from


def test_aspp_and_decoder_are_layers_of_their_own_in_another_model(tmp_path):
    features, low_level = keras.Input((8, 8, 12)), keras.Input((32, 32, 6))
    x = SpatialPyramidPooling(rates=(2, 3, 4), filters=8, dropout=0.2, name="aspp")(features)
    assert x.shape == (None, 8, 8, 8)
    x = DeepLabV3PlusDecoder(filters=5, low_level_filters=4, name="decoder")([x, low_level])
    assert x.shape == (None, 32, 32, 5)
    model = keras.Model([features, low_level], x)
    inputs = [np.random.default_rng(0).normal(size=s).astype("float32") for s in
              [(2, 8, 8, 12), (2, 32, 32, 6)]]  # fmt: skip
    expected = model.predict_on_batch(inputs)
    model.save(tmp_path / "head.keras")
    loaded = keras.saving.load_model(tmp_path / "head.keras")
    np.testing.assert_allclose(loaded.predict_on_batch(inputs), expected, rtol=1e-5, atol=1e-5)
    aspp = loaded.get_layer("aspp")
    assert aspp.get_config()["rates"] == (2, 3, 4) and aspp.get_config()["dropout"] == 0.2
    assert sorted(aspp.blocks) == ["conv_1x1", "conv_rate_2", "conv_rate_3", "conv_rate_4",
                                   "pooling_conv", "projection"]  # fmt: skip


def test_a_model_with_the_head_layers_round_trips_through_keras(tmp_path):
    model = tiny_model()
    assert model.head == "layers" and model.get_config()["head"] == "layers"
    images = random_images(2, 40, 48, 3)
    expected = model.predict_on_batch(images)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert loaded.head == "layers"
    np.testing.assert_allclose(loaded.predict_on_batch(images), expected, rtol=1e-5, atol=1e-5)


def test_a_checkpoint_saved_before_the_head_layers_predicts_as_it_did(fixtures_dir):
    source = load_checkpoint(fixtures_dir / "main_7a2b71b_19class.keras")  # a flat head
    assert source.head == "flat"
    expected = json.loads((fixtures_dir / "main_7a2b71b_19class.expected.json").read_text())
    images = (np.arange(2 * 32 * 40 * 3).reshape(2, 32, 40, 3) % 256).astype("float32")
    logits = np.asarray(source.predict_on_batch(images))
    np.testing.assert_allclose(logits[0, 0, 0], expected["logits_at_0_0"], rtol=1e-4, atol=1e-4)
    # --init from it into today's layered head: the same function, exactly.
    layered = DeepLabV3Plus.from_config({**source.get_config(), "head": "layers"})
    initialise_from(layered, source, "fixture")
    np.testing.assert_array_equal(np.asarray(layered.predict_on_batch(images)), logits)
