"""From a TrainConfig to the training and validation datasets: a run's data set-up.

`ensure_dataset` writes the synthetic set when the config asks for one and none is there;
`build_datasets` opens the layout (detected, or forced by `dataset`), packs it at the
training size when `pack_cache` asks, picks the label cache, selects and checks each
split's ids and builds the two `CelebAMaskHQ` datasets. The config is only read, so the
data layer needs no import of `faceparsing.config`; giving each process of a multi-host
job its slice of the batches stays in `training` (`trainer.process_datasets`).
"""

import os
from pathlib import Path

from faceparsing.classes import remap
from faceparsing.data import packed
from faceparsing.data.checks import validate_split
from faceparsing.data.dataset import CelebAMaskHQ
from faceparsing.data.layout import MAPPING_FILE, PackedLayout, detect_dataset, open_layout
from faceparsing.data.packing import pack_cache
from faceparsing.data.workers import worker_count
from faceparsing.errors import ConfigError, DatasetError, UnwritablePathError


def ensure_dataset(config):
    """Write the synthetic set into `data_root` when the config asks for it and no dataset
    is there; a folder holding anything else is refused (`check_demo_target`)."""
    root = Path(config.data_root)
    if config.demo_images > 0 and not dataset_present(root, config.dataset):
        from faceparsing.data.synthetic import make_demo_dataset

        if config.dataset == "folder":
            raise ConfigError(
                "demo_images writes CelebAMask-HQ's or LaPa's layout; dataset=folder is your own "
                "labelled data: set demo_images: 0 or dataset: lapa"
            )
        layout = "lapa" if config.dataset == "lapa" else "celebamask_hq"
        print(f"Writing a synthetic set of {config.demo_images} faces to {root} ...", flush=True)
        make_demo_dataset(root, config.demo_images, seed=0, layout=layout)
    if not root.exists():
        raise DatasetError(
            f"data_root {root} does not exist (expected the unzipped CelebAMask-HQ release "
            "or LaPa's layout)"
        )


def dataset_present(root, dataset):
    """Whether `root` holds a dataset of the kind `dataset` asks for (CelebAMask-HQ: its
    mapping file; LaPa's layout: split folders with images; a packed folder: its manifest)."""
    if packed.is_packed(root):
        return True
    kind = detect_dataset(root, dataset)
    if kind == "celebamask_hq":
        return (root / MAPPING_FILE).exists()
    return any((root / split / "images").is_dir() for split in ("train", "val", "test"))


def data_layout(config):
    """The layout of `config.data_root` (detected, or forced by `dataset`) with its classes."""
    return open_layout(config.data_root, config.dataset, config.classes)


def training_class_set(config, layout=None):
    """The classes the model learns: the data's, merged through `class_map` if given."""
    class_set = (layout or data_layout(config)).class_set
    return remap(class_set, config.class_map)[0] if config.class_map else class_set


def select_ids(config, split, limit, layout=None):
    """Ids of a split, capped at `limit` (0 = all), checked quickly before training."""
    layout = layout or data_layout(config)
    ids = layout.split_ids(split)
    if limit:
        ids = ids[:limit]
    if not ids:
        raise DatasetError(f"split '{split}' of {config.data_root} has no images")
    validate_split(layout, ids)
    return ids


def label_cache_dir(config):
    """Where merged labels are cached: `cache_dir`, else `<data_root>/.label_cache`
    when that is writable (a read-only dataset simply runs without a cache)."""
    if config.cache_dir.lower() == "none" or packed.is_packed(config.data_root):
        return None  # a packed folder holds merged labels
    folder = Path(config.cache_dir) if config.cache_dir else Path(config.data_root) / ".label_cache"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        folder = None
    if folder is None or not os.access(folder, os.W_OK):
        if config.cache_dir:
            raise UnwritablePathError(f"cache_dir {config.cache_dir} is not writable")
        print(f"Note: {config.data_root} is not writable; merged labels will not be cached.")
        return None
    return str(folder)


def training_pack(config):
    """`config.pack_cache`'s folder, holding the data packed at `image_size` (written
    when absent or older than the data: see `packing.pack_cache`); None without array-record
    or, for `auto`, when the data folder is read-only (as the label cache does)."""
    try:
        packed.array_record()
    except ConfigError:  # no wheel for this platform (Windows): the release is read as it is
        print(f"Note: pack_cache needs the array-record package; training from {config.data_root}.")
        return None
    folder = config.pack_cache
    if folder == "auto":
        folder = Path(config.data_root) / f".pack_{config.image_size}"
        if not folder.is_dir() and not os.access(config.data_root, os.W_OK):
            print(f"Note: {config.data_root} is not writable; pack_cache: auto is off.")
            return None
    return pack_cache(config.data_root, folder, config.image_size, config.dataset, config.classes)


def build_datasets(config):
    """The training and validation CelebAMaskHQ datasets of `config`."""
    if config.use_multiprocessing:
        raise ConfigError(
            "use_multiprocessing: true is no longer supported: worker threads scale (the image "
            "work releases the GIL) and forked processes can hang JAX/TensorFlow; set "
            "--use_multiprocessing=false and --workers=auto (or a number)"
        )
    common = dict(
        batch_size=config.batch_size,
        image_size=config.image_size,
        target=config.target,
        skip_bad_samples=config.skip_bad_samples,
        workers=worker_count(config.workers),  # validation: Keras' enqueuer, threads
    )
    layout = data_layout(config)
    if config.pack_cache and layout.kind != PackedLayout.kind:
        folder = training_pack(config)
        layout = open_layout(folder) if folder else layout
    # A packed folder holds merged labels: no label cache.
    common["cache_dir"] = None if layout.kind == PackedLayout.kind else label_cache_dir(config)
    common["class_map"] = config.class_map or None
    class_weights = None if config.class_weights == "none" else config.class_weights
    train_ids = select_ids(config, config.train_split, config.max_train_images, layout)
    # Every training step has the full batch: no retrace for a short last
    # batch, and any batch splits evenly across devices.
    train_data = CelebAMaskHQ(
        layout, split=config.train_split, ids=train_ids, class_weights=class_weights,
        max_weight=config.max_class_weight or None, augment=config.augment, shuffle=True,
        seed=config.seed, drop_remainder=True, **common,
    )  # fmt: skip
    val_ids = select_ids(config, config.val_split, config.max_val_images, layout)
    val_data = CelebAMaskHQ(
        layout, split=config.val_split, ids=val_ids, augment=False, shuffle=False,
        seed=config.seed, **common,
    )  # fmt: skip
    return train_data, val_data
