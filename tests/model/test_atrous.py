import keras
import numpy as np
import pytest
from keras import layers
from tiny_deeplab import random_images, tiny_model

from faceparsing.model import atrous


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

    def aspp_convs(model):
        return [block.conv for block in model.get_layer("aspp").blocks.values()]

    assert any(isinstance(conv, atrous.AtrousConv2D) for conv in aspp_convs(fast))
    assert not any(isinstance(conv, atrous.AtrousConv2D) for conv in aspp_convs(slow))
    fast.save_weights(tmp_path / "fast.weights.h5")
    slow.load_weights(tmp_path / "fast.weights.h5")
    images = random_images(1, 40, 56, 3)
    np.testing.assert_allclose(fast(images), slow(images), rtol=1e-4, atol=1e-4)


def test_fast_atrous_auto_is_off_only_for_jax_on_cpu():
    from faceparsing.model.atrous import fast_atrous_for

    assert fast_atrous_for("auto", "tensorflow", ["cpu"])
    assert fast_atrous_for("auto", "jax", ["gpu", "gpu"])
    assert not fast_atrous_for("auto", "jax", ["cpu"])
    assert not fast_atrous_for("false", "tensorflow", ["gpu"])
    assert fast_atrous_for("true", "jax", ["cpu"])
