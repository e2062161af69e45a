"""Deployment latency of each shipped recipe: parameters, GMACs and CPU inference time.

For each recipe in configs/*.yaml (random weights, at its own image_size) and an optional
trained checkpoint: parameters, multiply-adds, and the median latency of one image (batch 1)
in Keras, onnxruntime and TFLite, at 1 and 2 threads, float and int8. BiSeNet-R18 (Yu et al.,
ECCV 2018; the ResNet-18 face parser most applications use) is rebuilt here in Keras with random
weights, so it is timed side by side in the same process on the same CPU.

All models are exported and loaded first; then every (model, runtime, threads) row is timed in
turn, one call each, over interleaved rounds, so a shared machine's noise hits every row alike.
Medians are printed with the load average before and after.

Usage:
    python benchmarks/bench_inference.py [--recipes celebamask_hq_fast celebamask_hq_mobile]
        [--backends onnxruntime tflite keras] [--threads 1 2] [--precisions float int8]
        [--checkpoint runs/demo/best.keras] [--no-bisenet] [--rounds 20]
    python benchmarks/bench_inference.py --recipes --checkpoint runs/demo/best.keras \
        --data-root data/demo   # + the checkpoint's float16 / int8 ONNX against its float ONNX
    python benchmarks/bench_inference.py --smoke   # tiny, a few seconds (used by the tests)
    python benchmarks/bench_inference.py --recipes --checkpoint runs/demo/best.keras \
        --data-root data/demo --ood photos/ --backends onnxruntime   # + other styles

With `--checkpoint` and `--data-root`, the checkpoint is also exported as float, float16 and int8
ONNX (int8 calibrated on the train split, `--calibration-images`), and each file is run over the
`--split` (default test) split: argmax agreement with the float file at the model's size, mIoU
against the labels at 512 (as evaluate.py measures) and file size. Then the same agreement on
images of other styles, which the model and that calibration never saw: the split's images
recoloured, blurred, noised and JPEG-compressed ("perturbed"), and each `--ood` folder (a dataset
root, a folder with train/ and val/ image folders, or a folder of images; one that is absent is
skipped with a message). For each, int8 is also calibrated on the style's own other images, as a
user calibrating on their photos would. The CPU's instruction sets head the output: int8 speed
and, without VNNI, int8 results depend on them.
"""

import argparse
import io
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import faceparsing  # noqa: F401  (sets TensorFlow's log level before Keras loads)

REPO = Path(__file__).resolve().parents[1]
BACKENDS = ("onnxruntime", "tflite", "keras")
PRECISIONS = ("float", "int8")
# int8 calibration only sets activation ranges; for timing a few random images do.
TIMING_CALIBRATION_IMAGES = 4
# Images of each other style the agreement is measured on (issue 31's check uses 50).
STYLE_IMAGES = 50
# The x86 instruction sets int8 speed and results depend on (/proc/cpuinfo flag: name).
INSTRUCTION_SETS = {"avx2": "AVX2", "avx512f": "AVX-512", "avx512_vnni": "AVX-512 VNNI",
                    "avx_vnni": "AVX-VNNI", "amx_int8": "AMX"}  # fmt: skip


def parse_args(argv):
    recipes = sorted(path.stem for path in (REPO / "configs").glob("*.yaml"))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="*", choices=recipes, default=recipes)
    parser.add_argument("--checkpoint", help="a trained .keras checkpoint to time as well")
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=list(PRECISIONS))
    parser.add_argument("--image-size", type=int, help="override every model's input size")
    parser.add_argument("--no-bisenet", action="store_true", help="skip the BiSeNet-R18 row")
    parser.add_argument("--dynamic-size", action="store_true",
                        help="also time ONNX exports with free height and width")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=15, help="timed calls per row")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls per row first")
    parser.add_argument("--data-root", help="with --checkpoint: measure quantized quality here")
    parser.add_argument("--split", default="test", help="split the quality is measured on")
    parser.add_argument("--calibration-images", type=int, default=200)
    parser.add_argument("--ood", nargs="*", default=[],
                        help="with --data-root: image sets of other styles to measure agreement on")  # fmt: skip
    parser.add_argument("--style-images", type=int, default=STYLE_IMAGES,
                        help="images of each other style measured")  # fmt: skip
    parser.add_argument("--smoke", action="store_true", help="tiny models, a few rounds")
    args = parser.parse_args(argv)
    if args.smoke:
        args.recipes, args.image_size, args.rounds, args.warmup = ["demo"], 32, 2, 1
        args.threads = [1]
    return args


