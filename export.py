"""Export a checkpoint for deployment: Keras, TensorFlow SavedModel or TFLite.

Usage:
    python export.py --checkpoint runs/demo/best.keras --format tflite --out model.tflite [--quantize float16]

The exported model takes float32 RGB in [0, 255] of shape (1, S, S, 3) (S is the
run's `image_size` unless `--image_size` is given) and returns logits
(1, S, S, 19); argmax over the last axis gives the label map.
"""

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

# Keep TensorFlow's C++ start-up chatter out of the output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from io_utils import report_user_error


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Export a face-parsing checkpoint.")
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--format", required=True, choices=("keras", "savedmodel", "tflite"))
    parser.add_argument(
        "--out", required=True, help="output file (.keras/.tflite) or folder (savedmodel)"
    )
    parser.add_argument("--quantize", default="none", choices=("none", "float16", "dynamic"),
                        help="TFLite only: float16 weights or dynamic-range int8 weights")  # fmt: skip
    parser.add_argument("--image_size", type=int, help="fixed input size (default: the run's)")
    return parser.parse_args(argv)


def fixed_size_model(model, size):
    """Wrap `model` with a static (size, size, 3) input, as TFLite needs."""
    import keras

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
    from io_utils import atomic_write_bytes

    atomic_write_bytes(out_path, flatbuffer)


def export(checkpoint, export_format, out, quantize="none", image_size=None):
    """Write `checkpoint` in `export_format` to `out`; return the output path."""
    import keras

    from checkpoints import load_checkpoint
    from io_utils import atomic_path
    from visualize import model_input_size

    if keras.backend.backend() != "tensorflow" and export_format != "keras":
        raise ValueError(f"--format {export_format} needs KERAS_BACKEND=tensorflow")
    if quantize != "none" and export_format != "tflite":
        raise ValueError("--quantize applies to --format tflite only")
    out = Path(out)
    model = load_checkpoint(checkpoint)
    if export_format == "keras":
        with atomic_path(out) as temp_path:
            model.save(temp_path)
        return out
    model = fixed_size_model(model, model_input_size(checkpoint, image_size))
    if export_format == "tflite":
        export_tflite(model, out, quantize)
        return out
    staging = Path(
        tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent if out.parent.exists() else None)
    )
    try:
        export_savedmodel(model, staging / "model")
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging / "model", out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def main(argv=None):
    args = parse_args(argv)
    try:
        path = export(args.checkpoint, args.format, args.out, args.quantize, args.image_size)
    except (ValueError, OSError) as error:
        return report_user_error(error)
    print(f"Exported {args.checkpoint} as {args.format} to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
