"""Export a checkpoint for deployment: Keras, TensorFlow SavedModel or TFLite.

The exported SavedModel/TFLite take float32 RGB in [0, 255] of shape
(1, S, S, 3) and return logits (1, S, S, 19).
"""

import os
import shutil
import tempfile
from pathlib import Path

import keras

from faceparsing.checkpoints import load_checkpoint, run_config
from faceparsing.errors import ConfigError
from faceparsing.files import atomic_path, atomic_write_bytes

EXPORT_FORMATS = ("keras", "savedmodel", "tflite")
QUANTIZATIONS = ("none", "float16", "dynamic")


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
        image_size: int or None. Fixed input size; defaults to the run's.
    """
    if keras.backend.backend() != "tensorflow" and export_format != "keras":
        raise ConfigError(f"--format {export_format} needs KERAS_BACKEND=tensorflow")
    if quantize != "none" and export_format != "tflite":
        raise ConfigError("--quantize applies to --format tflite only")
    out = Path(out)
    model = load_checkpoint(checkpoint)
    if export_format == "keras":
        with atomic_path(out) as temp_path:
            model.save(temp_path)
        return out
    model = fixed_size_model(model, image_size or run_config(checkpoint).image_size)
    if export_format == "tflite":
        export_tflite(model, out, quantize)
    else:
        replace_folder(out, lambda folder: export_savedmodel(model, folder))
    return out
