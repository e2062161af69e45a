import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
from keras import layers

from faceparsing.classes import NUM_CLASSES
from faceparsing.model import atrous, backbones, cost, deeplabv3plus

ROOT = Path(__file__).resolve().parents[1]
# Tiny heads keep every build and call fast on CPU.
TINY = {"aspp_filters": 8, "decoder_filters": 8, "low_level_filters": 4}
BACKBONE_OPTIONS = {"mobilenetv2": {"alpha": 0.35}}


def tiny_model(backbone="mobilenetv2", output_stride=16, **options):
    options = {**TINY, **BACKBONE_OPTIONS.get(backbone, {}), **options}
    options.setdefault("weights", None)
    return deeplabv3plus.DeepLabV3Plus(backbone=backbone, output_stride=output_stride, **options)


def random_images(*shape, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, shape).astype("float32")


# ---------------------------------------------------------------- atrous layers


def value_and_grads(layer, inputs):
    """Output and gradients of sum(output * weights) wrt input and kernel."""
    probe = np.random.default_rng(1).normal(size=layer.compute_output_shape(inputs.shape))
    kernel = layer.weights[0]
    if keras.backend.backend() == "jax":
        import jax

        def loss(x, k):
            outputs, _ = layer.stateless_call([k, *[w.value for w in layer.weights[1:]]], [], x)
            return (outputs * probe).sum(), outputs

        (_, outputs), grads = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(
            inputs, kernel.value
        )
        return np.asarray(outputs), [np.asarray(g) for g in grads]
    import tensorflow as tf

    x = tf.constant(inputs)
    with tf.GradientTape() as tape:
        tape.watch(x)
        outputs = layer(x)
        loss = tf.reduce_sum(outputs * probe)
    grads = tape.gradient(loss, [x, kernel.value])
    return outputs.numpy(), [g.numpy() for g in grads]


LAYER_PAIRS = {
    "conv": (layers.Conv2D, atrous.AtrousConv2D, {"filters": 5, "kernel_size": 3}),
    "depthwise": (layers.DepthwiseConv2D, atrous.AtrousDepthwiseConv2D, {"kernel_size": 3}),
    "separable": (
        layers.SeparableConv2D, atrous.AtrousSeparableConv2D, {"filters": 5, "kernel_size": 3},
    ),
}  # fmt: skip


@pytest.mark.parametrize("kind", sorted(LAYER_PAIRS))
@pytest.mark.parametrize(
    "size, rate",
    [
        ((12, 12), 3),  # divisible
        ((13, 10), 4),  # not divisible, non-square
        ((5, 7), 6),  # rate >= both sizes: centre tap only
        ((5, 20), 6),  # rate >= height only
        ((9, 11), (2, 3)),  # different rates per axis
    ],
)
def test_atrous_layer_matches_keras_dilated(kind, size, rate):
    plain_class, atrous_class, config = LAYER_PAIRS[kind]
    inputs = random_images(2, *size, 3) / 255.0
    plain = plain_class(padding="same", dilation_rate=rate, use_bias=True, **config)
    atrous = atrous_class(padding="same", dilation_rate=rate, use_bias=True, **config)
    plain.build(inputs.shape)
    atrous.build(inputs.shape)
    weights = [np.random.default_rng(2).normal(size=w.shape) for w in plain.weights]
    plain.set_weights(weights)
    atrous.set_weights(plain.get_weights())

    expected, expected_grads = value_and_grads(plain, inputs)
    actual, actual_grads = value_and_grads(atrous, inputs)

    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4)
    for got, want in zip(actual_grads, expected_grads, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="dynamic shapes are TF's")
@pytest.mark.parametrize("jit_compile", [False, True])
def test_atrous_conv_with_dynamic_shapes_in_tf_function(jit_compile):
    import tensorflow as tf

    plain = layers.Conv2D(4, 3, padding="same", dilation_rate=6)
    fast = atrous.AtrousConv2D(4, 3, padding="same", dilation_rate=6)
    plain.build((None, None, None, 3))
    fast.build((None, None, None, 3))
    fast.set_weights(plain.get_weights())
    signature = [tf.TensorSpec((None, None, None, 3), tf.float32)]
    call = tf.function(fast.__call__, input_signature=signature, jit_compile=jit_compile)
    for size in [(4, 5), (13, 8), (24, 24)]:
        inputs = random_images(1, *size, 3)
        np.testing.assert_allclose(call(inputs), plain(inputs), rtol=1e-4, atol=1e-3)


def test_atrous_and_plain_layers_share_weight_files(tmp_path):
    fast = tiny_model(fast_atrous=True)
    slow = tiny_model(fast_atrous=False)
    assert any(isinstance(layer, atrous.AtrousConv2D) for layer in fast.layers)
    assert not any(isinstance(layer, atrous.AtrousConv2D) for layer in slow.layers)
    fast.save_weights(tmp_path / "fast.weights.h5")
    slow.load_weights(tmp_path / "fast.weights.h5")
    images = random_images(1, 40, 56, 3)
    np.testing.assert_allclose(fast(images), slow(images), rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- model


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
        [model.get_layer("aspp_conv_1x1").input, model.get_layer("decoder_low_level").input],
    )
    high_level, low_level = features(random_images(1, 64, 64, 3))
    for feature, stride in [(high_level, output_stride), (low_level, 4)]:
        assert all(64 // stride - 1 <= size <= 64 // stride for size in feature.shape[1:3])


def test_save_and_load_without_custom_objects(tmp_path):
    model = tiny_model(output_stride=8)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, deeplabv3plus.DeepLabV3Plus)
    assert loaded.get_config() == model.get_config()
    images = random_images(1, 40, 56, 3)
    np.testing.assert_allclose(loaded(images), model(images), rtol=1e-5, atol=1e-5)


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


def test_mixed_precision_gives_float32_logits():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = tiny_model()
        logits = model(random_images(1, 40, 56, 3))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.get_layer("logits").compute_dtype == "float16"
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
    assert model.get_layer("aspp_projection_bn").trainable


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
