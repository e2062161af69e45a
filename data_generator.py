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

The code lives in `faceparsing/data/`: `layout` (paths, split), `samples`
(decoding, merging, label cache), `augment`, `class_weights`, `checks`,
`synthetic` and `dataset`. This module gathers the names users import and
holds the command line.

Usage:
    python data_generator.py make-demo --out data/demo --num 200 [--seed 0] [--layout lapa]
    python data_generator.py check --data_root data/CelebAMask-HQ [--split all]
"""

import argparse
import sys

from faceparsing import cli
from faceparsing.data.augment import augment_sample, horizontal_flip
from faceparsing.data.checks import check_dataset, validate_split
from faceparsing.data.class_weights import (
    WEIGHT_SCHEMES,
    class_pixel_counts,
    class_weights_from_counts,
    pixel_weights,
    training_class_counts,
)
from faceparsing.data.dataset import CelebAMaskHQ
from faceparsing.data.layout import (
    SPLITS,
    image_path,
    open_layout,
    part_path,
    read_mapping,
    split_ids,
)
from faceparsing.data.samples import TARGETS, LabelCache, load_image, merge_masks, read_mask
from faceparsing.errors import DatasetError

__all__ = [
    "CelebAMaskHQ", "DatasetError", "LabelCache", "SPLITS", "TARGETS", "WEIGHT_SCHEMES",
    "augment_sample", "check_dataset", "class_pixel_counts", "class_weights_from_counts",
    "horizontal_flip", "image_path", "load_image", "merge_masks", "part_path", "pixel_weights",
    "read_mapping", "read_mask", "split_ids", "training_class_counts", "validate_split",
]  # fmt: skip


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


def main(argv=None):
    args = parse_args(argv)
    return cli.run_command(make_demo if args.command == "make-demo" else check, args)


if __name__ == "__main__":
    sys.exit(main())
