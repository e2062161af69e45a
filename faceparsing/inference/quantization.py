"""Quantized copies of an export: float16 weights, and int8 calibrated on a few hundred images.

float16 weights (TFLite, ONNX), dynamic-range int8 weights (TFLite) and int8 weights and
activations calibrated on images (TFLite; ONNX through onnxruntime's static quantization:
QDQ, per channel). int8 files keep the stem and the logits head in float
(`float_node_names`), so they keep their labels on photos unlike the calibration set, and
the ONNX file's weights use 7 bits, so every x86 CPU gives the same labels
(docs/deployment.md).
"""

import tempfile
from pathlib import Path

import numpy as np

from faceparsing.data.layout import split_ids
from faceparsing.data.release import MAPPING_FILE, image_path
from faceparsing.errors import ConfigError
from faceparsing.files import atomic_path
from faceparsing.images import list_images, read_rgb_resized

ONNX_INPUT_NAME = "images"
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


def tflite_int8(converter):
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