# --------------------------------------------------------------------------
# BiSeNet-R18, as the popular face-parsing port builds it (inference output only).
# --------------------------------------------------------------------------


def _conv_bn_relu(x, filters, kernel_size, name, strides=1, relu=True):
    from keras import layers

    x = layers.Conv2D(filters, kernel_size, strides, padding="same", use_bias=False, name=name)(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x) if relu else x


def _basic_block(x, filters, strides, name):
    from keras import layers

    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = _conv_bn_relu(x, filters, 1, f"{name}_down", strides, relu=False)
    y = _conv_bn_relu(x, filters, 3, f"{name}_conv1", strides)
    y = _conv_bn_relu(y, filters, 3, f"{name}_conv2", relu=False)
    return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([shortcut, y]))


def _resnet18(x):
    """ResNet-18's features at strides 8, 16 and 32."""
    from keras import layers

    x = _conv_bn_relu(x, 64, 7, "conv1", strides=2)
    x = layers.MaxPooling2D(3, 2, padding="same", name="maxpool")(x)
    features = []
    for stage, filters in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            strides = 2 if stage > 1 and block == 0 else 1
            x = _basic_block(x, filters, strides, f"layer{stage}_{block}")
        features.append(x)
    return features[1:]


def _attention(x, name, hidden=None):
    """Channel attention from the global average (ARM, and FFM with a bottleneck)."""
    from keras import layers

    channels = x.shape[-1]
    weights = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_pool")(x)
    if hidden:
        weights = layers.Conv2D(hidden, 1, use_bias=False, activation="relu", name=f"{name}_fc1")(
            weights
        )
        weights = layers.Conv2D(channels, 1, use_bias=False, name=f"{name}_fc2")(weights)
    else:
        weights = layers.Conv2D(channels, 1, use_bias=False, name=f"{name}_attention")(weights)
        weights = layers.BatchNormalization(name=f"{name}_attention_bn")(weights)
    weights = layers.Activation("sigmoid", name=f"{name}_sigmoid")(weights)
    return layers.Multiply(name=f"{name}_apply")([x, weights])


def bisenet_r18(image_size=512, num_classes=19):
    """BiSeNet with a ResNet-18 context path (Yu et al., "BiSeNet: Bilateral Segmentation
    Network for Real-time Semantic Segmentation", ECCV 2018), laid out as the widely used
    face-parsing port: the stride-8 ResNet features serve as the spatial path, attention
    refinement on strides 16 and 32, feature fusion, a 3x3 256 head. Random weights, for timing.
    """
    import keras
    from keras import layers

    inputs = keras.Input((image_size, image_size, 3), name="images")
    x = layers.Rescaling(1 / 58.0, offset=-2.0, name="normalize")(inputs)  # ~ImageNet mean/std
    feat8, feat16, feat32 = _resnet18(x)
    context = layers.GlobalAveragePooling2D(keepdims=True, name="context_pool")(feat32)
    context = _conv_bn_relu(context, 128, 1, "context_conv")
    feat32 = _attention(_conv_bn_relu(feat32, 128, 3, "arm32_conv"), "arm32")
    feat32 = layers.Add(name="arm32_context")([feat32, context])
    feat32 = layers.UpSampling2D(2, name="arm32_up")(feat32)
    feat32 = _conv_bn_relu(feat32, 128, 3, "head32")
    feat16 = _attention(_conv_bn_relu(feat16, 128, 3, "arm16_conv"), "arm16")
    feat16 = layers.Add(name="arm16_sum")([feat16, feat32])
    feat16 = layers.UpSampling2D(2, name="arm16_up")(feat16)
    feat16 = _conv_bn_relu(feat16, 128, 3, "head16")
    fused = layers.Concatenate(name="ffm_concat")([feat8, feat16])
    fused = _conv_bn_relu(fused, 256, 1, "ffm_conv")
    fused = layers.Add(name="ffm_residual")([fused, _attention(fused, "ffm", hidden=64)])
    x = _conv_bn_relu(fused, 256, 3, "out_conv")
    x = layers.Conv2D(num_classes, 1, use_bias=False, name="logits")(x)
    outputs = layers.UpSampling2D(8, interpolation="bilinear", name="logits_upsample")(x)
    return keras.Model(inputs, outputs, name="bisenet_r18")


