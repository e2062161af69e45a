"""Training configuration: one dataclass of defaults, YAML overrides, CLI overrides.

A YAML file in `configs/` lists only the keys it changes; `--key=value` on the
command line overrides any key. Unknown keys and values of the wrong type are
reported in one line that lists the valid keys. Each key's `scope` says what may
change it without changing what is learned (`setting`).
"""

import dataclasses
import typing
from pathlib import Path

import yaml

from faceparsing.data.batches import TARGETS
from faceparsing.data.class_weights import WEIGHT_SCHEMES
from faceparsing.data.layout import DATASETS
from faceparsing.data.loader import WORKER_TYPES
from faceparsing.data.splits import SPLITS
from faceparsing.errors import ConfigError, first_line
from faceparsing.files import atomic_write_text
from faceparsing.model.backbones import BACKBONES, OUTPUT_STRIDES

# Values the training recipe defines; `training.losses` and `training.schedules` build
# each of them (the data and model choices come from the modules that implement them).
LOSSES = ("cross_entropy", "focal", "dice_ce", "lovasz", "ohem")
OPTIMIZERS = ("adamw", "adam", "sgd")
LR_SCHEDULES = ("poly", "cosine", "constant")
MIXED_PRECISION_POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")
JIT_COMPILE_MODES = ("auto", "true", "false")
DISTRIBUTE_MODES = ("none", "mirrored", "multiworker", "data_parallel")
# Keys of earlier versions: a run folder's config.yaml may hold them (they are ignored
# there); given anew, they are a one-line error with the way on.
RETIRED_KEYS = {
    "use_multiprocessing": "set worker_type: processes for worker processes (forked workers could "
    "hang JAX and TensorFlow; spawned ones cannot)",
}
SCOPES = ("run", "resume", "host")


def setting(default, scope="run"):
    """A config key whose `scope` says what may change it without changing what is learned:
    "run", nothing (a rerun of the run folder must keep it, every host must agree);
    "resume", a rerun (how long, how fast, what is logged; every host must agree);
    "host", also each host of a multi-host job (where things are, data loading, verbosity)."""
    return dataclasses.field(default=default, metadata={"scope": scope})


