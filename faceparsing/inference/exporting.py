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

Quantized exports: float16 weights (TFLite, ONNX), dynamic-range int8 weights
(TFLite) and int8 weights and activations calibrated on a few hundred images
(TFLite, ONNX: onnxruntime's static quantization, QDQ, per channel). int8
files keep the stem and the logits head in float (`float_node_names`), so they
keep their labels on photos unlike the calibration set, and the ONNX file's
weights use 7 bits, so every x86 CPU gives the same labels (docs/deployment.md).
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
from faceparsing.data.layout import split_ids
from faceparsing.data.release import MAPPING_FILE, image_path
from faceparsing.errors import ConfigError, UserError
from faceparsing.files import atomic_path, atomic_write_bytes
from faceparsing.images import list_images, read_rgb_resized
from faceparsing.model.deeplabv3plus import DeepLabV3Plus

EXPORT_FORMATS = ("keras", "savedmodel", "tflite", "onnx")
QUANTIZATIONS = ("none", "float16", "dynamic", "int8")
# The quantizations each format has (keras and savedmodel: none).
FORMAT_QUANTIZATIONS = {"tflite": QUANTIZATIONS, "onnx": ("none", "float16", "int8")}
# Calibration images for int8: a few hundred cover the activation ranges of
# faces (onnxruntime's and TFLite's guides suggest 100-500).
CALIBRATION_IMAGES = 200
# Images run through the model per calibration step, and how many steps'
# activations onnxruntime holds before merging their ranges (memory bound).
CALIBRATION_BATCH = 4
CALIBRATION_MERGE_EVERY = 8
# int8 keeps in float every node computed before the features reach this stride (the stem):
# its errors are carried through every later layer, and on photos unlike the calibration set they
# flipped 2% of the labels from the first convolution alone; those layers are few channels wide and
# memory bound, so int8 gained little time there (docs/deployment.md, issue 31).
INT8_FLOAT_BELOW_STRIDE = 8

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
            flatbuffer = _tflite_int8(converter)
        else:
            flatbuffer = converter.convert()
    atomic_write_bytes(out_path, flatbuffer)


def _tflite_int8(converter):
    """Calibrate and quantize with the stem and head in float (`float_node_names`), through
    TFLite's selective quantization: the quantization debugger's denylist of nodes."""
    import tensorflow as tf

    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=converter.representative_dataset
    )
    names = float_node_names(*_tflite_nodes(debugger.calibrated_model))
    debugger.options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=names)
    return debugger.get_nondebug_quantized_model()


def _tflite_nodes(flatbuffer):
    """`float_node_names`' nodes and output of a float TFLite model, each op named after its
    output tensor (what the denylist names); strides from the ops' input and output heights."""
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_content=flatbuffer)
    tensors = {tensor["index"]: tensor for tensor in interpreter.get_tensor_details()}

    def height(index):
        shape = tensors[index]["shape"]
        return int(shape[1]) if len(shape) == 4 else 0

    nodes = []
    # The debugger reads ops the same way (_get_ops_details); they come in execution order.
    for op in interpreter._get_ops_details():
        inputs = [tensors[i]["name"] for i in op["inputs"] if i >= 0]
        outputs = [tensors[i]["name"] for i in op["outputs"]]
        stride = height(op["inputs"][0]) // max(height(op["outputs"][0]), 1) or 1
        is_convolution = op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D")
        nodes.append((outputs[0], is_convolution, inputs, outputs, stride))
    return nodes, tensors[interpreter.get_output_details()[0]["index"]]["name"]


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