# --------------------------------------------------------------------------
# Models and their exports.
# --------------------------------------------------------------------------


def recipe_model(recipe, image_size):
    """The DeepLabV3Plus of configs/<recipe>.yaml with random weights, and its input size."""
    from faceparsing.config import TrainConfig, apply_overrides, load_yaml
    from faceparsing.training.trainer import build_model

    path = REPO / "configs" / f"{recipe}.yaml"
    config = apply_overrides(TrainConfig(), load_yaml(path), str(path))
    config = apply_overrides(config, {"weights": "none"}, "bench_inference")
    return build_model(config), image_size or config.image_size


def model_cost(model, image_size):
    """(parameters, GMACs) at a square input size."""
    from faceparsing.model.cost import count_multiply_adds, model_report
    from faceparsing.model.deeplabv3plus import DeepLabV3Plus

    if isinstance(model, DeepLabV3Plus):
        report = model_report(model, image_size)
        return report["total_params"], report["gmacs"]
    return model.count_params(), count_multiply_adds(model) / 1e9


def export_onnx_files(model, size, folder, precisions, dynamic):
    """{variant: path} of the model's ONNX exports (float, int8, float at a free size)."""
    import numpy as np

    from faceparsing.inference import exporting, quantization

    paths = {}
    float_path = folder / "float.onnx"
    exporting.export_onnx(model, float_path, size, exporting.onnx_metadata(size))
    if "float" in precisions:
        paths["float"] = float_path
    if "int8" in precisions:
        calibration = _random_images(TIMING_CALIBRATION_IMAGES, size, np)
        paths["int8"] = folder / "int8.onnx"
        quantization.quantize_onnx(float_path, paths["int8"], "int8", calibration)
    if dynamic:
        paths["float, free size"] = folder / "free.onnx"
        exporting.export_onnx(model, paths["float, free size"], None, exporting.onnx_metadata(size))
    return paths


def export_tflite_files(model, size, folder, precisions):
    import numpy as np

    from faceparsing.inference import exporting

    sized = exporting.fixed_size_model(exporting.inference_twin(model), size)
    paths = {}
    for precision in precisions:
        paths[precision] = folder / f"{precision}.tflite"
        quantize = "int8" if precision == "int8" else "none"
        calibration = _random_images(TIMING_CALIBRATION_IMAGES, size, np)
        exporting.export_tflite(sized, paths[precision], quantize, calibration)
    return paths


def _random_images(count, size, np):
    return np.random.default_rng(0).uniform(0, 255, (count, size, size, 3)).astype("float32")


# --------------------------------------------------------------------------
# Runners: each returns a zero-argument callable that runs one image.
# --------------------------------------------------------------------------


def onnxruntime_runner(path, threads, image):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda: session.run(None, {name: image})


def tflite_runner(path, threads, image):
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_path=str(path), num_threads=threads)
    interpreter.allocate_tensors()
    input_index = interpreter.get_input_details()[0]["index"]
    output_index = interpreter.get_output_details()[0]["index"]

    def run(batch=image):
        interpreter.set_tensor(input_index, batch)
        interpreter.invoke()
        return interpreter.get_tensor(output_index)

    return run


def keras_runner(model, image):
    return lambda: model.predict_on_batch(image)


def time_rows(rows, rounds, warmup):
    """Median and best milliseconds of each row's callable, timed over interleaved rounds."""
    for row in rows:
        for _ in range(warmup):
            row["run"]()
    times = {id(row): [] for row in rows}
    for _ in range(rounds):
        for row in rows:
            started = time.perf_counter()
            row["run"]()
            times[id(row)].append((time.perf_counter() - started) * 1000)
    for row in rows:
        row["ms"] = statistics.median(times[id(row)])
        row["best_ms"] = min(times[id(row)])


# --------------------------------------------------------------------------


