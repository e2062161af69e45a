"""Export a checkpoint for deployment: Keras, TensorFlow SavedModel or TFLite.

Usage:
    python export.py --checkpoint runs/demo/best.keras --format tflite --out model.tflite [--quantize float16]

The exported model takes float32 RGB in [0, 255] of shape (1, S, S, 3) (S is the
run's `image_size` unless `--image_size` is given) and returns logits
(1, S, S, 19); argmax over the last axis gives the label map. The conversions
themselves are `faceparsing.inference.exporting`.
"""

import sys

from faceparsing import cli
from faceparsing.inference.exporting import EXPORT_FORMATS, QUANTIZATIONS, export


def parse_args(argv):
    parser = cli.ArgumentParser(description="Export a face-parsing checkpoint.")
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--format", required=True, choices=EXPORT_FORMATS)
    parser.add_argument(
        "--out", required=True, help="output file (.keras/.tflite) or folder (savedmodel)"
    )
    parser.add_argument("--quantize", default="none", choices=QUANTIZATIONS,
                        help="TFLite only: float16 weights or dynamic-range int8 weights")  # fmt: skip
    parser.add_argument("--image_size", type=int, help="fixed input size (default: the run's)")
    return parser.parse_args(argv)


def run(args):
    path = export(args.checkpoint, args.format, args.out, args.quantize, args.image_size)
    print(f"Exported {args.checkpoint} as {args.format} to {path}")
    return 0


def main(argv=None):
    return cli.run_command(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
