import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from keras import layers
from tiny_deeplab import random_images, tiny_model

from faceparsing.classes import NUM_CLASSES
from faceparsing.model import cost, deeplabv3plus


@pytest.mark.parametrize(
    "backbone, output_stride",
    [
        ("mobilenetv2", 16),
        ("mobilenetv2", 8),
        ("mobilenetv2", 32),
        ("resnet50", 16),
        ("resnet50", 8),
        ("resnet101", 16),
        ("xception", 16),
        ("xception", 8),
        ("mobilenetv3large", 16),
        ("mobilenetv3small", 32),
    ],
)
def test_output_shape_dtype_and_strides(backbone, output_stride):
    model = tiny_model(backbone, output_stride)
    for height, width in [(40, 56), (48, 48)]:
        logits = model(random_images(2, height, width, 3))
        assert tuple(logits.shape) == (2, height, width, NUM_CLASSES)
        assert keras.backend.standardize_dtype(logits.dtype) == "float32"

    # Xception's 'valid' entry convs trim a pixel or two: allow one less.
    features = keras.Model(
        model.input,
        [model.get_layer("aspp").input, model.get_layer("decoder").input[1]],
    )
    high_level, low_level = features(random_images(1, 64, 64, 3))
    for feature, stride in [(high_level, output_stride), (low_level, 4)]:
        assert all(64 // stride - 1 <= size <= 64 // stride for size in feature.shape[1:3])


@pytest.mark.parametrize("backbone", ["mobilenetv2", "mobilenetv3large"])
def test_save_and_load_without_custom_objects(tmp_path, backbone):
    model = tiny_model(backbone, output_stride=8)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, deeplabv3plus.DeepLabV3Plus)
    assert loaded.get_config() == model.get_config()
    images = random_images(1, 40, 56, 3)
    np.testing.assert_allclose(loaded(images), model(images), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fast_atrous", [True, False])
def test_graph_traced_for_any_size_gives_the_same_logits(fast_atrous):
    # ONNX export traces one TensorFlow graph whose height and width are unknown.
    import tensorflow as tf

    model = tiny_model(fast_atrous=fast_atrous)
    any_size = tf.TensorSpec((None, None, None, 3), tf.float32)
    graph = tf.function(lambda images: model(images), input_signature=[any_size])
    for shape in [(1, 40, 56, 3), (2, 37, 29, 3)]:
        images = random_images(*shape)
        np.testing.assert_allclose(graph(images), model(images), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("policy", "compute_dtype"), [("mixed_float16", "float16"), ("mixed_bfloat16", "bfloat16")]
)
def test_mixed_precision_gives_float32_logits(policy, compute_dtype):
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = tiny_model()
        logits = model(random_images(1, 40, 56, 3))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.compute_dtype == compute_dtype  # the policy took effect
    assert model.get_layer("logits").compute_dtype == compute_dtype
    assert keras.backend.standardize_dtype(logits.dtype) == "float32"


def test_freeze_options():
    frozen = tiny_model(freeze_backbone=True)
    backbone_ids = {id(w) for w in frozen.backbone.weights}
    assert frozen.trainable_weights
    assert not any(id(w) in backbone_ids for w in frozen.trainable_weights)

    model = tiny_model(freeze_batchnorm=True)
    for layer in model.backbone.layers:
        expected = not isinstance(layer, layers.BatchNormalization)
        assert layer.trainable == expected, layer.name
    assert model.get_layer("aspp").blocks["projection"].norm.trainable


def test_batchnorm_momentum_reaches_backbone_and_head():
    default = tiny_model()
    assert default.backbone.get_layer("bn_Conv1").momentum == 0.999  # MobileNetV2's own
    model = tiny_model(batchnorm_momentum=0.9)
    momenta = {
        layer.momentum
        for layer in cost._all_layers(model)
        if isinstance(layer, layers.BatchNormalization)
    }
    assert momenta == {0.9}
    assert deeplabv3plus.DeepLabV3Plus.from_config(model.get_config()).batchnorm_momentum == 0.9


@pytest.mark.slow
def test_jax_backend_predict_and_train_step():
    script = textwrap.dedent(
        """
        import numpy as np
        import keras
        from faceparsing.model import deeplabv3plus
        assert keras.backend.backend() == "jax"
        model = deeplabv3plus.DeepLabV3Plus(backbone="mobilenetv2", weights=None, alpha=0.35,
                                      aspp_filters=8, decoder_filters=8, low_level_filters=4)
        images = np.random.uniform(0, 255, (2, 24, 40, 3)).astype("float32")
        labels = np.random.randint(0, 19, (2, 24, 40)).astype("int32")
        assert model.predict(images, verbose=0).shape == (2, 24, 40, 19)
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        loss = model.train_on_batch(images, labels)
        assert np.isfinite(loss), loss
        print("ok")
        """
    )
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")
