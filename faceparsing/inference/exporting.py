"""Export a checkpoint for deployment: Keras, TensorFlow SavedModel, TFLite or ONNX.

The exported SavedModel/TFLite take float32 RGB in [0, 255] of shape
(1, S, S, 3) and return logits (1, S, S, C), C the checkpoint's classes (19
for CelebAMask-HQ). The ONNX model takes any batch (and, unless a size is
given, any height and width): input `images` (B, H, W, 3), output `logits`
(B, H, W, C); its metadata names the classes (`class_names`, `class_set`).
"""

import importlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import keras
import numpy as np

from faceparsing import __version__
from faceparsing.checkpoints import load_checkpoint, run_config
from faceparsing.classes import CELEBAMASK_HQ, class_set_of
from faceparsing.errors import ConfigError, UserError
from faceparsing.files import atomic_path, atomic_write_bytes
from faceparsing.model.deeplabv3plus import DeepLabV3Plus

EXPORT_FORMATS = ("keras", "savedmodel", "tflite", "onnx")
QUANTIZATIONS = ("none", "float16", "dynamic")

ONNX_INPUT_NAME = "images"
ONNX_OUTPUT_NAME = "logits"
ONNX_FREE_AXES = ("batch", "height", "width")  # names of the axes left free in both
# Opset 17 runs on every onnxruntime since 1.14 and covers each op of the model.
ONNX_OPSET = 17
# What Keras' ONNX export needs on TensorFlow (tf2onnx converts, onnx writes).
ONNX_PACKAGES = ("tf2onnx", "onnx")
ONNX_INSTALL_HINT = (
    'pip install -e ".[onnx]" in the checkout (or pip install tf2onnx onnx onnxruntime)'
)


class MissingPackageError(UserError, ModuleNotFoundError):
    """An optional package that an export format needs is not installed."""


def fixed_size_model(model, size):
    """Wrap `model` with a static (size, size, 3) input, as TFLite needs."""
    inputs = keras.Input((size, size, 3), batch_size=1, name="image")
    return keras.Model(inputs, model(inputs), name=f"{model.name}_{size}")


def export_savedmodel(model, out_dir):
    model.export(str(out_dir), format="tf_saved_model", verbose=False)


def export_tflite(model, out_path, quantize):
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as saved_dir:
        export_savedmodel(model, saved_dir)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_dir)
        if quantize != "none":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        flatbuffer = converter.convert()
    atomic_write_bytes(out_path, flatbuffer)


def require_packages(names, purpose, install_hint):
    """Import each of `names`; a missing one (itself or through another) raises
    MissingPackageError naming it."""
    for name in names:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as error:
            missing = (error.name or "").split(".")[0]
            if missing not in names:
                raise
            raise MissingPackageError(
                f"{purpose} needs the package {missing!r}, which is not installed: {install_hint}",
                name=missing,
            ) from None


def inference_twin(model):
    """The same DeepLabV3+ and weights, in float32, with stock dilated convolutions.

    tf2onnx turns the integer floor-modulo of the space-to-batch path
    (`fast_atrous`, a training speed-up) into a truncating remainder, which is
    wrong for negative operands, so a graph traced for any input size pads
    wrongly; ONNX has dilated convolutions of its own. Other models are
    returned as they are.
    """
    if not isinstance(model, DeepLabV3Plus):
        return model
    twin = DeepLabV3Plus.from_config({**model.get_config(), "fast_atrous": False})
    twin.set_weights(model.get_weights())
    return twin


def export_onnx(model, out_path, image_size, metadata):
    """Write `model` as ONNX: any batch, and any height and width unless `image_size`.

    Needs ONNX_PACKAGES (see `require_packages`).
    """
    spec = keras.InputSpec(
        shape=(None, image_size, image_size, 3), dtype="float32", name=ONNX_INPUT_NAME
    )
    with atomic_path(out_path) as temp_path, warnings.catch_warnings():
        # Keras' numpy-2 patch of tf2onnx touches `np.object`, which warns.
        warnings.filterwarnings("ignore", message=".*np.object", category=FutureWarning)
        inference_twin(model).export(
            str(temp_path), format="onnx", input_signature=[spec], opset_version=ONNX_OPSET,
            verbose=False,
        )  # fmt: skip
        finish_onnx(temp_path, metadata)


