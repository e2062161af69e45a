"""Evaluate a checkpoint with the face-parsing metrics of the literature.

Usage:
    python evaluate.py --checkpoint runs/demo/best.keras [--split test] [--out DIR]
                       [--data_root ROOT] [--tta flip] [--save_predictions] [--batch_size N]
                       [--classes hair,skin]

One unweighted CxC confusion matrix (C: the checkpoint's class set, 19 for
CelebAMask-HQ, 11 for LaPa) is accumulated over the whole split at label
resolution (CelebAMask-HQ: 512x512; LaPa's layout: each label's own size):
logits are computed at the model's input size and resized bilinearly to the
label size before the argmax. `--classes` scores a merged view (the classes
named against all others, as background). Settings not given on the command
line come from the run folder's `config.yaml` beside the checkpoint. The
metrics themselves are `faceparsing.inference.evaluation`.
"""

import sys
from pathlib import Path

from faceparsing import cli
from faceparsing.checkpoints import load_checkpoint, run_config
from faceparsing.classes import class_set_of
from faceparsing.data.dataset import CelebAMaskHQ
from faceparsing.data.layout import SPLITS, check_release_labels, open_layout
from faceparsing.inference import evaluation
from faceparsing.inference.predict import TTA_MODES


def parse_args(argv):
    parser = cli.ArgumentParser(
        description="Evaluate a face-parsing checkpoint (mIoU, mean F1, per class)."
    )
    parser.add_argument(
        "--checkpoint",
        required=True,
        help=".keras checkpoint (its run folder supplies the settings)",
    )
    parser.add_argument("--data_root", help="dataset root (default: the run's data_root)")
    parser.add_argument("--split", default="test", choices=SPLITS)
    parser.add_argument("--out", help="report folder (default: <run_dir>/eval_<split>)")
    parser.add_argument(
        "--tta", choices=TTA_MODES, default="none", help="flip: average with the mirrored image"
    )
    parser.add_argument("--save_predictions", action="store_true", help="write 512x512 label PNGs")
    parser.add_argument("--batch_size", type=int, default=None)
    parser.add_argument(
        "--image_size", type=int, default=None, help="model input size (default: the run's)"
    )
    parser.add_argument(
        "--max_images", type=int, default=0, help="evaluate only the first N images (0 = all)"
    )
    parser.add_argument(
        "--classes", default="", help="score a merged view: 'hair' or 'hair,skin' or YAML"
    )
    return parser.parse_args(argv)


def run_settings(args):
    """The run's config.yaml (if any) overridden by the command line."""
    saved = run_config(args.checkpoint)
    return {
        "data_root": args.data_root or saved.data_root,
        "dataset": saved.dataset,
        "classes": saved.classes,
        "class_map": saved.class_map,
        "image_size": args.image_size or saved.image_size,
        "batch_size": args.batch_size or saved.batch_size,
        "out": Path(args.out) if args.out else Path(args.checkpoint).parent / f"eval_{args.split}",
    }


def split_dataset(layout, settings, split, max_images):
    ids = layout.split_ids(split)
    return CelebAMaskHQ(
        layout, split=split, ids=ids[:max_images] if max_images else ids, batch_size=settings["batch_size"],
        image_size=settings["image_size"], augment=False, shuffle=False,
    )  # fmt: skip


def run(args):
    settings = run_settings(args)
    model = load_checkpoint(args.checkpoint)
    layout = open_layout(settings["data_root"], settings["dataset"], settings["classes"])
    check_release_labels(layout)
    class_set, truth_table, prediction_table = evaluation.label_views(
        layout.class_set, class_set_of(model), settings["class_map"], args.classes
    )
    dataset = split_dataset(layout, settings, args.split, args.max_images)
    out_dir = settings["out"]
    confusion, num_images, seconds = evaluation.evaluate(
        model, dataset, layout.load_label,
        tta=args.tta, prediction_dir=out_dir / "predictions" if args.save_predictions else None,
        class_set=class_set, truth_table=truth_table, prediction_table=prediction_table,
    )  # fmt: skip
    report = evaluation.build_report(
        confusion, args.checkpoint, args.split, num_images, args.tta, class_set
    )
    evaluation.write_report(report, confusion, out_dir, class_set)
    print(evaluation.format_table(report, class_set))
    print(
        f"{num_images} images in {seconds:.1f}s ({num_images / seconds:.1f} img/s). Report: {out_dir / 'report.json'}"
    )
    return 0


def main(argv=None):
    return cli.run_command(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
