"""CelebAMask-HQ for Keras: the `CelebAMaskHQ` dataset, label merging, split and flip.

The dataset reads the release exactly as it is unzipped (see docs/dataset.md):

```
root/CelebA-HQ-img/{k}.jpg                                  1024x1024 RGB JPEG
root/CelebAMask-HQ-mask-anno/{k // 2000}/{k:05d}_{part}.png  512x512 part masks
root/CelebA-HQ-to-CelebA-mapping.txt                        idx orig_idx orig_file
```

```python
from data_generator import CelebAMaskHQ, merge_masks, split_ids, horizontal_flip

train = CelebAMaskHQ("data/CelebAMask-HQ", "train", batch_size=8, augment=True)
```

The code lives in `faceparsing/data/`: `layout` (which dataset a folder holds, checks),
`release` (CelebAMask-HQ's paths, split and merged labels), `folder` (LaPa's layout),
`packed`/`packing`, `augment`, `class_weights`, `batches`, `loader`, `synthetic` and
`dataset`. This module gathers the names users import and holds the command line.

Usage:
    python data_generator.py make-demo --out data/demo --num 200 [--seed 0] [--layout lapa]
    python data_generator.py check --data_root data/CelebAMask-HQ [--split all]
    python data_generator.py pack --data_root data/CelebAMask-HQ --out data/celebamask_512 \
        [--image_size 512] [--splits train val test] [--workers N]
"""

import argparse
import sys
import time

from faceparsing import cli
from faceparsing.data import packing
from faceparsing.data.augment import augment_sample, horizontal_flip
from faceparsing.data.batches import TARGETS
from faceparsing.data.class_weights import (
    WEIGHT_SCHEMES,
    class_pixel_counts,
    class_weights_from_counts,
    pixel_weights,
    training_class_counts,
)
from faceparsing.data.dataset import CelebAMaskHQ
from faceparsing.data.layout import (
    DATASETS,
    SPLITS,
    check_dataset,
    open_layout,
    split_ids,
    validate_split,
)
from faceparsing.data.packed import PACKED_SPLITS
from faceparsing.data.release import (
    LabelCache,
    image_path,
    merge_masks,
    part_path,
    read_mapping,
    read_mask,
)
from faceparsing.errors import DatasetError

__all__ = [
    "CelebAMaskHQ", "DatasetError", "LabelCache", "SPLITS", "TARGETS", "WEIGHT_SCHEMES",
    "augment_sample", "check_dataset", "class_pixel_counts", "class_weights_from_counts",
    "horizontal_flip", "image_path", "load_image", "merge_masks", "part_path", "pixel_weights",
    "read_mapping", "read_mask", "split_ids", "training_class_counts", "validate_split",
]  # fmt: skip


def load_image(root, image_id, size):
    """Image `image_id` of the dataset at `root` as a (size, size, 3) uint8 RGB array,
    decoded and resized as the dataset does."""
    return open_layout(root).load_image(image_id, size)


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def parse_args(argv):
    parser = cli.ArgumentParser(description="CelebAMask-HQ data tools.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=cli.ArgumentParser)
    demo = commands.add_parser("make-demo", help="write a synthetic face set in the release layout")
    demo.add_argument("--out", required=True, help="output dataset root")
    demo.add_argument("--num", required=True, type=_positive_int, help="number of images")
    demo.add_argument("--seed", type=int, default=0, help="random seed")
    demo.add_argument(
        "--layout", default="celebamask_hq", choices=("celebamask_hq", "lapa"),
        help="CelebAMask-HQ's release layout or LaPa's (11 classes)",
    )  # fmt: skip
    check = commands.add_parser("check", help="scan a dataset and list every problem")
    check.add_argument("--data_root", required=True, help="dataset root")
    check.add_argument("--split", default="all", choices=SPLITS, help="split to scan")
    pack = commands.add_parser("pack", help="write each split into a few fast-to-read shards")
    pack.add_argument(
        "--data_root", required=True, help="dataset root (CelebAMask-HQ's release, LaPa's layout)"
    )
    pack.add_argument("--out", required=True, help="packed folder (a rerun resumes it)")
    pack.add_argument("--image_size", type=_positive_int, default=512, help="stored image side")
    pack.add_argument("--splits", nargs="+", default=list(PACKED_SPLITS), choices=PACKED_SPLITS)
    pack.add_argument("--workers", type=_positive_int, default=None, help="default: all cores")
    pack.add_argument("--dataset", default="auto", choices=DATASETS, help="layout of --data_root")
    pack.add_argument("--classes", default="", help="class set of a folder layout (name or YAML)")
    return parser.parse_args(argv)


def make_demo(args):
    from faceparsing.data.synthetic import make_demo_dataset

    make_demo_dataset(args.out, args.num, seed=args.seed, layout=args.layout)
    layout = open_layout(args.out)
    counts = {split: len(layout.split_ids(split)) for split in SPLITS[:3]}
    print(f"wrote {args.num} synthetic faces to {args.out} ({counts})")
    return 0


def check(args):
    problems = check_dataset(args.data_root, args.split)
    for problem in problems:
        print(problem)
    print(f"{len(problems)} problem(s) found in {args.data_root} (split {args.split})")
    return 1 if problems else 0


def pack(args):
    started = time.perf_counter()
    manifest = packing.pack(
        args.data_root, args.out, image_size=args.image_size, splits=args.splits,
        workers=args.workers, dataset=args.dataset, classes=args.classes,
    )  # fmt: skip
    counts = {split: entry["count"] for split, entry in manifest["splits"].items()}
    size = sum(s["bytes"] for e in manifest["splits"].values() for s in e["shards"])
    print(
        f"packed {counts} at {args.image_size}x{args.image_size} into {args.out} "
        f"({size / 2**20:.1f} MiB, {time.perf_counter() - started:.1f} s)"
    )
    return 0


COMMANDS = {"make-demo": make_demo, "check": check, "pack": pack}


def main(argv=None):
    args = parse_args(argv)
    return cli.run_command(COMMANDS[args.command], args)


if __name__ == "__main__":
    sys.exit(main())
