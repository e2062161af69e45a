"""From a TrainConfig to this process's training and validation datasets.

`ensure_dataset` writes the synthetic set when the config asks for one and none is there;
`build_datasets` opens the layout (detected, or forced by `dataset`), packs it at the
training size when `pack_cache` asks, picks the label cache, selects and checks each
split's ids and builds the two `CelebAMaskHQ` datasets, each process of a multi-host job
with its own slice of every global batch. The config is only read, so the data layer
needs no import of `faceparsing.config`.
"""

import os
from pathlib import Path

from faceparsing.classes import remap
from faceparsing.data import packed
from faceparsing.data.dataset import CelebAMaskHQ
from faceparsing.data.folder import FOLDER_IMAGE_DIR, FOLDER_SPLITS
from faceparsing.data.layout import detect_dataset, open_layout, validate_split
from faceparsing.data.loader import choose_worker_type, worker_count
from faceparsing.data.packing import pack_cache
from faceparsing.data.release import MAPPING_FILE
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
    if detect_dataset(root, dataset) == "celebamask_hq":
        return (root / MAPPING_FILE).exists()
    return any((root / split / FOLDER_IMAGE_DIR).is_dir() for split in FOLDER_SPLITS)


def data_layout(config, cache_dir=None):
    """The layout of `config.data_root` (detected, or forced by `dataset`) with its classes."""
    return open_layout(config.data_root, config.dataset, config.classes, cache_dir)


def training_class_set(config, layout=None):
    """The classes the model learns: the data's, merged through `class_map` if given."""
    class_set = (layout or data_layout(config)).class_set
    return remap(class_set, config.class_map)[0] if config.class_map else class_set


def select_ids(config, split, limit, layout=None):
    """Ids of a split, capped at `limit` (0 = all), checked quickly before training (an
    empty split is refused by the dataset)."""
    layout = layout or data_layout(config)
    ids = layout.split_ids(split)[: limit or None]
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


def training_layout(config):
    """The layout training reads: the pack at the training size when `pack_cache` asks
    (and can), else `data_root` with its label cache (`label_cache_dir`)."""
    if config.pack_cache and not packed.is_packed(config.data_root):
        folder = training_pack(config)
        if folder:
            return open_layout(folder)
    return data_layout(config, label_cache_dir(config))


def build_datasets(config, num_processes=1, process_id=0):
    """The training and validation `CelebAMaskHQ` of `config` for one process of
    `num_processes` (each loads its slice of every global batch of `batch_size`).

    With a `distribute` mode every validation batch is full, padded with images of
    weight 0, so that it splits over the devices and the padding counts nowhere.
    """
    if config.batch_size % num_processes:
        raise ConfigError(
            f"batch_size {config.batch_size} must be a multiple of the {num_processes} "
            "processes (KERAS_DISTRIBUTION_NUM_PROCESSES); batch_size is the global batch"
        )
    layout = training_layout(config)
    workers = worker_count(config.workers)
    worker_type = choose_worker_type(config.worker_type, workers)
    print(f"Building batches with {workers} {worker_type} (worker_type {config.worker_type}).")
    common = dict(
        batch_size=config.batch_size // num_processes, image_size=config.image_size,
        target=config.target, skip_bad_samples=config.skip_bad_samples, seed=config.seed,
        cache_dir=layout.cache_dir,
        class_map=config.class_map or None, num_processes=num_processes,
        process_id=process_id, workers=workers,
    )  # fmt: skip
    train_ids = select_ids(config, config.train_split, config.max_train_images, layout)
    # Every training step has the full batch: no retrace for a short last batch, and
    # any batch splits evenly across devices.
    train_data = CelebAMaskHQ(
        layout, config.train_split, ids=train_ids, augment=config.augment, shuffle=True,
        class_weights=None if config.class_weights == "none" else config.class_weights,
        max_weight=config.max_class_weight or None, drop_remainder=True,
        worker_type=worker_type, steps_per_epoch=config.steps_per_epoch or None, **common,
    )  # fmt: skip
    val_ids = select_ids(config, config.val_split, config.max_val_images, layout)
    # Validation keeps worker threads (the dataset's default): no augmentation to spread,
    # and no second set of worker processes beside the training ones.
    val_data = CelebAMaskHQ(
        layout, config.val_split, ids=val_ids, augment=False, shuffle=False,
        pad=config.distribute != "none", **common,
    )  # fmt: skip
    return train_data, val_data
