"""Dataset checks: a full scan that lists every problem, and a fast header-only check.

`check_dataset` backs `python data_generator.py check`; `validate_split` runs
before every training, so a broken download fails in seconds, not mid-epoch.
"""

from pathlib import Path

from faceparsing.data.layout import (
    IMAGE_DIR,
    IMAGE_SIZE,
    MAPPING_FILE,
    MASK_DIR,
    MASK_SIZE,
    MISSPELT_MASK_DIR,
    existing_parts,
    image_path,
    no_parts_message,
    open_layout,
    split_ids,
)
from faceparsing.data.samples import read_folder_label, read_mask
from faceparsing.errors import DatasetError, ImageNotFoundError
from faceparsing.images import open_image


def layout_problems(root):
    """Return problems with the dataset root's layout (missing folders or mapping file)."""
    root = Path(root)
    if not root.is_dir():
        return [f"dataset root {root} does not exist"]
    problems = []
    if not (root / MAPPING_FILE).is_file():
        problems.append(f"mapping file not found: {root / MAPPING_FILE}")
    if not (root / IMAGE_DIR).is_dir():
        problems.append(f"image folder not found: {root / IMAGE_DIR}")
    if not (root / MASK_DIR).is_dir():
        message = f"mask folder not found: {root / MASK_DIR}"
        if (root / MISSPELT_MASK_DIR).is_dir():
            message += f" (found the misspelt '{MISSPELT_MASK_DIR}': rename it to '{MASK_DIR}')"
        problems.append(message)
    return problems


def image_problems(root, image_id):
    """Fully decode one image; return problems (unreadable, truncated, wrong size)."""
    path = image_path(root, image_id)
    if not path.is_file():
        return [f"missing image {path}"]
    try:
        with open_image(path) as image:
            image.load()  # decodes everything, so truncated files fail here
            size = image.size
    except DatasetError as error:
        return [str(error)]
    if size != (IMAGE_SIZE, IMAGE_SIZE):
        return [f"image {path} is {size[0]}x{size[1]}, expected {IMAGE_SIZE}x{IMAGE_SIZE}"]
    return []


def mask_problems(root, image_id):
    """Read every part mask of one image; return problems (none, unreadable, wrong size)."""
    parts = existing_parts(root, image_id)
    if not parts:
        return [no_parts_message(root, image_id)]
    problems = []
    for _, path, _ in parts:
        try:
            read_mask(path)
        except DatasetError as error:
            problems.append(str(error))
    return problems


def check_dataset(root, split="all", progress=True):
    """Scan a dataset and return every problem found, each naming its file.

    Args:
        root: str or Path. Dataset root in the release layout, or a packed folder.
        split: str. Which official split to scan. Defaults to "all".
        progress: bool. Show a tqdm progress bar. Defaults to True.

    Returns:
        A list of problem strings (empty when the dataset is sound).
    """
    try:
        layout = open_layout(root)
        if layout.kind == "packed":  # every shard's size and checksum against the manifest
            return layout.pack.verify()
    except DatasetError as error:
        return [str(error)]
    if layout.kind != "celebamask_hq":
        return [
            problem
            for image_id in _progress(layout.split_ids(split), progress, f"checking {split}")
            for problem in folder_sample_problems(layout, image_id)
        ]
    problems = layout_problems(root)
    if not (Path(root) / MAPPING_FILE).is_file():
        return problems
    try:
        image_ids = split_ids(root, split)
    except DatasetError as error:
        return problems + [str(error)]
    masks_present = (Path(root) / MASK_DIR).is_dir()
    for image_id in _progress(image_ids, progress, f"checking {split}"):
        problems += image_problems(root, image_id)
        if masks_present:
            problems += mask_problems(root, image_id)
    return problems


def validate_split(root, ids, max_listed=5):
    """Quickly check that images and masks of `ids` exist with the right sizes.

    Reads only file headers (no decoding) of each image and its first part
    mask, so it is cheap enough to run before every training. Use
    `check_dataset` for a full scan.

    Raises:
        DatasetError: one line listing the first `max_listed` problems and their count.
    """
    layout = open_layout(root)
    if layout.kind == "packed":  # the manifest lists the ids; sizes of their shards are checked
        layout.pack.check_ids(ids)
        return
    if layout.kind == "celebamask_hq":
        problems = layout_problems(layout.root)
        for image_id in ids if not problems else ():
            problems += _header_problems(layout.root, image_id)
    else:
        problems = [
            problem for image_id in ids for problem in folder_header_problems(layout, image_id)
        ]
    root = layout.root
    if problems:
        listed = "; ".join(problems[:max_listed])
        more = f"; ... and {len(problems) - max_listed} more" if len(problems) > max_listed else ""
        raise DatasetError(
            f"{len(problems)} problem(s) in {root}: {listed}{more} (run `python data_generator.py "
            f"check --data_root {root}` for a full scan)"
        )


def folder_header_problems(layout, image_id):
    """Header-only check of one sample of a folder layout: image and label exist, same size."""
    image, label = layout.image_path(image_id), layout.label_path(image_id)
    sizes = []
    for path, what in ((image, "image"), (label, "label")):
        try:
            with open_image(path, what) as file:
                sizes.append(file.size)
        except ImageNotFoundError:
            return [f"missing {what} {path}"]
        except DatasetError as error:
            return [str(error)]
    if sizes[0] != sizes[1]:
        return [
            f"label {label} is {sizes[1][0]}x{sizes[1][1]}, its image {image} is "
            f"{sizes[0][0]}x{sizes[0][1]}"
        ]
    return []


def folder_sample_problems(layout, image_id):
    """Fully decode one sample of a folder layout; return problems (each naming its file)."""
    try:
        with open_image(layout.image_path(image_id)) as image:
            image.load()
        read_folder_label(layout, image_id)
    except DatasetError as error:
        return [str(error)]
    return []


def _header_problems(root, image_id):
    parts = existing_parts(root, image_id)
    if not parts:
        return [no_parts_message(root, image_id)]
    expected = [(image_path(root, image_id), IMAGE_SIZE), (parts[0][1], MASK_SIZE)]
    problems = []
    for path, size in expected:
        try:
            with open_image(path, "file") as file:
                width, height = file.size
        except ImageNotFoundError:
            problems.append(f"missing file {path}")
            continue
        except DatasetError as error:
            problems.append(str(error))
            continue
        if (width, height) != (size, size):
            problems.append(f"{path} is {width}x{height}, expected {size}x{size}")
    return problems


def _progress(items, enabled, description):
    if not enabled:
        return items
    from tqdm import tqdm  # only the CLI needs it

    return tqdm(items, desc=description, unit="image")
