"""Export a checkpoint for deployment: Keras, TensorFlow SavedModel, TFLite or ONNX.

Usage:
    python export.py --checkpoint runs/demo/best.keras --format tflite --out model.tflite [--quantize float16]
    python export.py --checkpoint runs/demo/best.keras --format onnx --out model.onnx [--image_size 128]

The exported model takes float32 RGB in [0, 255] and returns logits; argmax
over the last axis gives the label map. SavedModel and TFLite take (1, S, S, 3)
(S is the run's `image_size` unless `--image_size` is given) and return
(1, S, S, C), C the checkpoint's classes (19 for CelebAMask-HQ, 11 for LaPa). ONNX takes `images` (B, H, W, 3) of any batch and, unless
`--image_size` fixes it, any height and width, and returns `logits`
(B, H, W, C) and names the classes in its metadata (`class_names`); it needs the `onnx` extra. The conversions themselves are
`faceparsing.inference.exporting`.
"""

import sys

from faceparsing import cli
from faceparsing.inference.exporting import (
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
                        help="TFLite only: float16 weights or dynamic-range int8 weights")  # fmt: skip
    parser.add_argument("--image_size", type=int,
                        help="fixed input size (default: the run's; onnx: any size)")  # fmt: skip
    return parser.parse_args(argv)


def run(args):
    path = export(args.checkpoint, args.format, args.out, args.quantize, args.image_size)
    print(f"Exported {args.checkpoint} as {args.format} to {path}")
    return 0


def main(argv=None):
    # A missing exporter package is the user's to install: one line, exit 2.
    return cli.run_command(run, parse_args(argv), exit_codes=[(MissingPackageError, 2)])


if __name__ == "__main__":
    sys.exit(main())
