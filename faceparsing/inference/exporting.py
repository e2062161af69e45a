"""Export a checkpoint for deployment: Keras, TensorFlow SavedModel, TFLite or ONNX.

Every graph is written at one input size S, the run's training size unless
another is given, because converters turn dilated convolutions into the
runtimes' own dilated convolutions only at a known size (at a free size ONNX
gets a space-to-batch detour that is 1.3-2.5x slower, docs/deployment.md).
`dynamic_size=True` leaves height and width free instead. The SavedModel and
TFLite models take float32 RGB in [0, 255] of shape (1, S, S, 3) and return
logits (1, S, S, C), C the checkpoint's classes (19 for CelebAMask-HQ);
the ONNX model takes any batch: input `images` (B, S, S, 3), output `logits`
(B, S, S, C); its metadata names the classes (`class_names`, `class_set`).

Quantized exports (float16, dynamic int8, calibrated int8) are made by
`faceparsing.inference.quantization`.
"""

import contextlib
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
from faceparsing.inference.quantization import (
    CALIBRATION_IMAGES,
    ONNX_INPUT_NAME,
    calibration_images,
    quantize_onnx,
    tflite_int8,
)
from faceparsing.model.deeplabv3plus import DeepLabV3Plus

EXPORT_FORMATS = ("keras", "savedmodel", "tflite", "onnx")
QUANTIZATIONS = ("none", "float16", "dynamic", "int8")
# The quantizations each format has (keras and savedmodel: none).
FORMAT_QUANTIZATIONS = {"tflite": QUANTIZATIONS, "onnx": ("none", "float16", "int8")}
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
    """Wrap `model` with a (1, size, size, 3) input (size None: free height and width)."""
    inputs = keras.Input((size, size, 3), batch_size=1, name="image")
    return keras.Model(inputs, model(inputs), name=f"{model.name}_{size or 'any'}")


def export_savedmodel(model, out_dir):
    model.export(str(out_dir), format="tf_saved_model", verbose=False)


def export_tflite(model, out_path, quantize, calibration=None):
    """Write `model` (a fixed_size_model) as TFLite.

    Args:
        quantize: str. "none", "float16" (weights), "dynamic" (int8 weights)
            or "int8" (int8 weights and activations, float32 input and output;
            the stem and the logits head float, as `float_node_names` picks).
        calibration: float32 array (N, S, S, 3) or None. Images for "int8".
    """
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as saved_dir:
        export_savedmodel(model, saved_dir)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_dir)
        if quantize != "none":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if quantize == "int8":
            converter.representative_dataset = lambda: ([image[None]] for image in calibration)
            flatbuffer = tflite_int8(converter)
        else:
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
    """Write `model` as ONNX: any batch, (image_size, image_size) or, for None, any size.

    Needs ONNX_PACKAGES (see `require_packages`).
    """
    spec = keras.InputSpec(
        shape=(None, image_size, image_size, 3), dtype="float32", name=ONNX_INPUT_NAME
    )
    with atomic_path(out_path) as temp_path, warnings.catch_warnings(), _scalar_add_fix():
        # Keras' numpy-2 patch of tf2onnx touches `np.object`, which warns.
        warnings.filterwarnings("ignore", message=".*np.object", category=FutureWarning)
        inference_twin(model).export(
            str(temp_path), format="onnx", input_signature=[spec], opset_version=ONNX_OPSET,
            verbose=False,
        )  # fmt: skip
        finish_onnx(temp_path, metadata)


@contextlib.contextmanager
def _scalar_add_fix():
    """Work around tf2onnx 1.17's transpose optimizer on Conv -> Add(scalar constant).

    MobileNetV3's hard sigmoid adds 3.0 to a convolution's output; the
    optimizer takes the scalar for a bias, fails on its empty shape and then
    skips the whole pass, leaving the NHWC <-> NCHW transposes around every
    convolution (142 in the fast recipe's graph, 1.3x slower). Such an add is
    handled as any other node instead.
    """
    from tf2onnx.optimizer.transpose_optimizer import TransposeOptimizer

    original = TransposeOptimizer._add_handler

    def add_handler(self, transpose, node):
        constant = node.inputs[1]
        if constant.is_const() and constant.get_tensor_value(as_list=False).ndim == 0:
            return self._handle_node_having_branches(transpose, node)
        return original(self, transpose, node)

    TransposeOptimizer._add_handler = add_handler
    try:
        yield
    finally:
        TransposeOptimizer._add_handler = original


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


