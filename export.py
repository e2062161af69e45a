"""Export a checkpoint for deployment: Keras, TensorFlow SavedModel, TFLite or ONNX.

Usage:
    python export.py --checkpoint runs/demo/best.keras --format onnx --out model.onnx [--quantize int8]
    python export.py --checkpoint runs/demo/best.keras --format tflite --out model.tflite [--quantize float16]

The exported model takes float32 RGB in [0, 255] and returns logits; argmax
over the last axis gives the label map. The graph is built at one size S, the
run's `image_size` unless `--image_size` is given: SavedModel and TFLite take
(1, S, S, 3) and return (1, S, S, C), C the checkpoint's classes (19 for
CelebAMask-HQ, 11 for LaPa); ONNX takes `images` (B, S, S, 3) of any batch and
returns `logits` (B, S, S, C), its metadata naming the classes (`class_names`);
it needs the `onnx` extra.
`--dynamic_size` leaves height and width free, at a cost in speed (measured in
docs/deployment.md). `--quantize int8` calibrates on `--calibration` (a dataset
root or a folder of images; default: the run's data_root). The conversions
themselves are `faceparsing.inference.exporting`.
"""

import sys

from faceparsing import cli
from faceparsing.inference.exporting import (
    CALIBRATION_IMAGES,
    EXPORT_FORMATS,
    QUANTIZATIONS,
    MissingPackageError,
    export,
)


def parse_args(argv):
    parser = cli.ArgumentParser(description="Export a face-parsing checkpoint.")
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--format", required=True, choices=EXPORT_FORMATS)
    parser.add_argument(
        "--out", required=True, help="output file (.keras/.tflite/.onnx) or folder (savedmodel)"
    )
    parser.add_argument("--quantize", default="none", choices=QUANTIZATIONS,
                        help="float16 weights (tflite, onnx), dynamic-range int8 weights (tflite) "
                             "or int8 weights and activations, calibrated (tflite, onnx)")  # fmt: skip
    parser.add_argument("--image_size", type=int, help="input size (default: the run's)")
    parser.add_argument("--dynamic_size", action="store_true",
                        help="free height and width (slower graph; see docs/deployment.md)")  # fmt: skip
    parser.add_argument("--calibration",
                        help="int8: dataset root or folder of images (default: the run's data_root)")  # fmt: skip
    parser.add_argument("--calibration_images", type=int, default=CALIBRATION_IMAGES,
                        help=f"int8: calibration images used at most (default {CALIBRATION_IMAGES})")  # fmt: skip
    return parser.parse_args(argv)


def run(args):
    path = export(
        args.checkpoint, args.format, args.out, args.quantize, args.image_size,
        args.dynamic_size, args.calibration, args.calibration_images,
    )  # fmt: skip
    print(f"Exported {args.checkpoint} as {args.format} to {path}")
    return 0


def main(argv=None):
    # A missing exporter package is the user's to install: one line, exit 2.
    return cli.run_command(run, parse_args(argv), exit_codes=[(MissingPackageError, 2)])


if __name__ == "__main__":
    sys.exit(main())