@dataclasses.dataclass
class TrainConfig:
    # --- data ---
    data_root: str = setting("data/CelebAMask-HQ", "host")  # folder holding the unzipped release
    dataset: str = "auto"  # auto (detected)|celebamask_hq|lapa|folder (LaPa's layout, own classes)
    classes: str = ""  # the data's class set: "" = the layout's own, lapa, or a YAML file
    class_map: str = ""  # merge/drop classes: YAML {target: [sources]} or its file; "" = none
    demo_images: int = 0  # >0: write a synthetic set (dataset's layout) into an absent data_root
    train_split: str = "train"  # official split (train|val|test|all)
    val_split: str = "val"  # validation every epoch on this split
    max_train_images: int = 0  # 0 = whole split; a cap makes quick experiments cheap
    max_val_images: int = 0  # 0 = whole split
    image_size: int = 512  # square model input; labels are resized with nearest neighbour
    batch_size: int = 8  # fits a 16 GB GPU at 512 with ResNet-50
    augment: bool = True  # flip (with left/right swap), scale, rotation, colour jitter
    target: str = "integer"  # integer -> sparse CE; onehot -> categorical CE
    class_weights: str = "none"  # none|per_image|inverse_frequency|median_frequency|enet
    max_class_weight: float = 0.0  # 0 = no clipping; clipping keeps rare-class weights sane
    cache_dir: str = setting("", "host")  # merged labels: "" = <data_root>/.label_cache, none = off
    pack_cache: str = ""  # decode once at image_size: "" = off, auto = <data_root>/.pack_<image_size>, or a folder
    workers: str = setting("auto", "host")  # batch-building workers: auto = usable CPUs, or N
    worker_type: str = setting("auto", "host")  # threads|processes|auto: processes from 2 workers
    skip_bad_samples: bool = False  # skip (and report) unreadable samples instead of stopping
    # --- model ---
    backbone: str = "resnet50"  # BACKBONES in model/backbones.py: resnet, mobilenet, xception
    output_stride: int = 16  # 16 is the paper's speed/accuracy trade-off; 8 is finer and slower
    weights: str = "imagenet"  # imagenet|none|<path to backbone .weights.h5>
    alpha: float = 1.0  # MobileNet width multiplier (V3 with ImageNet weights: 0.75 or 1.0)
    aspp_filters: int = 256  # paper value
    decoder_filters: int = 256  # paper value
    dropout: float = 0.1  # after the ASPP projection
    fast_atrous: str = "auto"  # space-to-batch atrous convs: auto = on, except JAX on CPU (slower)
    freeze_backbone: bool = False  # fine-tune only the head
    freeze_batchnorm: bool = False  # keep backbone BN statistics (small batches)
    batchnorm_momentum: float = (
        0.0  # 0 = Keras/application defaults; ~0.9 for short runs from scratch
    )
    # --- optimisation ---
    epochs: int = setting(30, "resume")  # enough for the real set at 512 with a pretrained backbone
    steps_per_epoch: int = 0  # 0 = one pass over the training split
    loss: str = "cross_entropy"  # cross_entropy|focal|dice_ce|lovasz|ohem
    focal_gamma: float = 2.0  # Lin et al. 2017 default
    optimizer: str = "adamw"  # adamw|adam|sgd
    learning_rate: float = 1e-3  # peak learning rate
    lr_schedule: str = "poly"  # poly (paper, power 0.9)|cosine|constant
    warmup_epochs: float = 0.0  # linear warm-up before the schedule
    weight_decay: float = 1e-4  # AdamW/SGD regularisation
    momentum: float = 0.9  # SGD only
    seed: int = 0  # seeds Python, NumPy and the backend
    mixed_precision: str = "float32"  # float32|mixed_float16|mixed_bfloat16
    jit_compile: str = "auto"  # auto|true|false (XLA compilation of the train step)
    steps_per_execution: int = setting(
        1, "resume"
    )  # train steps per compiled call: less Python per step on a GPU
    run_eagerly: bool = setting(
        False, "resume"
    )  # no graph tracing: Python-debuggable, slow per step, no compile wait
    distribute: str = "none"  # none|mirrored (TensorFlow)|data_parallel (JAX; several hosts: KERAS_DISTRIBUTION_*); multiworker is refused (keras#20585)
    # --- run folder ---
    run_dir: str = setting("runs/default", "host")  # config.yaml, metrics.csv, checkpoints, curves
    init: str = ""  # start from another checkpoint's weights (.keras); another class set: new head
    tensorboard: bool = setting(False, "resume")  # write TensorBoard logs to <run_dir>/tensorboard
    verbose: int = setting(1, "host")  # 1 = progress bar, 2 = one line per epoch, 0 = silent


# Each enumeration comes from the module that implements it, or, for the training recipe's
# own (loss, optimizer, schedule, ...), from the lists above.
CHOICES = {
    "dataset": DATASETS,
    "train_split": SPLITS,
    "val_split": SPLITS,
    "target": TARGETS,
    "class_weights": ("none", *WEIGHT_SCHEMES),
    "backbone": tuple(BACKBONES),
    "output_stride": OUTPUT_STRIDES,
    "loss": LOSSES,
    "optimizer": OPTIMIZERS,
    "lr_schedule": LR_SCHEDULES,
    "mixed_precision": MIXED_PRECISION_POLICIES,
    "jit_compile": JIT_COMPILE_MODES,
    "distribute": DISTRIBUTE_MODES,
    "verbose": (0, 1, 2),
    "fast_atrous": ("auto", "true", "false"),
    "worker_type": WORKER_TYPES,
}
RANGES = {
    "image_size": (32, 2048),
    "batch_size": (1, 4096),
    "epochs": (1, 100000),
    "learning_rate": (0.0, 10.0),
    "steps_per_execution": (1, 10000),
}

FIELDS = {field.name: field for field in dataclasses.fields(TrainConfig)}


def keys_of_scope(*scopes):
    """The config keys whose `setting` scope is one of `scopes`."""
    return {name for name, field in FIELDS.items() if field.metadata.get("scope", "run") in scopes}


# A rerun of a run folder may change these; the hosts of one job may differ in these.
RESUMABLE_KEYS = keys_of_scope("resume", "host")
PER_HOST_KEYS = keys_of_scope("host")


def _valid_keys():
    return ", ".join(FIELDS)