def onnx_metadata(image_size, class_set=CELEBAMASK_HQ, quantize="none"):
    """What a deployment reads from the ONNX file: the training size, the class set
    (`class_names` comma-separated by id; `class_set` its JSON with palette and flip pairs)
    and the quantization. One entry per fact; a new fact is one more key."""
    return {
        "image_size": str(image_size),
        "class_names": ",".join(class_set.names),
        "class_set": json.dumps(class_set.to_config()),
        "input": "float32 RGB in [0, 255], (batch, height, width, 3)",
        "output": "logits (batch, height, width, classes); argmax over the last axis",
        "quantization": quantize,
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


def training_size(checkpoint, model):
    """The input size `checkpoint` was trained at: its run's config, else the model's
    own static input size, else the default config's."""
    if (Path(checkpoint).parent / "config.yaml").exists():
        return run_config(checkpoint).image_size
    height, width = tuple(model.input_shape)[1:3]
    if isinstance(height, int) and height == width:
        return height
    return run_config(checkpoint).image_size


def _check_export_options(export_format, quantize, image_size, dynamic_size, calibration_count):
    if keras.backend.backend() != "tensorflow" and export_format != "keras":
        raise ConfigError(f"--format {export_format} needs KERAS_BACKEND=tensorflow")
    allowed = FORMAT_QUANTIZATIONS.get(export_format, ("none",))
    if quantize not in allowed:
        raise ConfigError(
            f"--quantize {quantize} is not available for --format {export_format} "
            f"(it has: {', '.join(allowed)})"
        )
    if image_size is not None and image_size < 1:
        raise ConfigError(f"--image_size must be a positive number of pixels, got {image_size}")
    if calibration_count < 1:
        raise ConfigError(f"--calibration_images must be at least 1, got {calibration_count}")
    if image_size is not None and dynamic_size:
        raise ConfigError("--image_size and --dynamic_size exclude each other: pick one")
    if dynamic_size and export_format == "keras":
        raise ConfigError("--dynamic_size applies to savedmodel, tflite and onnx (keras is free)")
    if quantize == "int8" and dynamic_size:
        raise ConfigError("--quantize int8 needs a fixed size: drop --dynamic_size")
    if export_format == "onnx":
        require_packages(ONNX_PACKAGES, "--format onnx", ONNX_INSTALL_HINT)
        if quantize != "none":
            require_packages(("onnxruntime",), "--quantize", ONNX_INSTALL_HINT)


def _calibration_source(checkpoint, calibration):
    """The folder int8 calibrates on: `calibration`, else the run's dataset."""
    source = Path(calibration or run_config(checkpoint).data_root)
    if not source.exists():
        given = "--calibration" if calibration else "the run's data_root (pass --calibration DIR)"
        raise ConfigError(f"--quantize int8 needs calibration images: {given} {source} not found")
    return source


def export(
    checkpoint, export_format, out, quantize="none", image_size=None, dynamic_size=False,
    calibration=None, calibration_count=CALIBRATION_IMAGES,
):  # fmt: skip
    """Write `checkpoint` in `export_format` to `out`; return the output path.

    Args:
        checkpoint: str or Path. The `.keras` checkpoint.
        export_format: str. One of `EXPORT_FORMATS`.
        out: str or Path. Output file (.keras/.tflite/.onnx) or folder (savedmodel).
        quantize: str. One of `FORMAT_QUANTIZATIONS[export_format]`: "float16"
            weights, "dynamic" int8 weights (TFLite), "int8" weights and
            activations calibrated on `calibration`.
        image_size: int or None. Input size; defaults to the run's (`training_size`).
        dynamic_size: bool. Leave height and width free (slower: see the module
            docstring). Defaults to False.
        calibration: str, Path or None. int8 calibration images: a dataset root
            (train split) or a folder of images. Defaults to the run's data_root.
        calibration_count: int. Calibration images used at most.
    """
    _check_export_options(export_format, quantize, image_size, dynamic_size, calibration_count)
    calibration_source = (
        _calibration_source(checkpoint, calibration) if quantize == "int8" else None
    )
    out = Path(out)
    model = load_checkpoint(checkpoint)
    if export_format == "keras":
        with atomic_path(out) as temp_path:
            model.save(temp_path)
        return out
    trained_size = training_size(checkpoint, model)
    size = None if dynamic_size else image_size or trained_size
    calibration_set = None
    if calibration_source is not None:
        calibration_set = calibration_images(calibration_source, size, calibration_count)
    if export_format == "onnx":
        metadata = onnx_metadata(size or trained_size, class_set_of(model), quantize)
        if quantize == "none":
            export_onnx(model, out, size, metadata)
            return out
        with tempfile.TemporaryDirectory() as folder:
            float_path = Path(folder) / "float.onnx"
            export_onnx(model, float_path, size, metadata)
            quantize_onnx(float_path, out, quantize, calibration_set)
        return out
    model = fixed_size_model(inference_twin(model), size)
    if export_format == "tflite":
        export_tflite(model, out, quantize, calibration_set)
    else:
        replace_folder(out, lambda folder: export_savedmodel(model, folder))
    return out