class _CalibrationReader:
    """onnxruntime's CalibrationDataReader protocol over an array of images, in batches;
    `set_range` lets the calibrator read it a few batches at a time."""

    def __init__(self, images, batch_size=CALIBRATION_BATCH):
        self.batches = np.array_split(images, max(1, len(images) // batch_size))
        self.set_range(0, len(self.batches))

    def __len__(self):
        return len(self.batches)

    def set_range(self, start_index, end_index):
        self._pending = iter(self.batches[start_index:end_index])

    def get_next(self):
        batch = next(self._pending, None)
        return None if batch is None else {ONNX_INPUT_NAME: batch}

    def stride(self, most=CALIBRATION_MERGE_EVERY):
        """The most batches, at most `most`, that divide the batches evenly."""
        return max(d for d in range(1, min(most, len(self)) + 1) if len(self) % d == 0)


def quantize_onnx(float_path, out_path, quantize, calibration=None):
    """Write a float16 or int8 copy of the float ONNX file `float_path`, metadata kept.

    int8 is onnxruntime's static quantization: QDQ format (runs on every
    execution provider), int8 weights per output channel in 7 bits and uint8
    activations whose ranges are the min/max over `calibration` (float32
    (N, S, S, 3)); `int8_float_nodes` stay in float.
    """
    import onnx

    metadata = {prop.key: prop.value for prop in onnx.load(str(float_path)).metadata_props}
    with atomic_path(out_path) as temp_path:
        if quantize == "float16":
            from onnxruntime.transformers.float16 import convert_float_to_float16

            proto = convert_float_to_float16(onnx.load(str(float_path)), keep_io_types=True)
            onnx.save(proto, str(temp_path))
        else:
            _quantize_onnx_int8(float_path, temp_path, calibration)
        proto = onnx.load(str(temp_path))
        onnx.helper.set_model_props(proto, {**metadata, "quantization": quantize})
        onnx.save(proto, str(temp_path))


def _quantize_onnx_int8(float_path, out_path, calibration):
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as folder:
        # Folds batch norms and infers shapes, as onnxruntime's guide asks first
        # (ONNX's own shape inference: the symbolic one gives up on the free batch).
        prepared = Path(folder) / "prepared.onnx"
        quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)
        reader = _CalibrationReader(calibration)
        # uint8 activations with int8 weights: the pairing x86 CPUs multiply natively
        # (AVX2, VNNI); on the 2-core AMD EPYC (AVX2) it ran 20-28% faster than int8
        # activations at 512 with the same argmax agreement on the demo model (98.7%).
        # reduce_range: 7-bit weights. Without VNNI (AVX2, AVX-512 before VNNI) onnxruntime
        # multiplies them with vpmaddubsw, which saturates a pair of uint8 x int8 products at
        # 32767; 255 * 127 * 2 overflows, 255 * 64 * 2 cannot. With 8-bit weights the demo
        # model's file agreed 89.3% with float on real photos on an AVX2 CPU, 97.7% with VNNI.
        # Ranges are merged every few batches (CalibStridedMinMax), so memory stays bounded and
        # every image counts. (CalibMaxIntermediateOutputs, onnxruntime <= 1.32, discards each
        # full group of outputs unmerged: only the last few images would set the ranges.)
        quantize_static(
            str(prepared), str(out_path), reader,
            quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            nodes_to_exclude=int8_float_nodes(onnx.load(str(prepared))),
            extra_options={"CalibStridedMinMax": reader.stride()},
        )  # fmt: skip


def int8_float_nodes(proto, below_stride=INT8_FLOAT_BELOW_STRIDE):
    """Names of the nodes of an ONNX graph that int8 quantization leaves in float
    (`float_node_names`, strides read from the nodes' `strides` attributes)."""
    nodes = [
        (node.name, node.op_type == "Conv", node.input, node.output, _onnx_stride(node))
        for node in proto.graph.node  # ONNX lists nodes in topological order
    ]
    return float_node_names(nodes, proto.graph.output[0].name, below_stride)


def _onnx_stride(node):
    if node.op_type not in ("Conv", "MaxPool", "AveragePool"):
        return 1
    return max((max(a.ints) for a in node.attribute if a.name == "strides"), default=1)


def float_node_names(nodes, output, below_stride=INT8_FLOAT_BELOW_STRIDE):
    """The nodes an int8 model keeps in float: the stem and the logits head.

    The stem is every node whose output is at a stride below `below_stride`
    from the input along some path (none when the graph never reaches that
    stride). The head is the last convolution before `output` and the nodes
    after it: 8-bit logits change the argmax wherever two classes are close,
    and on unfamiliar photos many pixels are.

    Args:
        nodes: list of (name, is_convolution, input names, output names,
            stride) in topological order; stride is the node's own
            downsampling factor (1 for most).
        output: str. The name of the graph's output.
        below_stride: int. The stem ends where the features reach this stride.
    """
    stride_of, strides, producers = {}, {}, {}
    for name, _, inputs, outputs, stride in nodes:
        strides[name] = stride * max((stride_of.get(i, 1) for i in inputs), default=1)
        stride_of.update(dict.fromkeys(outputs, strides[name]))
        producers.update(dict.fromkeys(outputs, (name, inputs)))
    stem = []
    if max(strides.values(), default=1) >= below_stride:
        stem = [name for name, stride in strides.items() if stride < below_stride]
    convolutions = {name for name, is_convolution, *_ in nodes if is_convolution}
    head, tensor = [], output
    while tensor in producers:
        name, inputs = producers[tensor]
        head.append(name)
        if name in convolutions:
            return stem + [name for name in head[::-1] if name not in stem]
        tensor = inputs[0] if inputs else None
    return stem


def calibration_images(source, image_size, count=CALIBRATION_IMAGES):
    """Up to `count` images, spread evenly over `source`, as float32 (N, S, S, 3) in [0, 255].

    Args:
        source: str or Path. A dataset root in the release layout (its train
            split is used), a folder of images or a glob pattern.
        image_size: int. The export's input size S.
        count: int. How many images at most.
    """
    source = Path(source)
    if (source / MAPPING_FILE).is_file():
        paths = [image_path(source, image_id) for image_id in split_ids(source, "train")]
    else:
        paths = list_images(source)
    if not paths:
        raise ConfigError(f"--calibration {source}: no images found (expected a folder of images)")
    chosen = np.unique(np.linspace(0, len(paths) - 1, min(count, len(paths))).round().astype(int))
    return np.stack([read_rgb_resized(paths[i], image_size) for i in chosen]).astype("float32")


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
