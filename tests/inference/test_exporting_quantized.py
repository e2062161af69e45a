"""Quantized exports: float16 and int8 (calibrated) ONNX and TFLite files run and agree with Keras."""

import numpy as np
import onnx
import onnxruntime
import pytest

from faceparsing.checkpoints import load_checkpoint
from faceparsing.classes import NUM_CLASSES
from faceparsing.inference import exporting


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
    images = exporting.calibration_images(demo_root / "CelebA-HQ-img", 24, count=5)
    assert images.shape == (5, 24, 24, 3) and images.dtype == np.float32
    assert 0 <= images.min() and images.max() <= 255
    # Spread evenly: the first and last files of the sorted folder are included.
    everything = exporting.calibration_images(demo_root / "CelebA-HQ-img", 24, count=1000)
    assert len(everything) == 24
    np.testing.assert_array_equal(images[0], everything[0])
    np.testing.assert_array_equal(images[-1], everything[-1])


def test_dataset_root_calibrates_on_its_train_split(demo_root):
    from faceparsing.data.layout import split_ids

    images = exporting.calibration_images(demo_root, 16, count=1000)
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
    exporting.quantize_onnx(tmp_path / "float.onnx", tmp_path / "int8.onnx", "int8", images)
    model = onnx.load(str(tmp_path / "int8.onnx"))
    (quantize,) = [
        node
        for node in model.graph.node
        if node.op_type == "QuantizeLinear" and node.input[0] == "images"
    ]
    scales = {init.name: onnx.numpy_helper.to_array(init) for init in model.graph.initializer}
    assert float(scales[quantize.input[1]]) * 255 == pytest.approx(200, rel=0.02)
