"""Face parsing with DeepLabV3+ on CelebAMask-HQ: the pieces the top-level scripts share.

Layers go one way (each imports only from the ones above it):

- `classes`, `errors`, `files`, `images`, `cli`, `drawing` (synthetic faces):
  foundations, no Keras.
- `data`: dataset layouts (the release, LaPa's folders, packs), batches, the loader's
  workers, augmentation, class weights and the synthetic-set writer (no Keras), the
  Keras dataset (`data.dataset`) and a run's data set-up (`data.setup`).
- `model`: atrous layers, backbones, DeepLabV3+ and its cost.
- `metrics`, `training.losses`, `training.schedules`; then `config` (the
  training settings, whose choices come from those modules), `serialization`
  (one import registers every saved Keras object) and `checkpoints`.
- `training` (the run folder and `trainer.train(config)`) and `inference`
  (prediction, evaluation, overlays, export), which do not import each other.

Importing a submodule never imports Keras unless that submodule needs it, so the
data tools (and the worker processes that draw synthetic faces) stay light.
"""

import os

NVIDIA_DRIVER = "/proc/driver/nvidia/version"  # present wherever an NVIDIA driver is loaded


def default_tf_log_level(driver_file=NVIDIA_DRIVER):
    """TensorFlow's C++ log level unless the user sets TF_CPP_MIN_LOG_LEVEL.

    "2" keeps errors and hides the pages of start-up information. Without a
    GPU driver there is no GPU problem to report, so "3" also hides the
    "failed call to cuInit" error that every CPU-only start prints. (The
    "Could not find cuda drivers" line comes before TensorFlow reads the
    variable and stays.) TF_CPP_MIN_LOG_LEVEL=0 shows everything again.
    """
    return "2" if os.path.exists(driver_file) else "3"


# Every entry point imports this package before Keras, so this is the one place.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", default_tf_log_level())

__version__ = "0.2.0"

# Every Keras object of the project is registered as "faceparsing>ClassName";
# saved checkpoints refer to these names, so they must never change.
KERAS_PACKAGE = "faceparsing"
