"""Training and prediction img/s of DeepLabV3Plus against naive and keras-hub builds.

Rows, all with random weights at the same backbone, input size and batch:
- ours: `DeepLabV3Plus(fast_atrous=True)`.
- stock dilated Conv2D: the same model with `fast_atrous=False` (identical layers and weights,
  dilation done by Keras' own Conv2D / DepthwiseConv2D).
- keras-io example style: the model as the Keras example writes it (backbone cut at stride 16,
  ASPP of stock dilated Conv2D, same decoder); a different but comparable architecture.
- keras-hub: `keras_hub.models.DeepLabV3ImageSegmenter` on a random ResNet-50 v1 backbone (ASPP
  at stride 32, one 1x1 decoder conv: keras-hub's own architecture). Needs `pip install
  keras-hub`; printed as skipped when it is not importable or for MobileNetV2 (no V2 backbone).

All models are built first, then timed in turn over interleaved repeats in this one process, so
machine noise hits every row alike. Warm-up steps (tracing, compilation) are excluded.

Usage:
    python benchmarks/bench_model.py [--backend tensorflow|jax] [--configs mobilenetv2 resnet50]
    python benchmarks/bench_model.py --smoke   # tiny, a few seconds (used by the tests)
"""

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import faceparsing  # noqa: F401  (sets TensorFlow's log level before Keras loads)

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class BenchConfig:
    backbone: str
    image_size: int
    batch_size: int
    alpha: float = 1.0
    filters: int = 256


CONFIGS = {
    "mobilenetv2": BenchConfig("mobilenetv2", 128, 8),
    "resnet50": BenchConfig("resnet50", 256, 4),
}
SMOKE_CONFIG = BenchConfig("mobilenetv2", 32, 2, alpha=0.35, filters=16)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backend",
        choices=["tensorflow", "jax"],
        default=None,
        help="Keras backend (re-executes with KERAS_BACKEND set)",
    )
    parser.add_argument(
        "--configs", nargs="+", choices=sorted(CONFIGS), default=["mobilenetv2", "resnet50"]
    )
    parser.add_argument("--output-stride", type=int, default=16, choices=[8, 16])
    parser.add_argument("--warmup-steps", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--rows",
        nargs="+",
        default=["ours", "stock", "example", "keras-hub"],
        choices=["ours", "stock", "example", "keras-hub"],
    )
    parser.add_argument("--jit-compile", default="auto", choices=["auto", "true", "false"])
    parser.add_argument("--smoke", action="store_true", help="tiny run for the tests")
    return parser.parse_args(argv)  # fmt: skip


def reexec_with_backend(backend):
    """Run this script again with KERAS_BACKEND set; returns its exit status."""
    env = {**os.environ, "KERAS_BACKEND": backend}
    return subprocess.call([sys.executable, *sys.argv], env=env)


# ---------------------------------------------------------------------------
# Models.
# ---------------------------------------------------------------------------


def build_ours(config, output_stride, fast_atrous):
    from faceparsing.model import deeplabv3plus

    return deeplabv3plus.DeepLabV3Plus(
        backbone=config.backbone, output_stride=output_stride, weights=None,
        input_shape=(config.image_size, config.image_size, 3), alpha=config.alpha,
        aspp_filters=config.filters, decoder_filters=config.filters, fast_atrous=fast_atrous,
    )  # fmt: skip


# Stride-16 and stride-4 layers where the Keras example cuts each backbone.
_EXAMPLE_CUTS = {
    "resnet50": ("conv4_block6_2_relu", "conv2_block3_2_relu"),
    "mobilenetv2": ("block_13_expand_relu", "block_3_expand_relu"),
}


def _example_conv_block(x, filters, kernel_size=3, dilation_rate=1):
    from keras import layers

    x = layers.Conv2D(filters, kernel_size, dilation_rate=dilation_rate, padding="same",
                      use_bias=False, kernel_initializer="he_normal")(x)  # fmt: skip
    x = layers.BatchNormalization()(x)
    return layers.ReLU()(x)


