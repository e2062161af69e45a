"""Checkpoints: load a `.keras` file safely, and read the run config saved beside it."""

from pathlib import Path

import keras

from faceparsing import config as config_lib
from faceparsing import serialization  # noqa: F401  (registers the custom objects)
from faceparsing.classes import NUM_CLASSES
from faceparsing.errors import CheckpointError, first_line


def load_checkpoint(path, num_classes=None):
    """Load a `.keras` checkpoint in Keras safe mode; errors name the path.

    Args:
        path: str or Path. The `.keras` file.
        num_classes: int or None. Classes the model must emit; None accepts
            any (the model's class set says which). Defaults to None.

    Returns:
        The uncompiled keras.Model; `faceparsing.classes.class_set_of(model)`
        gives its class set (CelebAMask-HQ's for a 19-class checkpoint saved
        before class sets).

    Raises:
        CheckpointError: the file is missing, cannot be loaded, or predicts
            another number of classes.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as error:  # Keras raises many types for a bad archive
        reason = first_line(error, type(error).__name__)
        raise CheckpointError(f"checkpoint {path} could not be loaded: {reason}") from None
    classes = model.output_shape[-1]
    if num_classes is not None and classes != num_classes:
        raise CheckpointError(
            f"checkpoint {path} predicts {classes} classes, expected {num_classes}"
        )
    if getattr(model, "class_set", None) is None and classes != NUM_CLASSES:
        raise CheckpointError(
            f"checkpoint {path} predicts {classes} classes, expected {NUM_CLASSES}: a model "
            "saved without a class set is read as CelebAMask-HQ's"
        )
    return model


def run_config(checkpoint):
    """The TrainConfig of the run that wrote `checkpoint` (its folder's config.yaml).

    A checkpoint outside a run folder gets the defaults, so scripts still work
    on a bare `.keras` file given the missing settings on their command line.
    """
    saved = Path(checkpoint).parent / "config.yaml"
    if saved.exists():
        return config_lib.load_run_config(saved)
    return config_lib.TrainConfig()