def _coerce(key, value):
    """Return `value` as the type of field `key`, or raise ConfigError."""
    expected = typing.get_type_hints(TrainConfig)[key]
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if expected is float and isinstance(value, str):
        value = _float_or_text(value)  # YAML 1.1 reads 1e-4 (no dot) as a string
    if expected is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)  # e.g. `weights: 0` is a path-like string, not a type error
    if expected is str and isinstance(value, bool):
        value = "true" if value else "false"  # YAML reads `jit_compile: true` as a bool
    if expected is str and value is None:
        value = "none"
    if expected is str and isinstance(value, dict):
        value = yaml.safe_dump(value, default_flow_style=True).strip()  # `class_map: {hair: hair}`
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise ConfigError(
            f"config key '{key}' expects {expected.__name__}, got {value!r} "
            f"({type(value).__name__})"
        )
    return value


def _float_or_text(text):
    try:
        return float(text)
    except ValueError:
        return text


def _check_value(key, value):
    if key == "workers" and value != "auto" and not (value.isdigit() and int(value) >= 1):
        raise ConfigError(f"config key 'workers' must be auto or a positive integer, got {value!r}")
    if key in CHOICES and value not in CHOICES[key]:
        options = "|".join(str(choice) for choice in CHOICES[key])
        raise ConfigError(f"config key '{key}' must be one of {options}, got {value!r}")
    if key in RANGES:
        low, high = RANGES[key]
        if not low <= value <= high:
            raise ConfigError(f"config key '{key}' must lie in [{low}, {high}], got {value!r}")


def apply_overrides(config, overrides, source, saved=False):
    """Return a copy of `config` with the `overrides` dict applied.

    Args:
        config: TrainConfig. The configuration to start from.
        overrides: dict. Key -> value, values already parsed (YAML types).
        source: str. Where the overrides come from, named in errors.
        saved: bool. A run folder's config.yaml: retired keys are ignored.
    """
    if not isinstance(overrides, dict):
        raise ConfigError(
            f"{source}: expected a mapping of config keys, got {type(overrides).__name__}"
        )
    values = {}
    for key, value in overrides.items():
        if key in RETIRED_KEYS:
            if saved:
                continue
            raise ConfigError(f"{source}: config key '{key}' was removed; {RETIRED_KEYS[key]}")
        if key not in FIELDS:
            raise ConfigError(f"{source}: unknown config key '{key}'. Valid keys: {_valid_keys()}")
        value = _coerce(key, value)
        _check_value(key, value)
        values[key] = value
    return dataclasses.replace(config, **values)


def load_yaml(path):
    """Read a YAML mapping with the safe loader; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {first_line(error)}") from None
    return {} if data is None else data


def parse_cli_overrides(arguments):
    """Turn ['--key=value', '--key', 'value', ...] into a dict of parsed values."""
    overrides = {}
    index = 0
    while index < len(arguments):
        argument = arguments[index]
        if not argument.startswith("--") or argument == "--":
            raise ConfigError(f"unexpected argument {argument!r}; use --key=value")
        key, sep, text = argument[2:].partition("=")
        if not sep:
            if index + 1 >= len(arguments):
                raise ConfigError(f"option --{key} needs a value (--{key}=VALUE)")
            index += 1
            text = arguments[index]
        key = key.replace("-", "_")
        try:
            overrides[key] = yaml.safe_load(text) if text != "" else ""
        except yaml.YAMLError:
            overrides[key] = text
        index += 1
    return overrides


def resolve(config_path=None, cli_arguments=()):
    """Defaults, then the YAML file, then the command line; returns a TrainConfig."""
    config = TrainConfig()
    if config_path:
        config = apply_overrides(config, load_yaml(config_path), str(config_path))
    return apply_overrides(config, parse_cli_overrides(list(cli_arguments)), "command line")


def to_dict(config):
    return dataclasses.asdict(config)


def save(config, path):
    """Write the resolved config as YAML (atomically)."""
    atomic_write_text(path, yaml.safe_dump(to_dict(config), sort_keys=False))


def load_run_config(path):
    """Read a run folder's config.yaml back into a TrainConfig (unknown keys are errors)."""
    return apply_overrides(TrainConfig(), load_yaml(path), str(path), saved=True)