def build_keras_example(config, num_classes):
    """keras-io `examples/vision/deeplabv3_plus.py`, with the backbone as a parameter."""
    import keras
    from keras import layers

    size, filters = config.image_size, config.filters
    inputs = keras.Input((size, size, 3))
    if config.backbone == "resnet50":
        x = keras.applications.resnet50.preprocess_input(inputs)
        backbone = keras.applications.ResNet50(weights=None, include_top=False, input_tensor=x)
    else:
        x = layers.Rescaling(1 / 127.5, offset=-1)(inputs)
        backbone = keras.applications.MobileNetV2(
            weights=None, include_top=False, input_tensor=x, alpha=config.alpha
        )
    high_name, low_name = _EXAMPLE_CUTS[config.backbone]
    x = backbone.get_layer(high_name).output
    pooled = layers.AveragePooling2D(pool_size=(size // 16, size // 16))(x)
    pooled = _example_conv_block(pooled, filters, kernel_size=1)
    pooled = layers.UpSampling2D(size=size // 16, interpolation="bilinear")(pooled)
    branches = [pooled, _example_conv_block(x, filters, kernel_size=1)]
    branches += [_example_conv_block(x, filters, 3, rate) for rate in (6, 12, 18)]
    x = _example_conv_block(layers.Concatenate()(branches), filters, kernel_size=1)
    x = layers.UpSampling2D(size=4, interpolation="bilinear")(x)
    low = _example_conv_block(backbone.get_layer(low_name).output, 48, kernel_size=1)
    x = layers.Concatenate()([x, low])
    x = _example_conv_block(_example_conv_block(x, filters), filters)
    x = layers.UpSampling2D(size=4, interpolation="bilinear")(x)
    outputs = layers.Conv2D(num_classes, 1, padding="same")(x)
    return keras.Model(inputs, outputs, name="keras_io_example")


def build_keras_hub(config, num_classes):
    """keras-hub's DeepLabV3Plus on a random ResNet-50 v1 (no preset, nothing downloaded)."""
    import keras_hub

    size = config.image_size
    encoder = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[7],
        stackwise_num_filters=[64, 128, 256, 512], stackwise_num_blocks=[3, 4, 6, 3],
        stackwise_num_strides=[1, 2, 2, 2], block_type="bottleneck_block",
        image_shape=(size, size, 3),
    )  # fmt: skip
    backbone = keras_hub.models.DeepLabV3Backbone(
        image_encoder=encoder, spatial_pyramid_pooling_key="P5", upsampling_size=8,
        dilation_rates=[6, 12, 18], low_level_feature_key="P2", projection_filters=48,
        image_shape=(size, size, 3),
    )  # fmt: skip
    return keras_hub.models.DeepLabV3ImageSegmenter(backbone=backbone, num_classes=num_classes)


def keras_hub_unavailable(config):
    """The reason the keras-hub row is skipped, or None."""
    if config.backbone != "resnet50":
        return "skipped (keras-hub has no MobileNetV2 backbone)"
    try:
        import keras_hub  # noqa: F401
    except ImportError:
        return "skipped (keras-hub not installed: pip install keras-hub)"
    return None


def build_rows(config, output_stride, rows, num_classes):
    """{row name: model or skip reason}, in the order of `rows`."""
    builders = {
        "ours": lambda: build_ours(config, output_stride, fast_atrous=True),
        "stock": lambda: build_ours(config, output_stride, fast_atrous=False),
        "example": lambda: build_keras_example(config, num_classes),
        "keras-hub": lambda: keras_hub_unavailable(config) or build_keras_hub(config, num_classes),
    }
    return {row: builders[row]() for row in rows}


ROW_TITLES = {
    "ours": "ours (fast_atrous=True)",
    "stock": "same model, stock dilated Conv2D (fast_atrous=False)",
    "example": "keras-io example style (stock dilated Conv2D)",
    "keras-hub": "keras-hub DeepLabV3ImageSegmenter (ResNet-50 v1)",
}


# ---------------------------------------------------------------------------
# Timing.
# ---------------------------------------------------------------------------


def compile_model(model, jit_compile):
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(1e-4),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[],  # keras-hub's "auto" metrics assume one-hot labels; time the loss alone
        jit_compile={"auto": "auto", "true": True, "false": False}[jit_compile],
    )


def make_batch(config, num_classes):
    import numpy as np

    rng = np.random.default_rng(0)
    shape = (config.batch_size, config.image_size, config.image_size)
    images = rng.uniform(0, 255, shape + (3,)).astype("float32")
    labels = rng.integers(0, num_classes, shape).astype("int32")
    return images, labels


def images_per_second(step, steps, batch_size):
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch_size / (time.perf_counter() - start)


def time_rows(models, batch, args, batch_size):
    """Best train and predict img/s of every model over interleaved repeats."""
    images, labels = batch
    steps = {}
    for name, model in models.items():
        train = lambda m=model: m.train_on_batch(images, labels)  # noqa: E731
        predict = lambda m=model: m.predict_on_batch(images)  # noqa: E731
        for _ in range(args.warmup_steps):
            train(), predict()
        steps[name] = (train, predict)
    best = {name: [0.0, 0.0] for name in models}
    for _ in range(args.repeats):
        for name, (train, predict) in steps.items():
            rates = (images_per_second(train, args.steps, batch_size),
                     images_per_second(predict, args.steps, batch_size))  # fmt: skip
            best[name] = [max(old, new) for old, new in zip(best[name], rates, strict=True)]
    return best


def print_table(config, output_stride, results, skipped, gmacs):
    print(f"\n### {config.backbone} (alpha {config.alpha}), {config.image_size}x"
          f"{config.image_size}, batch {config.batch_size}, output stride {output_stride}")  # fmt: skip
    print("| model | GMACs/img | train img/s | predict img/s | ours / row (train) "
          "| ours / row (predict) |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    ours = results.get("ours")
    for name, (train, predict) in results.items():
        ratios = f"{ours[0] / train:.2f}x | {ours[1] / predict:.2f}x" if ours else "- | -"
        print(f"| {ROW_TITLES[name]} | {gmacs[name]:.2f} | {train:.2f} | {predict:.2f} "
              f"| {ratios} |")  # fmt: skip
    for name, reason in skipped.items():
        print(f"| {ROW_TITLES[name]} | | {reason} | | | |")


def run_config(config, args):
    import keras

    from faceparsing.classes import NUM_CLASSES
    from faceparsing.model import cost

    keras.backend.clear_session()
    built = build_rows(config, args.output_stride, args.rows, NUM_CLASSES)
    models = {name: model for name, model in built.items() if not isinstance(model, str)}
    skipped = {name: reason for name, reason in built.items() if isinstance(reason, str)}
    for model in models.values():
        compile_model(model, args.jit_compile)
    # Multiply-adds of convolutions and dense layers: the rows differ in architecture.
    gmacs = {name: cost.count_multiply_adds(model) / 1e9 for name, model in models.items()}
    results = time_rows(models, make_batch(config, NUM_CLASSES), args, config.batch_size)
    print_table(config, args.output_stride, results, skipped, gmacs)


def main(argv=None):
    args = parse_args(argv)
    if args.backend and os.environ.get("KERAS_BACKEND") != args.backend:
        return reexec_with_backend(args.backend)
    import keras

    configs = [SMOKE_CONFIG] if args.smoke else [CONFIGS[name] for name in args.configs]
    if args.smoke:
        args.warmup_steps, args.steps, args.repeats = 1, 1, 1
        args.rows = [row for row in args.rows if row in ("ours", "stock", "keras-hub")]
    print(f"backend {keras.backend.backend()}, keras {keras.__version__}, "
          f"{os.cpu_count()} CPU(s) visible, jit_compile={args.jit_compile}, "
          f"{args.warmup_steps} warm-up + {args.steps} timed steps x {args.repeats} repeats",
          flush=True)  # fmt: skip
    for config in configs:
        run_config(config, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
