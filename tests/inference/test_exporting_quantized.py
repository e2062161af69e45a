"""Quantized exports: float16 and int8 (calibrated) ONNX and TFLite files run and agree with Keras."""

import numpy as np
import onnx
import onnxruntime
import pytest

from faceparsing.checkpoints import load_checkpoint
from faceparsing.classes import NUM_CLASSES
from faceparsing.inference import exporting, quantization


@pytest.fixture(scope="module")
def keras_model(trained_run):
    return load_checkpoint(trained_run / "best.keras")


@pytest.fixture(scope="module")
def held_out_images(demo_root):
    """Faces the calibration did not see: the demo set's test split, at the tiny run's size."""
    from faceparsing.data.layout import open_layout

    layout = open_layout(demo_root)
    test_ids = layout.split_ids("test")[:4]
    assert test_ids
    return np.stack([layout.load_image(image_id, 32) for image_id in test_ids]).astype("float32")


def onnx_labels(path, images):
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (logits,) = session.run(["logits"], {"images": images})
    assert logits.shape == (*images.shape[:3], NUM_CLASSES)
    return logits.argmax(-1)


def quantized_ops(path):
    return {node.op_type for node in onnx.load(str(path)).graph.node} & {
        "QuantizeLinear", "DequantizeLinear", "Cast"
    }  # fmt: skip


@pytest.mark.slow
def test_int8_onnx_agrees_with_float_and_is_smaller(
    trained_run, demo_root, keras_model, held_out_images, tmp_path
):
    out = exporting.export(
        trained_run / "best.keras", "onnx", tmp_path / "int8.onnx", quantize="int8",
        calibration=demo_root, calibration_count=16,
    )  # fmt: skip
    floats = exporting.export(trained_run / "best.keras", "onnx", tmp_path / "float.onnx")
    assert {"QuantizeLinear", "DequantizeLinear"} <= quantized_ops(out)
    metadata = onnxruntime.InferenceSession(str(out)).get_modelmeta().custom_metadata_map
    assert metadata["quantization"] == "int8" and metadata["image_size"] == "32"
    expected = keras_model.predict_on_batch(held_out_images).argmax(-1)
    agreement = (onnx_labels(out, held_out_images) == expected).mean()
    # A one-epoch tiny model has small logit margins, so int8 flips more pixels
    # than on a trained model (>= 97% on the demo model, docs/deployment.md),
    # but far fewer than a model of another class order would (< 50%).
    assert agreement >= 0.8
    assert out.stat().st_size < 0.6 * floats.stat().st_size


@pytest.mark.slow
def test_float16_onnx_matches_keras(trained_run, keras_model, held_out_images, tmp_path):
    out = exporting.export(
        trained_run / "best.keras", "onnx", tmp_path / "f16.onnx", quantize="float16"
    )
    assert "Cast" in quantized_ops(out)
    agreement = exporting.onnx_agreement(keras_model, out, [held_out_images])
    assert agreement["relative_max_error"] < 0.02 and agreement["argmax_agreement"] >= 0.99


@pytest.mark.slow
def test_int8_tflite_runs_with_float_input(trained_run, demo_root, keras_model, held_out_images,
                                           tmp_path):  # fmt: skip
    import tensorflow as tf

    out = exporting.export(
        trained_run / "best.keras", "tflite", tmp_path / "int8.tflite", quantize="int8",
        calibration=demo_root / "CelebA-HQ-img", calibration_count=8,
    )  # fmt: skip
    interpreter = tf.lite.Interpreter(model_path=str(out))
    interpreter.allocate_tensors()
    (image_input,) = interpreter.get_input_details()
    assert image_input["dtype"] == np.float32 and tuple(image_input["shape"]) == (1, 32, 32, 3)
    tensor_types = {detail["dtype"] for detail in interpreter.get_tensor_details()}
    assert np.int8 in tensor_types
    labels = []
    for image in held_out_images:
        interpreter.set_tensor(image_input["index"], image[None])
        interpreter.invoke()
        labels.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0])
    expected = keras_model.predict_on_batch(held_out_images).argmax(-1)
    assert (np.argmax(labels, -1) == expected).mean() >= 0.8


def test_calibration_images_spread_over_a_folder(demo_root):
    images = quantization.calibration_images(demo_root / "CelebA-HQ-img", 24, count=5)
    assert images.shape == (5, 24, 24, 3) and images.dtype == np.float32
    assert 0 <= images.min() and images.max() <= 255
    # Spread evenly: the first and last files of the sorted folder are included.
    everything = quantization.calibration_images(demo_root / "CelebA-HQ-img", 24, count=1000)
    assert len(everything) == 24
    np.testing.assert_array_equal(images[0], everything[0])
    np.testing.assert_array_equal(images[-1], everything[-1])