def model_rows(name, model, size, args, folder):
    """The timing rows of one model: (backend, precision, threads) each."""
    import numpy as np

    image = _random_images(1, size, np)
    rows = []

    def add(backend, precision, threads, run):
        rows.append({"model": name, "backend": backend, "precision": precision,
                     "threads": threads, "run": run})  # fmt: skip

    if "onnxruntime" in args.backends:
        onnx_folder = folder / f"{name}_onnx"
        onnx_folder.mkdir()
        paths = export_onnx_files(model, size, onnx_folder, args.precisions, args.dynamic_size)
        for precision, path in paths.items():
            for threads in args.threads:
                add("onnxruntime", precision, threads, onnxruntime_runner(path, threads, image))
    if "tflite" in args.backends:
        tflite_folder = folder / f"{name}_tflite"
        tflite_folder.mkdir()
        for precision, path in export_tflite_files(
            model, size, tflite_folder, args.precisions
        ).items():
            for threads in args.threads:
                add("tflite", precision, threads, tflite_runner(path, threads, image))
    if "keras" in args.backends and "float" in args.precisions:
        # TensorFlow's thread pools are set once per process (see main).
        add("keras", "float", max(args.threads), keras_runner(model, image))
    return rows


def models(args):
    """(name, model, size) of each model to time."""
    from faceparsing.checkpoints import load_checkpoint
    from faceparsing.inference.exporting import training_size

    for recipe in args.recipes:
        model, size = recipe_model(recipe, args.image_size)
        yield recipe, model, size
    if args.checkpoint:
        model = load_checkpoint(args.checkpoint)
        yield (
            Path(args.checkpoint).name,
            model,
            args.image_size or training_size(args.checkpoint, model),
        )
    if not args.no_bisenet:
        size = args.image_size or 512
        yield "BiSeNet-R18", bisenet_r18(size), size