def finish_onnx(path, metadata):
    """Name the output ONNX_OUTPUT_NAME and the free axes ONNX_FREE_AXES; add `metadata`.

    tf2onnx names the output after a TensorFlow op ("Identity:0") and the free
    axes "unk__N"; deployments read these names, so they are made plain.
    """
    import onnx

    proto = onnx.load(str(path))
    graph = proto.graph
    (image,) = graph.input
    (logits,) = graph.output
    for node in graph.node:
        node.input[:] = [ONNX_OUTPUT_NAME if name == logits.name else name for name in node.input]
        node.output[:] = [ONNX_OUTPUT_NAME if name == logits.name else name for name in node.output]
    logits.name = ONNX_OUTPUT_NAME
    axis_names = {}
    for value in (image, logits):
        dims = value.type.tensor_type.shape.dim[:3]
        for dim, axis_name in zip(dims, ONNX_FREE_AXES, strict=True):
            if dim.HasField("dim_param"):
                axis_names[dim.dim_param] = axis_name
    for value in (*graph.input, *graph.output, *graph.value_info):
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_param") and dim.dim_param in axis_names:
                dim.dim_param = axis_names[dim.dim_param]
    onnx.helper.set_model_props(proto, metadata)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def onnx_metadata(image_size, class_set=CELEBAMASK_HQ):
    """What a deployment reads from the ONNX file: the training size and the class set
    (`class_names` comma-separated by id; `class_set` its JSON with palette and flip pairs)."""
    return {
        "image_size": str(image_size),
        "class_names": ",".join(class_set.names),
        "class_set": json.dumps(class_set.to_config()),
        "input": "float32 RGB in [0, 255], (batch, height, width, 3)",
        "output": "logits (batch, height, width, classes); argmax over the last axis",
        "faceparsing_version": __version__,
    }


def onnx_agreement(model, onnx_path, batches):
    """Compare an ONNX file's logits with `model`'s, run by onnxruntime on the CPU.

    Args:
        model: keras.Model. The model the file was exported from.
        onnx_path: str or Path. The ONNX file.
        batches: iterable of float32 arrays (B, H, W, 3), RGB in [0, 255].

    Returns:
        dict: `relative_max_error` (largest absolute difference over the largest
        absolute Keras logit, over all batches), `argmax_agreement` (fraction of
        pixels given the same class) and `pixels`.
    """
    require_packages(("onnxruntime",), "running an ONNX file", ONNX_INSTALL_HINT)
    import onnxruntime

    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    largest_difference = largest_logit = 0.0
    agreeing = pixels = 0
    for images in batches:
        expected = keras.ops.convert_to_numpy(model.predict_on_batch(images))
        (actual,) = session.run([ONNX_OUTPUT_NAME], {ONNX_INPUT_NAME: images})
        largest_difference = max(largest_difference, float(np.abs(actual - expected).max()))
        largest_logit = max(largest_logit, float(np.abs(expected).max()))
        agreeing += int((actual.argmax(-1) == expected.argmax(-1)).sum())
        pixels += expected[..., 0].size
    return {
        "relative_max_error": largest_difference / max(largest_logit, 1e-12),
        "argmax_agreement": agreeing / max(pixels, 1),
        "pixels": pixels,
    }


def replace_folder(out, write):
    """Call `write(folder)` on a staging folder beside `out`, then move it into place."""
    staging = Path(
        tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent if out.parent.exists() else None)
    )
    try:
        write(staging / "model")
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging / "model", out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def export(checkpoint, export_format, out, quantize="none", image_size=None):
    """Write `checkpoint` in `export_format` to `out`; return the output path.

    Args:
        checkpoint: str or Path. The `.keras` checkpoint.
        export_format: str. One of `EXPORT_FORMATS`.
        out: str or Path. Output file (.keras/.tflite) or folder (savedmodel).
        quantize: str. TFLite weights: "none", "float16" or "dynamic" (int8).
        image_size: int or None. Fixed input size; defaults to the run's
            (for ONNX: any size, the run's being recorded in the metadata).
    """
    if keras.backend.backend() != "tensorflow" and export_format != "keras":
        raise ConfigError(f"--format {export_format} needs KERAS_BACKEND=tensorflow")
    if quantize != "none" and export_format != "tflite":
        raise ConfigError("--quantize applies to --format tflite only")
    if image_size is not None and image_size < 1:
        raise ConfigError(f"--image_size must be a positive number of pixels, got {image_size}")
    if export_format == "onnx":
        require_packages(ONNX_PACKAGES, "--format onnx", ONNX_INSTALL_HINT)
    out = Path(out)
    model = load_checkpoint(checkpoint)
    if export_format == "keras":
        with atomic_path(out) as temp_path:
            model.save(temp_path)
        return out
    if export_format == "onnx":
        training_size = run_config(checkpoint).image_size
        metadata = onnx_metadata(image_size or training_size, class_set_of(model))
        export_onnx(model, out, image_size, metadata)
        return out
    model = fixed_size_model(model, image_size or run_config(checkpoint).image_size)
    if export_format == "tflite":
        export_tflite(model, out, quantize)
    else:
        replace_folder(out, lambda folder: export_savedmodel(model, folder))
    return out