def test_dataset_root_calibrates_on_its_train_split(demo_root):
    from faceparsing.data.layout import split_ids

    images = quantization.calibration_images(demo_root, 16, count=1000)
    assert len(images) == len(split_ids(demo_root, "train"))


def test_int8_needs_existing_calibration_images(trained_run, tmp_path):
    with pytest.raises(ValueError, match=r"--quantize int8 needs calibration images.*not found"):
        exporting.export(trained_run / "best.keras", "onnx", tmp_path / "m.onnx", quantize="int8",
                         calibration=tmp_path / "missing")  # fmt: skip
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no images found"):
        exporting.export(trained_run / "best.keras", "onnx", tmp_path / "m.onnx", quantize="int8",
                         calibration=empty)  # fmt: skip
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize(
    ("export_format", "options", "message"),
    [
        (
            "keras",
            {"quantize": "float16"},
            "--quantize float16 is not available for --format keras",
        ),
        ("onnx", {"quantize": "dynamic"}, "--quantize dynamic is not available for --format onnx"),
        ("onnx", {"image_size": 64, "dynamic_size": True}, "exclude each other"),
        ("onnx", {"quantize": "int8", "dynamic_size": True}, "int8 needs a fixed size"),
        ("onnx", {"calibration_count": 0}, "--calibration_images must be at least 1"),
    ],
)
def test_conflicting_options_are_refused(trained_run, tmp_path, export_format, options, message):
    with pytest.raises(ValueError, match=message):
        exporting.export(trained_run / "best.keras", export_format, tmp_path / "m", **options)


def _matmul_onnx(path, size=8):
    """A float ONNX file with the export's input/output names: logits = images @ W."""
    from onnx import TensorProto, helper, numpy_helper

    weights = np.random.default_rng(0).normal(size=(3, NUM_CLASSES)).astype("float32")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["images", "W"], ["logits"])], "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", size, size, 3])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", size, size, NUM_CLASSES])],
        [numpy_helper.from_array(weights, "W")],
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


@pytest.mark.parametrize("count", [48, 50, 7])
def test_int8_calibration_ranges_cover_every_calibration_image(tmp_path, count):
    # Only the first image is bright: its range must reach the input's quantization scale
    # however many batches the calibration is read in.
    _matmul_onnx(tmp_path / "float.onnx")
    images = np.full((count, 8, 8, 3), 10, "float32")
    images[0] = 200
    quantization.quantize_onnx(tmp_path / "float.onnx", tmp_path / "int8.onnx", "int8", images)
    model = onnx.load(str(tmp_path / "int8.onnx"))
    (quantize,) = [
        node
        for node in model.graph.node
        if node.op_type == "QuantizeLinear" and node.input[0] == "images"
    ]
    scales = {init.name: onnx.numpy_helper.to_array(init) for init in model.graph.initializer}
    assert float(scales[quantize.input[1]]) * 255 == pytest.approx(200, rel=0.02)