def print_table(rows, costs):
    print("| model | size | parameters | GMACs | runtime | precision | threads | median ms "
          "| best ms |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        params, gmacs, size = costs[row["model"]]
        print(f"| {row['model']} | {size} | {params / 1e6:.2f}M | {gmacs:.2f} | {row['backend']} "
              f"| {row['precision']} | {row['threads']} | {row['ms']:.1f} | {row['best_ms']:.1f} |")  # fmt: skip


class OnnxModel:
    """An ONNX file behind the `predict_on_batch` of a Keras model."""

    def __init__(self, path):
        import onnxruntime

        self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def predict_on_batch(self, images):
        return self.session.run(None, {self.session.get_inputs()[0].name: images})[0]


def quality_files(args, folder):
    """{variant: path} of --checkpoint's float, float16 and int8 ONNX files (int8 calibrated on
    --data-root, as export.py does)."""
    from faceparsing.inference.exporting import export

    return {
        variant: export(args.checkpoint, "onnx", folder / f"quality_{variant}.onnx",
                        quantize=variant, calibration=args.data_root,
                        calibration_count=args.calibration_images)
        for variant in ("none", "float16", "int8")
    }  # fmt: skip


def quantized_quality(args, paths):
    """Rows of (variant, MB, argmax agreement with float, mIoU) for --checkpoint's ONNX files."""
    import numpy as np

    from faceparsing.data.layout import open_layout
    from faceparsing.inference.predict import predict_logits, resize_logits_to
    from faceparsing.metrics import confusion_matrix, scores_from_confusion

    models = {variant: OnnxModel(path) for variant, path in paths.items()}
    size = onnx_size(paths["none"])
    confusions = {variant: 0 for variant in paths}
    agreeing = {variant: 0 for variant in paths}
    pixels = 0
    layout = open_layout(args.data_root)
    ids = layout.split_ids(args.split)
    for start in range(0, len(ids), 8):
        batch_ids = ids[start : start + 8]
        images = np.stack([layout.load_image(i, size) for i in batch_ids])
        labels = [layout.load_label(i) for i in batch_ids]
        logits = {variant: predict_logits(model, images) for variant, model in models.items()}
        pixels += logits["none"][..., 0].size
        for variant, values in logits.items():
            agreeing[variant] += int((values.argmax(-1) == logits["none"].argmax(-1)).sum())
            predictions = resize_logits_to(values, labels[0].shape).argmax(-1)
            for label, prediction in zip(labels, predictions, strict=True):
                confusions[variant] = confusions[variant] + confusion_matrix(label, prediction)
    return [
        (variant, paths[variant].stat().st_size / 1e6, agreeing[variant] / pixels,
         scores_from_confusion(confusions[variant])["miou"], len(ids))
        for variant in paths
    ]  # fmt: skip


def onnx_size(path):
    return int(OnnxModel(path).session.get_inputs()[0].shape[1])


# --------------------------------------------------------------------------
# Agreement on other styles than the training and calibration images.
# --------------------------------------------------------------------------


def style_paths(root):
    """(calibration paths, held-out paths) of an image set: a dataset root (train / val+test),
    a folder with train/ and val/ (or test/) image folders, or a folder of images (the first
    STYLE_IMAGES held out, the rest to calibrate)."""
    from faceparsing.data.layout import split_ids
    from faceparsing.data.release import MAPPING_FILE, image_path
    from faceparsing.images import list_images

    root = Path(root)
    if (root / MAPPING_FILE).is_file():
        held_out = split_ids(root, "val") + split_ids(root, "test")
        return ([image_path(root, i) for i in split_ids(root, "train")],
                [image_path(root, i) for i in held_out])  # fmt: skip
    if (root / "train" / "images").is_dir():
        held_out = [p for split in ("val", "test") for p in list_images(root / split / "images")]
        return list_images(root / "train" / "images"), held_out
    paths = list_images(root)
    held_out = min(STYLE_IMAGES, len(paths) // 2)
    return paths[held_out:], paths[:held_out]


def read_images(paths, size, count, perturb=False):
    """Up to `count` images spread over `paths`, float32 (N, size, size, 3); `perturb` restyles
    them (see `perturbed`), each with its own seed."""
    import numpy as np

    from faceparsing.images import read_rgb_resized

    chosen = np.unique(np.linspace(0, len(paths) - 1, min(count, len(paths))).round().astype(int))
    images = [read_rgb_resized(paths[i], size) for i in chosen]
    if perturb:
        images = [perturbed(image, seed) for seed, image in enumerate(images)]
    return np.stack(images).astype("float32")


def perturbed(image, seed):
    """A uint8 RGB image in another style: low contrast, dimmer, a warm cast, blur, sensor
    noise and strong JPEG compression, each drawn per image."""
    import numpy as np
    from PIL import Image, ImageFilter

    rng = np.random.default_rng(seed)
    pixels = image.astype("float32")
    pixels = (pixels - 128) * rng.uniform(0.45, 0.7) + 128 * rng.uniform(0.55, 0.8)
    pixels *= np.array([1.15, 1.0, 0.8]) * rng.uniform(0.9, 1.1, 3)
    blurred = Image.fromarray(np.clip(pixels, 0, 255).astype("uint8")).filter(
        ImageFilter.GaussianBlur(rng.uniform(0.4, 0.8) * image.shape[0] / 256)
    )
    pixels = np.asarray(blurred, "float32") + rng.normal(0, rng.uniform(6, 14), image.shape)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype("uint8")).save(
        buffer, "JPEG", quality=int(rng.integers(15, 35))
    )
    return np.asarray(Image.open(buffer).convert("RGB"))


def styles(args, size):
    """(name, calibration images, held-out images) of each other style measured."""
    from faceparsing.data.layout import image_path, split_ids

    def paths(split):
        return [image_path(args.data_root, i) for i in split_ids(args.data_root, split)]

    count = args.style_images
    yield ("perturbed " + Path(args.data_root).name, read_images(paths("train"), size, count, True),
           read_images(paths(args.split), size, count, True))  # fmt: skip
    for root in args.ood:
        if not Path(root).exists():
            print(f"skipping --ood {root}: not found", file=sys.stderr)
            continue
        calibration, held_out = style_paths(root)
        if not calibration or not held_out:
            print(f"skipping --ood {root}: too few images to hold some out", file=sys.stderr)
            continue
        yield (Path(root).name, read_images(calibration, size, args.calibration_images),
               read_images(held_out, size, count))  # fmt: skip


def style_quality(args, paths, folder):
    """Rows of (style, images held out, {file: argmax agreement with the float ONNX file}):
    float16 and int8 ONNX, int8 calibrated on --data-root and on the style's own other images,
    and the same int8 TFLite files when --backends has tflite."""
    from faceparsing.checkpoints import load_checkpoint
    from faceparsing.inference import exporting, quantization

    size = onnx_size(paths["none"])
    tflite = "tflite" in args.backends
    if tflite:
        sized = exporting.fixed_size_model(
            exporting.inference_twin(load_checkpoint(args.checkpoint)), size
        )
        calibration = quantization.calibration_images(args.data_root, size, args.calibration_images)
        exporting.export_tflite(sized, folder / "int8.tflite", "int8", calibration)
    rows = []
    for name, calibration, held_out in styles(args, size):
        quantization.quantize_onnx(paths["none"], folder / "own.onnx", "int8", calibration)
        files = {"ONNX float16": paths["float16"], "ONNX int8": paths["int8"],
                 "ONNX int8, own calibration": folder / "own.onnx"}  # fmt: skip
        if tflite:
            exporting.export_tflite(sized, folder / "own.tflite", "int8", calibration)
            files["TFLite int8"] = folder / "int8.tflite"
            files["TFLite int8, own calibration"] = folder / "own.tflite"
        expected = labels_of(paths["none"], held_out)
        agreements = {
            file: float((labels_of(path, held_out) == expected).mean())
            for file, path in files.items()
        }
        rows.append((name, len(held_out), agreements))
    return rows


def labels_of(path, images, batch_size=8):
    """Argmax labels of an ONNX or (one image at a time) TFLite file."""
    import numpy as np

    if Path(path).suffix == ".tflite":
        run = tflite_runner(path, os.cpu_count(), images[:1])
        return np.stack([run(image[None])[0].argmax(-1) for image in images])
    model = OnnxModel(path)
    return np.concatenate([
        model.predict_on_batch(images[start : start + batch_size]).argmax(-1)
        for start in range(0, len(images), batch_size)
    ])  # fmt: skip


def print_style_quality(rows, args):
    print(f"\nOther styles ({args.checkpoint}; argmax agreement with its float ONNX file; int8 "
          "calibrated on --data-root, or on the style's own other images):")  # fmt: skip
    files = list(rows[0][2]) if rows else []
    print(f"| images | held out | {' | '.join(files)} |")
    print("|---|---|" + "---|" * len(files))
    for name, count, agreements in rows:
        values = " | ".join(f"{100 * agreements[file]:.2f}%" for file in files)
        print(f"| {name} | {count} | {values} |")


def cpu_description():
    """The CPU's name, cores and which of INSTRUCTION_SETS it has (/proc/cpuinfo on Linux)."""
    fields = {}
    if Path("/proc/cpuinfo").is_file():
        first_cpu = Path("/proc/cpuinfo").read_text().split("\n\n")[0]
        pairs = (line.split(":", 1) for line in first_cpu.splitlines() if ":" in line)
        fields = {key.strip(): value.strip() for key, value in pairs}
    name = fields.get("model name", platform.processor() or platform.machine())
    flags = set(fields.get("flags", "").split())
    has = ", ".join(f"{label} {'yes' if flag in flags else 'no'}"
                    for flag, label in INSTRUCTION_SETS.items())  # fmt: skip
    return f"CPU: {name}, {os.cpu_count()} cores; {has}"


def print_quality(rows, args):
    print(f"\n{args.checkpoint} on {args.data_root} {args.split} ({rows[0][4]} images):")
    print("| ONNX file | MB | argmax agreement with float | mIoU |")
    print("|---|---|---|---|")
    for variant, megabytes, agreement, miou, _ in rows:
        name = "float" if variant == "none" else variant
        print(f"| {name} | {megabytes:.2f} | {100 * agreement:.2f}% | {100 * miou:.2f} |")


def main(argv=None):
    args = parse_args(argv)
    import tensorflow as tf

    # Keras' own rows run at the largest thread count asked for.
    tf.config.threading.set_intra_op_parallelism_threads(max(args.threads))
    tf.config.threading.set_inter_op_parallelism_threads(1)
    rows, costs = [], {}
    print(cpu_description())
    with tempfile.TemporaryDirectory() as folder:
        if args.checkpoint and args.data_root:
            paths = quality_files(args, Path(folder))
            print_quality(quantized_quality(args, paths), args)
            print_style_quality(style_quality(args, paths, Path(folder)), args)
        for name, model, size in models(args):
            costs[name] = (*model_cost(model, size), size)
            print(f"exporting {name} at {size}x{size} ...", file=sys.stderr, flush=True)
            rows += model_rows(name, model, size, args, Path(folder))
        load_before = os.getloadavg()
        time_rows(rows, args.rounds, args.warmup)
        load_after = os.getloadavg()
    print(f"CPU: {os.cpu_count()} cores; load average (1, 5, 15 min) before "
          f"{', '.join(f'{v:.1f}' for v in load_before)}, after "
          f"{', '.join(f'{v:.1f}' for v in load_after)}; {args.rounds} interleaved rounds, "
          "batch 1, random weights unless a checkpoint")  # fmt: skip
    print_table(rows, costs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
