"""Load `.keras` checkpoints safely and check they are face-parsing models."""

from pathlib import Path

from face_classes import NUM_CLASSES


def load_checkpoint(path, num_classes=NUM_CLASSES):
    """Load a `.keras` checkpoint in Keras safe mode; errors name the path.

    Args:
        path: str or Path. The `.keras` file.
        num_classes: int. Classes the model must emit. Defaults to 19.

    Returns:
        The uncompiled keras.Model.
    """
    import keras

    import deeplab  # noqa: F401  (registers the custom layers)
    import losses  # noqa: F401
    import metrics  # noqa: F401
    import training  # noqa: F401

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as error:  # Keras raises many types for a bad archive
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"checkpoint {path} could not be loaded: {reason}") from None
    classes = model.output_shape[-1]
    if classes != num_classes:
        raise ValueError(f"checkpoint {path} predicts {classes} classes, expected {num_classes}")
    return model