def _strided_onnx(path, size=16):
    """A float ONNX file shaped like the export: NHWC `images`, a Conv at strides 2, 4, 8 and 8,
    a 1x1 logits Conv and a bilinear upsampling back to the input size, NHWC `logits`."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    channels = [3, 4, 8, 8, 8]
    nodes = [helper.make_node("Transpose", ["images"], ["x0"], perm=[0, 3, 1, 2], name="to_nchw")]
    weights = []
    for index, (strides, kernel) in enumerate([(2, 3), (2, 3), (2, 3), (1, 1)]):
        weight = rng.normal(size=(channels[index + 1], channels[index], kernel, kernel))
        weights.append(numpy_helper.from_array(weight.astype("float32"), f"w{index}"))
        nodes += [
            helper.make_node("Conv", [f"x{index}", f"w{index}"], [f"c{index}"], name=f"conv{index}",
                             strides=[strides, strides], pads=[kernel // 2] * 4),
            helper.make_node("Relu", [f"c{index}"], [f"x{index + 1}"], name=f"relu{index}"),
        ]  # fmt: skip
    logit_weight = rng.normal(size=(NUM_CLASSES, channels[-1], 1, 1)).astype("float32")
    weights += [
        numpy_helper.from_array(logit_weight, "w_logits"),
        numpy_helper.from_array(np.array([1, 1, 8, 8], "float32"), "scales"),
    ]
    nodes += [
        helper.make_node("Conv", ["x4", "w_logits"], ["small_logits"], name="logits_conv"),
        helper.make_node("Resize", ["small_logits", "", "scales"], ["big_logits"], mode="linear",
                         name="upsample"),
        helper.make_node("Transpose", ["big_logits"], ["logits"], perm=[0, 2, 3, 1], name="to_nhwc"),
    ]  # fmt: skip
    graph = helper.make_graph(
        nodes, "strided",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", size, size, 3])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", size, size, NUM_CLASSES])],
        weights,
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def conv_weight_types(path):
    """{Conv node name: "int8" if its weights are dequantized from int8, else "float"}."""
    model = onnx.load(str(path))
    producers = {output: node for node in model.graph.node for output in node.output}
    return {
        node.name: "int8" if node.input[1] in producers else "float"
        for node in model.graph.node
        if node.op_type == "Conv"
    }


@pytest.fixture(scope="module")
def strided_int8(tmp_path_factory):
    folder = tmp_path_factory.mktemp("strided")
    _strided_onnx(folder / "float.onnx")
    images = np.random.default_rng(1).uniform(0, 255, (8, 16, 16, 3)).astype("float32")
    quantization.quantize_onnx(folder / "float.onnx", folder / "int8.onnx", "int8", images)
    return folder


def test_int8_keeps_the_stem_and_the_logits_head_in_float(strided_int8):
    # The stem (strides 2 and 4, before INT8_FLOAT_BELOW_STRIDE) and the logits head stay float:
    # on photos unlike the calibration set they flipped the most labels (docs/deployment.md).
    assert conv_weight_types(strided_int8 / "int8.onnx") == {
        "conv0": "float", "conv1": "float", "conv2": "int8", "conv3": "int8", "logits_conv": "float"
    }  # fmt: skip
    upsample = [n for n in onnx.load(str(strided_int8 / "int8.onnx")).graph.node
                if n.op_type == "Resize"]  # fmt: skip
    assert [node.input[0] for node in upsample] == ["small_logits"]  # float logits, not 8-bit


def test_int8_weights_cannot_saturate_avx2_pair_sums(strided_int8):
    # Without VNNI, x86 CPUs add two uint8 x int8 products in int16 (vpmaddubsw): a pair of
    # 255 * w must stay within 32767, so |w| <= 64 (7-bit weights) for every CPU to agree.
    model = onnx.load(str(strided_int8 / "int8.onnx"))
    weights = [onnx.numpy_helper.to_array(init) for init in model.graph.initializer
               if init.data_type == onnx.TensorProto.INT8]  # fmt: skip
    assert weights
    assert max(int(np.abs(w.astype(int)).max()) for w in weights) * 255 * 2 <= 32767


def test_int8_float_nodes_of_a_graph_without_a_stem_or_a_conv(tmp_path):
    _matmul_onnx(tmp_path / "float.onnx")
    assert quantization.int8_float_nodes(onnx.load(str(tmp_path / "float.onnx"))) == []


def _strided_keras_model(size=16):
    """The Keras twin of `_strided_onnx`: convolutions at strides 2, 4, 8 and 8, a 1x1 logits
    convolution and a bilinear upsampling back to the input size."""
    import keras
    from keras import layers

    inputs = keras.Input((size, size, 3), batch_size=1)
    x = inputs
    convolutions = [(4, 2, 3), (8, 2, 3), (8, 2, 3), (8, 1, 1)]  # (filters, strides, kernel)
    for index, (filters, strides, kernel) in enumerate(convolutions):
        x = layers.Conv2D(filters, kernel, strides, "same", activation="relu", name=f"c{index}")(x)
    x = layers.Conv2D(NUM_CLASSES, 1, name="logits")(x)
    return keras.Model(inputs, layers.UpSampling2D(8, interpolation="bilinear")(x))


def test_int8_tflite_keeps_the_stem_and_the_logits_head_in_float(tmp_path):
    import tensorflow as tf

    images = np.random.default_rng(2).uniform(0, 255, (8, 16, 16, 3)).astype("float32")
    exporting.export_tflite(_strided_keras_model(), tmp_path / "int8.tflite", "int8", images)
    interpreter = tf.lite.Interpreter(model_path=str(tmp_path / "int8.tflite"))
    tensors = {tensor["index"]: tensor for tensor in interpreter.get_tensor_details()}
    convolutions = [op for op in interpreter._get_ops_details() if op["op_name"] == "CONV_2D"]
    output_types = [tensors[op["outputs"][0]]["dtype"] for op in convolutions]
    assert output_types == [np.float32, np.float32, np.int8, np.int8, np.float32]
